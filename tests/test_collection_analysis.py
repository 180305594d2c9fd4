"""dedupe and cluster over a real collection: what the store holds, read back as items.

The planted corpus (tests/planted.py: ten FastAPI pages, an exact copy, a reflowed copy, a
one-word edit and a deleted paragraph) is written to disk and indexed into a real SQLite +
FAISS collection; the analysis then runs on what the store holds, as the commands do.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.corpus import failing_to_load, using
from tests.fakes import HashingEncoder
from tests.planted import COPY_MTIME, ORIGINAL_MTIME, planted_files
from tpsearch.analysis import ClusterSettings, DedupeSettings
from tpsearch.cli import app
from tpsearch.collection import Collection
from tpsearch.collection.analyses import file_text, read_items
from tpsearch.errors import ModelLoadError

# Sections of one long paragraph of short lines: the chunker cuts them by lines, with overlap.
LENGTHY = "\n\n".join(
    f"## Part {n}\n\n"
    + "\n".join(" ".join(f"w{n}x{line}y{i} ünï" for i in range(6)) for line in range(40))
    for n in range(4)
)


def write_files(root: Path, files: dict[str, str], encoding: str = "utf-8") -> Path:
    docs = root / "docs"
    for n, (rel, text) in enumerate(sorted(files.items())):
        path = docs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode(encoding))
        mtime = COPY_MTIME if "/" in rel and rel.split("/")[0] in COPIES else ORIGINAL_MTIME + n
        os.utime(path, (mtime, mtime))
    return docs


COPIES = {"backup", "drafts", "notes", "old"}


def planted_corpus(root: Path) -> Path:
    items, _ = planted_files()
    return write_files(root, {item.path: item.text for item in items})


def indexed(root: Path, docs: Path, encoder: HashingEncoder | None = None) -> Collection:
    collection = Collection.locate(root, create=True)
    collection.index([docs], encoder_factory=using(encoder or HashingEncoder()))
    return collection


def normalised(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_file_text_is_rebuilt_from_overlapping_chunks(tmp_path: Path, encoding: str) -> None:
    docs = write_files(tmp_path, {"long.md": LENGTHY}, encoding)
    with indexed(tmp_path, docs) as collection:
        records = collection.store.chunk_records()
        assert len(records) > 3 and any(
            later.start_byte < earlier.end_byte for earlier, later in itertools.pairwise(records)
        ), "the chunker should overlap here, or this test proves nothing"
        assert normalised(file_text(records)) == normalised(LENGTHY)


def test_exact_and_lexical_find_every_planted_copy_in_a_collection(tmp_path: Path) -> None:
    _, plants = planted_files()
    with indexed(tmp_path, planted_corpus(tmp_path)) as collection:
        for method in ("exact", "lexical"):
            report = collection.dedupe("file", DedupeSettings(method=method))  # type: ignore[arg-type]
            found = {frozenset(m.item.path for m in g.members) for g in report.groups}
            wanted = {
                frozenset({f"docs/{p.copy}", f"docs/{p.original}"})
                for p in plants
                if method == "lexical" or p.kind == "exact"
            }
            assert found == wanted, method
            for group in report.groups:
                assert group.keeper.path.split("/")[1] not in COPIES, "keep the original"
        strict = collection.dedupe("file", DedupeSettings(method="exact", whitespace=False))
        (group,) = strict.groups  # the reflowed copy is not byte-identical
        assert {m.item.path for m in group.members} == {
            "docs/tutorial/debugging.md",
            "docs/backup/debugging.md",
        }
        assert group.byte_identical


def test_chunk_level_finds_repeated_passages_across_files(tmp_path: Path) -> None:
    with indexed(tmp_path, planted_corpus(tmp_path)) as collection:
        report = collection.dedupe("chunk", DedupeSettings(method="exact"))
        assert report.groups
        for group in report.groups:
            paths = [m.item.path for m in group.members]
            assert all(m.item.end_line is not None for m in group.members)
            if "docs/backup/debugging.md" in paths:
                assert "docs/tutorial/debugging.md" in paths


def test_clusters_from_stored_vectors_with_a_map(tmp_path: Path) -> None:
    with indexed(tmp_path, planted_corpus(tmp_path)) as collection:
        outcome = collection.cluster("file", ClusterSettings(k=3), with_map=True)
        again = collection.cluster("file", ClusterSettings(k=3))
    assert outcome.report.k == 3 and outcome.report.clustered == 14
    assert sum(c.size for c in outcome.report.clusters) == 14
    assert [c.member_ids for c in again.report.clusters] == [
        c.member_ids for c in outcome.report.clusters
    ], "same collection, same seed: same clusters"
    assert outcome.projection is not None


def test_empty_single_and_identical_collections(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with indexed(empty, empty) as collection:
        assert collection.dedupe().groups == ()
        assert collection.cluster().report.clusters == ()
    one = tmp_path / "one"
    with indexed(one, write_files(one, {"a.md": LENGTHY})) as collection:
        assert collection.dedupe().groups == ()
        single = collection.cluster().report
        assert single.k == 1 and single.clustered == 1 and single.note
    same = tmp_path / "same"
    docs = write_files(same, {f"copy{n}.md": LENGTHY for n in range(4)})
    with indexed(same, docs) as collection:
        (group,) = collection.dedupe().groups
        assert group.kind == "exact" and len(group.members) == 4


def test_pending_chunks_are_counted_not_compared_by_meaning(tmp_path: Path) -> None:
    docs = planted_corpus(tmp_path)
    with Collection.locate(tmp_path, create=True) as collection:
        with pytest.raises(ModelLoadError):
            collection.index([docs], encoder_factory=failing_to_load)
        assert collection.store.counts()["pending"] > 0
        report = collection.dedupe("file")
        assert report.unembedded == report.compared  # nothing has a vector yet
        assert len(report.groups) == 4  # exact and lexical still find the planted copies
        clusters = collection.cluster("file").report
        assert clusters.clusters == () and clusters.unembedded == 14
        assert read_items(collection.store, "file").pending == 14


def test_dedupe_and_cluster_commands_on_a_tiny_real_model(
    tiny_model: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = planted_corpus(tmp_path)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    model = ["--model", str(tiny_model("qwen2")), "--precision", "fp32"]
    indexed_run = runner.invoke(app, ["index", str(docs), "--quiet", *model])
    assert indexed_run.exit_code == 0, indexed_run.output

    shown = runner.invoke(app, ["dedupe"])
    assert shown.exit_code == 0, shown.output
    assert "could be saved" in shown.stdout and "Nothing was changed" in shown.stdout
    report = json.loads(runner.invoke(app, ["dedupe", "--method", "lexical", "--json"]).stdout)
    assert len(report["groups"]) == 4

    picture = tmp_path / "map.png"
    clustered = runner.invoke(app, ["cluster", "-k", "3", "--json", "--plot", str(picture)])
    assert clustered.exit_code == 0, clustered.output
    assert len(json.loads(clustered.stdout)["clusters"]) == 3
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    wrong = runner.invoke(app, ["dedupe", "--method", "all", "--threshold", "0.9"])
    assert wrong.exit_code == 2 and "--lexical-threshold" in wrong.stderr
    bad_level = runner.invoke(app, ["cluster", "--level", "folder"])
    assert bad_level.exit_code == 2 and "'file', 'chunk'" in bad_level.stderr


def test_a_file_with_a_pending_chunk_has_no_file_vector_yet(tmp_path: Path) -> None:
    """A file's vector is the mean of all its chunks: with one chunk pending it has none."""
    docs = write_files(tmp_path, {"long.md": LENGTHY, "short.md": "# Short\n\n" + LENGTHY[:300]})
    with indexed(tmp_path, docs) as collection:
        store = collection.store
        (long_id,) = [i for path, i in store.file_ids().items() if path.endswith("long.md")]
        chunks = store.query("SELECT id FROM chunks WHERE file_id = ? ORDER BY id", [long_id])
        assert len(chunks) > 1
        with store.transaction():
            store.db.execute("DELETE FROM vectors WHERE chunk_id = ?", [chunks[-1][0]])
        files = read_items(store, "file")
        assert files.pending == 1 and files.embeddings.ids.tolist() == [
            i for path, i in store.file_ids().items() if path.endswith("short.md")
        ]
        chunk_items = read_items(store, "chunk")
        assert chunk_items.pending == 1


