"""What people and scripts see: Rich panels and tables, JSON, and the cluster map PNG."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from tests.planted import paragraph_chunks, planted_files
from tests.test_clustering import topic_corpus
from tpsearch.analysis import (
    ClusterSettings,
    DedupeSettings,
    Embeddings,
    TextItem,
    cluster_items,
    find_duplicates,
    project_2d,
)
from tpsearch.cli.render.cluster_map import plot_cluster_map
from tpsearch.cli.render.clusters import clusters_as_dict, clusters_renderable
from tpsearch.cli.render.duplicates import duplicates_as_dict, duplicates_renderable
from tpsearch.errors import ConfigError


def rendered(renderable: object, width: int = 140) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def planted_with_a_second_copy() -> list[TextItem]:
    items, _ = planted_files()
    debugging = next(i for i in items if i.path == "tutorial/debugging.md")
    second = TextItem(99, "debugging (1).md", debugging.text, debugging.size, 1.0)  # oldest!
    return [*items, second]


def test_dedupe_output_shows_each_group_largest_first_with_keeper_and_summary() -> None:
    items = planted_with_a_second_copy()
    report = find_duplicates(items)
    text = rendered(duplicates_renderable(report))

    first_panel = text.split("╰")[0]
    assert "1 exact copies · 3 files" in first_panel  # the biggest group comes first
    assert "keep  tutorial/debugging.md" in first_panel
    assert "suggested: not named like a copy" in first_panel  # "(1)" is older, but a copy
    assert "debugging (1).md" in first_panel and "identical" in first_panel
    assert "exact copies · 2 files" in text and "whitespace differs" in text  # the reflowed one
    assert "-related,- +connected,+" in text  # one changed word, shown as words
    assert "-This is useful for operations" in text  # the deleted paragraph
    size = sum(i.size for i in items if i.path in {"debugging (1).md", "backup/debugging.md"})
    assert "4 groups (2 exact, 2 lexical) · 5 duplicate files · " in text
    assert (
        f"{report.saveable_bytes / 1000:.1f} kB could be saved by keeping one file per group"
        in text
    )
    assert report.saveable_bytes > size
    assert "not embedded yet were left out of the semantic comparison" in text
    assert "Nothing was changed" in text


def test_members_linked_through_another_member_are_indented_under_it() -> None:
    text = "Background tasks run after the response is sent so the client does not wait"
    chain = [  # c links to b, whose id 0 must not read as "no link"
        TextItem(7, "a.md", text, len(text), 1.0),
        TextItem(0, "b.md", text + " at all", len(text) + 7, 2.0),
        TextItem(3, "c.md", text + " at all today", len(text) + 13, 3.0),
    ]
    report = find_duplicates(chain, settings=DedupeSettings(lexical_threshold=0.75))
    lines = rendered(duplicates_renderable(report)).splitlines()
    rows = [line.split("│")[1].split() for line in lines if line.startswith(("│ keep", "│ dup"))]
    assert [row[:3] for row in rows] == [
        ["keep", "a.md", str(chain[0].size)],
        ["dup", "b.md", str(chain[1].size)],
        ["dup", "└", "c.md"],
    ]
    assert "0.92 word overlap" in " ".join(rows[2])  # c links to b, not to the keeper a (0.77)


def test_a_narrow_terminal_keeps_paths_whole_and_drops_the_time_then_the_size() -> None:
    text = "Background tasks run after the response is sent so the client does not wait"
    paths = [f"docs/tutorial/background-tasks-copy-{n}/index.md" for n in range(3)]  # 45 chars
    items = [TextItem(n, path, text, 1234, 1e9 + n) for n, path in enumerate(paths)]
    report = find_duplicates(items)
    wide, medium, narrow, tiny = (
        rendered(duplicates_renderable(report), w) for w in (140, 90, 80, 60)
    )
    day, time = datetime.fromtimestamp(1e9).strftime("%Y-%m-%d %H:%M").split()
    assert f"{day} {time}" in wide and "1.2 kB" in wide
    assert f"{day} " in medium and time not in medium and "1.2 kB" in medium
    assert f"{day} " in narrow and "1.2 kB" not in narrow
    for shown in (wide, medium, narrow):
        assert all(path in shown for path in paths)  # not folded over two lines
        assert "identical" in shown and "suggested: oldest (modified first)" in shown
    assert "…" not in tiny and tiny.count("index.md") == 3  # too narrow: folded, never cut short


def test_chunk_level_output_speaks_of_passages_and_files() -> None:
    files, _ = planted_files()
    report = find_duplicates(paragraph_chunks(files), settings=DedupeSettings(method="exact"))
    text = rendered(duplicates_renderable(report, level="chunk"))
    assert "passages" in text and " duplicate passages in " in text
    assert "backup/debugging.md:" in text  # locations carry line ranges
    assert "under 5 words were not compared" in text


def test_no_duplicates_says_so() -> None:
    report = find_duplicates([TextItem(1, "a.md", "one two three four five", 23, 0.0)])
    assert "No duplicates among 1 file." in rendered(duplicates_renderable(report))


def test_dedupe_json_names_members_without_copying_their_text() -> None:
    report = find_duplicates(planted_with_a_second_copy())
    data = json.loads(json.dumps(duplicates_as_dict(report)))
    assert data["summary"]["groups"] == 4 and data["summary"]["duplicates"] == 5
    assert data["settings"]["method"] == "all" and data["settings"]["lexical_threshold"] == 0.8
    first = data["groups"][0]
    assert first["kind"] == "exact" and first["byte_identical"] is True
    keepers = [m for m in first["members"] if m["keeper"]]
    assert len(keepers) == 1 and keepers[0]["path"] == "tutorial/debugging.md"
    assert all(m["linked_to"] == keepers[0]["id"] for m in first["members"] if not m["keeper"])
    assert "text" not in json.dumps(data["groups"]).replace("text/", "")


def test_cluster_table_and_json() -> None:
    items, embeddings, _, _ = topic_corpus()
    report = cluster_items(items, embeddings, ClusterSettings(k="auto", k_max=6))
    text = rendered(clusters_renderable(report))
    assert "k=4 chosen among k=2..6: silhouette 0.76 against 0.32 for data" in text
    for cluster in report.clusters:
        assert cluster.label in text
        assert all(r.item.location in text for r in cluster.representatives)
    data = json.loads(json.dumps(clusters_as_dict(report)))
    assert data["k"] == 4 and [c["size"] for c in data["clusters"]] == [40, 30, 20, 10]
    assert set(data["silhouette_by_k"]) == {"2", "3", "4", "5", "6"}
    assert set(data["baseline_silhouette_by_k"]) == set(data["silhouette_by_k"])
    assert len(data["clusters"][0]["representatives"]) == 3


def test_nothing_to_cluster_says_why() -> None:
    report = cluster_items([TextItem(1, "a.md", "x", 1, 0.0)], Embeddings.empty(4))
    assert "waiting to be embedded" in rendered(clusters_renderable(report))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_cluster_map_is_a_png_of_sensible_size(tmp_path: Path) -> None:
    items, embeddings, _, _ = topic_corpus()
    report = cluster_items(items, embeddings, ClusterSettings(k=4))
    path = plot_cluster_map(project_2d(embeddings, report), report, tmp_path / "map.png")
    assert png_size(path) == (1440, 900)
    assert path.stat().st_size > 20_000  # points and labels drawn, not a blank canvas

    empty = cluster_items([], Embeddings.empty(4))
    blank = plot_cluster_map(project_2d(Embeddings.empty(4), empty), empty, tmp_path / "e.png")
    assert png_size(blank) == (1440, 900)


def test_cluster_map_refuses_paths_it_cannot_honour(tmp_path: Path) -> None:
    report = cluster_items([], Embeddings.empty(4))
    projection = project_2d(Embeddings.empty(4), report)
    with pytest.raises(ConfigError, match=r"\*\.png"):
        plot_cluster_map(projection, report, tmp_path / "map.svg")
    with pytest.raises(ConfigError, match="does not exist"):
        plot_cluster_map(projection, report, tmp_path / "missing" / "map.png")


def test_analysis_modules_import_no_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "import tpsearch.analysis, tpsearch.cli.render.duplicates, tpsearch.cli.render.clusters\n"
        "import tpsearch.cli.render.cluster_map\n"
        "heavy = ('faiss', 'datasketch', 'matplotlib', 'torch')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cluster_labels_skip_words_nearly_every_document_uses() -> None:
    """A corpus of Python PEPs: "python" and "pep" are in every file, and one topic says them
    more often; they must not label it (or any topic) in the table a user reads."""
    items, embeddings, _, _ = topic_corpus()
    peps = []
    for item in items:
        extra = " python pep" * (6 if item.path.startswith("database/") else 1)
        peps.append(TextItem(item.id, item.path, item.text + extra, item.size, 0.0))
    report = cluster_items(peps, embeddings, ClusterSettings(k=4))
    text = rendered(clusters_renderable(report))
    assert all({"python", "pep"}.isdisjoint(c.keywords) for c in report.clusters)
    assert "python" not in text and "pep" not in text.replace("peps", "")
    assert "database" in report.clusters[0].keywords  # the topic word still labels it