def test_paths_are_shown_from_the_folder_the_command_runs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a subfolder, dedupe and cluster name files as `ls` there would: a script can act
    on the --json paths where it runs."""
    docs = planted_corpus(tmp_path)
    indexed(tmp_path, docs).close()
    runner = CliRunner()

    def keepers(report: dict) -> dict[frozenset[int], int]:  # type: ignore[type-arg]
        return {
            frozenset(m["id"] for m in g["members"]): next(
                m["id"] for m in g["members"] if m["keeper"]
            )
            for g in report["groups"]
        }

    monkeypatch.chdir(tmp_path)
    from_root = json.loads(runner.invoke(app, ["dedupe", "--json"]).stdout)
    monkeypatch.chdir(docs / "tutorial")
    report = json.loads(runner.invoke(app, ["dedupe", "--json"]).stdout)
    assert keepers(report) == keepers(from_root)  # only how paths are written differs
    paths = {m["path"] for g in report["groups"] for m in g["members"]}
    assert paths and all(Path(p).is_file() for p in paths)  # relative to here, or absolute
    assert any(not Path(p).is_absolute() for p in paths)  # the copies below this folder

    clustered = runner.invoke(app, ["cluster", "-k", "2", "--json"])
    assert clustered.exit_code == 0, clustered.output
    clusters = json.loads(clustered.stdout)["clusters"]
    members = [m for c in clusters for m in c["members"]]
    assert sorted(m["id"] for m in members) == sorted(i for c in clusters for i in c["member_ids"])
    assert all(Path(m["path"]).is_file() for m in members)
    for cluster in clusters:  # the representatives come first
        firsts = [m["id"] for m in cluster["members"][: len(cluster["representatives"])]]
        assert firsts == [r["id"] for r in cluster["representatives"]]


def test_a_map_that_cannot_be_written_is_refused_before_clustering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed(tmp_path, planted_corpus(tmp_path)).close()
    monkeypatch.chdir(tmp_path)

    def no_clustering(*args: object, **kwargs: object) -> None:
        raise AssertionError("clustered before checking the map's path")

    monkeypatch.setattr("tpsearch.collection.analyses.cluster_items", no_clustering)
    for plot, message in (("map.svg", "name it *.png"), ("missing/map.png", "does not exist")):
        refused = CliRunner().invoke(app, ["cluster", "--plot", plot])
        assert refused.exit_code == 2 and message in refused.stderr, refused.output
