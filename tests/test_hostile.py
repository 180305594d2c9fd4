"""Hostile input, damaged collections and shared folders (issue #13): no code run from a
collection, no terminal hijack, no lost vectors, one clear line instead of a traceback, and a
walk that survives odd trees and files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.corpus import using, write_corpus
from tests.fakes import HashingEncoder
from tests.tinymodels import save_tiny_model
from tpsearch.cli import app
from tpsearch.collection import Collection
from tpsearch.collection.chunking import ChunkSettings, chunk_document
from tpsearch.collection.documents import read_bytes, read_document
from tpsearch.collection.sources import ScanSettings
from tpsearch.collection.walk import walk
from tpsearch.errors import CollectionError, ModelLoadError, TpsearchWarning, WriterBusy

REPO = Path(__file__).resolve().parents[1]


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def tpsearch(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in its own process, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("TPSEARCH_INDEX", None)
    command = [sys.executable, "-m", "tpsearch", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose collection is embedded by the hashing encoder (no model)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TPSEARCH_INDEX", raising=False)
    monkeypatch.setattr(
        "tpsearch.collection.facade.default_encoder_factory", using(HashingEncoder())
    )
    return tmp_path


# --- security --------------------------------------------------------------------------------

CUSTOM_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("code from the model folder ran")
from transformers import Qwen2Config


class TinyConfig(Qwen2Config):
    pass
"""


def test_stored_settings_never_turn_on_remote_code(
    tiny_model: Callable[[str], Path], hashed: Path
) -> None:
    model = hashed / "shared-model"
    shutil.copytree(tiny_model("qwen2"), model)
    marker = hashed / "RAN"
    (model / "custom.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom.TinyConfig"}
    (model / "config.json").write_text(json.dumps(config))
    write_corpus(hashed)
    assert run("index", "docs", "--model", str(model), "--precision", "fp32").exit_code == 0
    # A collection as it could arrive in a repository or an archive: it asks for remote code.
    database = hashed / ".tpsearch" / "tpsearch.db"
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        (stored,) = connection.execute("SELECT value FROM meta WHERE key = 'encoder_settings'")
        settings = {**json.loads(stored[0]), "trust_remote_code": True}
        connection.execute(
            "UPDATE meta SET value = ? WHERE key = 'encoder_settings'", [json.dumps(settings)]
        )
    with Collection.locate(hashed) as col:
        assert col.wanted_settings({}, reembed=False).trust_remote_code is False
        assert col.wanted_settings({"trust_remote_code": True}, False).trust_remote_code

    from tpsearch.engine.settings import EncoderSettings
    from tpsearch.engine.token_prepending import TPEncoder

    with Collection.locate(hashed) as col:  # the real encoder, as `tpsearch query` loads it
        TPEncoder(col.wanted_settings({}, reembed=False))
    assert not marker.exists()
    with contextlib.suppress(Exception):  # its code runs, then it fails: no model class in it
        TPEncoder(EncoderSettings(str(model), "fp32", trust_remote_code=True))
    assert marker.exists()  # the flag of the person running it still works
    # Nothing stored says it any more: a re-index writes the permission back as off.
    assert run("index", "--trust-remote-code").exit_code == 0
    with contextlib.closing(sqlite3.connect(database)) as connection:
        (stored,) = connection.execute("SELECT value FROM meta WHERE key = 'encoder_settings'")
    assert json.loads(stored[0])["trust_remote_code"] is False


HOSTILE = {
    "docs/\x1b[31mred.md": "# Title \x1b]0;pwned\x07\n\nClear \x1b[2J the screen, firewall.\n",
    "docs/link.md": "# Links\n\nA \x1b]8;;http://evil.example/\x1b\\firewall\x1b]8;;\x1b\\ link.\n",
    "docs/copy.md": "# Links\n\nA \x1b]8;;http://evil.example/\x1b\\firewall\x1b]8;;\x1b\\ link.\n",
}


def test_escape_sequences_from_files_never_reach_the_terminal(hashed: Path) -> None:
    write_corpus(hashed, HOSTILE)
    assert run("index", "docs").exit_code == 0
    for args in (
        ["query", "firewall"],
        ["query", "firewall", "--files"],
        ["status", "--check"],
        ["dedupe"],
        ["dedupe", "--level", "chunk"],
        ["cluster"],
    ):
        shown = run(*args)
        assert shown.exit_code in (0, 1), (args, shown.output)
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout, args
        assert "\x1b" not in shown.stderr, args
    shown = run("query", "firewall")
    assert "\u241b[31mred.md" in shown.stdout  # visible, not obeyed
    assert "\u241b[2J" in shown.stdout or "\u241b]8;;" in shown.stdout
    exact = json.loads(run("query", "firewall", "--json").stdout)  # JSON keeps the exact text
    assert any("\x1b[" in hit["path"] for hit in exact)
    assert any("\x1b]8;;http://evil.example/" in hit["snippet"] for hit in exact)


def test_the_search_screen_shows_escape_sequences_as_visible_marks() -> None:
    from tpsearch.collection.passages import Passage
    from tpsearch.collection.search import Hit
    from tpsearch.tui.preview import hit_row, passage_text

    hit = Hit(1, 0.9, 7, "docs/\x1b[31mred.md", 1, 2, "Title \x1b]0;pwned\x07", "", ())
    row = hit_row(hit).plain
    lines = [(1, "Clear \x1b[2J the firewall"), (2, "\u202eevil")]
    preview = passage_text(Passage("docs/a.md", lines, 1, 2, False), ["firewall"])
    for text in (row, preview.plain):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\u241b[31mred.md" in row and "\u241b[2J" in preview.plain
    marked = [preview.plain[s.start : s.end] for s in preview.spans if "bold" in str(s.style)]
    assert marked == ["firewall"]  # the query word is still the one marked


# --- data loss -------------------------------------------------------------------------------


def test_reembed_with_a_model_that_does_not_load_keeps_every_vector(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    with Collection.locate(tmp_path, create=True) as col:
        col.index([tmp_path / "docs"], encoder_factory=using(HashingEncoder()))
        before = col.store.counts()["embedded"]
        vectors = col.vectors_path()
        with pytest.raises(ModelLoadError, match="every vector is kept"):
            col.index(reembed=True, overrides={"model": str(tmp_path / "no-such-model")})
        assert before == 3 and col.store.counts()["embedded"] == before and vectors.exists()
        hits = col.query("firewall", mode="semantic", encoder_factory=using(HashingEncoder()))
        assert hits.hits and hits.hits[0].path == "docs/guide.md"


def test_weights_changed_in_place_are_refused(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    model = shutil.copytree(tiny_model("qwen2"), tmp_path / "model")
    write_corpus(tmp_path)
    overrides = {"model": str(model), "precision": "fp32"}
    with Collection.locate(tmp_path, create=True) as col:
        col.index([tmp_path / "docs"], overrides=overrides)
        stored = col.store.get_meta("fingerprint")
        assert "weights sha256:" in str(col.store.get_meta("encoder")["revision"])
    save_tiny_model(model, "qwen2", seed=7)  # other weights, same folder, same shapes
    (tmp_path / "docs" / "new.md").write_text("# New\n\nA new note about the firewall.\n")
    with Collection.locate(tmp_path) as col:
        with pytest.raises(CollectionError, match="other vectors"):
            col.index(overrides=overrides)
        assert col.store.get_meta("fingerprint") == stored
        with pytest.raises(CollectionError, match="other vectors"):
            col.query("firewall", mode="semantic", overrides=overrides)


def test_a_collection_from_before_weight_hashes_is_adopted(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    from tpsearch.engine.token_prepending import TPEncoder

    model = str(tiny_model("qwen2"))
    write_corpus(tmp_path)
    with Collection.locate(tmp_path, create=True) as col:
        col.index([tmp_path / "docs"], overrides={"model": model, "precision": "fp32"})
        encoder = TPEncoder(model, precision="fp32")
        (former,) = encoder.former_fingerprints  # as tpsearch gave it with revision None
        col.store.set_meta(fingerprint=former)
        found = col.query("firewall", mode="semantic", overrides={"model": model})
        assert found.hits


# --- clear errors ----------------------------------------------------------------------------


def _damage_chunks_page(database: Path) -> None:
    """Overwrite the root page of the chunks table, in the middle of the file."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'chunks'")
        (size,) = connection.execute("PRAGMA page_size")
    assert 1 < page[0] < database.stat().st_size // size[0]
    with database.open("r+b") as file:
        file.seek((page[0] - 1) * size[0])
        file.write(b"\xa5" * size[0])


def test_a_damaged_database_is_named_with_the_way_out(hashed: Path) -> None:
    notes = {f"docs/n{i}.md": f"# Note {i}\n\nThe firewall port {i}.\n" * 3 for i in range(60)}
    write_corpus(hashed, notes)
    assert run("index", "docs").exit_code == 0
    _damage_chunks_page(hashed / ".tpsearch" / "tpsearch.db")
    checked = tpsearch(hashed, "status", "--check")  # a real process: the exit status
    assert checked.returncode == 1, checked.stderr
    assert "damaged" in checked.stderr and "tpsearch index" in checked.stderr
    assert ".recover" in checked.stderr and "Traceback" not in checked.stderr
    for args in (["query", "firewall"], ["dedupe"], ["cluster"], ["index"]):
        failed = run(*args)
        assert failed.exit_code == 2, (args, failed.output)
        assert "damaged" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1


def test_a_settings_row_that_is_not_json_is_one_clear_line(hashed: Path) -> None:
    write_corpus(hashed)
    assert run("index", "docs").exit_code == 0
    database = hashed / ".tpsearch" / "tpsearch.db"
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("UPDATE meta SET value = '{not json' WHERE key = 'encoder_settings'")
    for args in (["query", "firewall"], ["index"]):
        failed = run(*args)
        assert failed.exit_code == 2 and "'encoder_settings'" in failed.stderr, failed.output
        assert "not valid JSON" in failed.stderr and "Traceback" not in failed.output


@contextlib.contextmanager
def write_lock_held(database: Path, seconds: float | None) -> Iterator[None]:
    """Another connection holds SQLite's write lock (for `seconds`, or to the end)."""
    other = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(seconds, lambda: other.execute("COMMIT")) if seconds else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.join()
        else:
            other.execute("COMMIT")
        other.close()


def test_a_held_sqlite_write_lock_is_waited_for_then_refused(hashed: Path) -> None:
    write_corpus(hashed)
    assert run("index", "docs").exit_code == 0
    database = hashed / ".tpsearch" / "tpsearch.db"
    with write_lock_held(database, seconds=1.5):
        waited = run("index")
    assert waited.exit_code == 0, waited.output
    assert "waiting up to 60 s" in waited.stderr  # said while it waited
    with write_lock_held(database, seconds=None), Collection.locate(hashed) as col:
        col.busy_wait_seconds = 0.5
        with (
            pytest.warns(TpsearchWarning, match="waiting up to 0.5 s"),
            pytest.raises(WriterBusy, match=r"held the write lock .* close it"),
        ):
            col.index(encoder_factory=using(HashingEncoder()))


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "small-disk"
    _mount_tmpfs(folder, "400k")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_one_clear_line_and_the_next_run_completes(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(small_disk)
    monkeypatch.setattr(
        "tpsearch.collection.facade.default_encoder_factory", using(HashingEncoder(dim=256))
    )
    notes = {f"docs/n{i}.md": f"# Note {i}\n\n" + f"word{i} firewall " * 300 for i in range(40)}
    source = small_disk.parent / "source"
    write_corpus(source, notes)
    index = small_disk / "collection"
    full = run("index", str(source / "docs"), "--index", str(index))
    assert full.exit_code == 2, full.output
    assert "disk is full" in full.stderr and "Traceback" not in full.output
    with Collection.open(index) as col:
        kept = col.store.counts()["files"]
    assert kept > 0  # committed work is kept
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    done = run("index", "--index", str(index))
    assert done.exit_code == 0, done.output
    assert run("query", "word7", "--index", str(index), "--mode", "lexical").exit_code == 0


def test_a_full_disk_while_saving_the_vector_index_is_an_error_not_a_short_file(
    small_disk: Path,
) -> None:
    import numpy as np

    from tpsearch.collection.vector_index import VectorIndex

    vectors = np.random.default_rng(0).standard_normal((2_000, 64)).astype(np.float32)
    index = VectorIndex.build(np.arange(2_000), vectors, 64)  # 512 kB: more than the disk
    path = small_disk / "vectors-1.faiss"
    with pytest.raises(CollectionError, match="disk"):
        index.save(path)
    assert not path.exists() and list(small_disk.iterdir()) == []  # no cut-short file left


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot write: by its mode, or (as root) a read-only mount."""
    folder = tmp_path / "read-only"
    if os.geteuid() != 0:
        folder.mkdir()
        yield folder
        folder.chmod(0o755)
        return
    _mount_tmpfs(folder, "4m")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def _make_read_only(folder: Path) -> None:
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


def test_a_read_only_collection_answers_queries_and_refuses_writes_clearly(
    read_only_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(read_only_folder)
    monkeypatch.setattr(
        "tpsearch.collection.facade.default_encoder_factory", using(HashingEncoder())
    )
    write_corpus(read_only_folder)
    assert run("index", "docs").exit_code == 0
    _make_read_only(read_only_folder)
    assert run("query", "firewall", "--mode", "lexical").exit_code == 0
    refused = run("index")
    assert refused.exit_code == 2 and "Traceback" not in refused.output, refused.output
    assert "write" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    plotted = run("cluster", "--plot", str(read_only_folder / "map.png"))
    assert plotted.exit_code == 2 and "cannot write" in plotted.stderr, plotted.output
    assert plotted.stdout == ""  # refused before the clustering ran


def test_pickled_weights_are_refused_with_the_way_to_convert(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    from tpsearch.engine.backbone import load_backbone

    model = shutil.copytree(tiny_model("qwen2"), tmp_path / "pickled")
    weights = load_file(str(model / "model.safetensors"))
    (model / "model.safetensors").unlink()
    marker = tmp_path / "RAN"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.write_text, (marker, "pickle code ran"))

    torch.save({**weights, "payload": Payload()}, model / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pickle .* safe loader") as refused:
        load_backbone(str(model), precision="fp32")
    assert "save_pretrained" in str(refused.value) and "\n" not in str(refused.value)
    assert not marker.exists()


# --- the walk --------------------------------------------------------------------------------


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path: Path) -> None:
    (tmp_path / "plain.md").write_text("# Beside\n\nThe plain file beside the deep tree.\n")
    deep = tmp_path
    try:
        for _ in range(11):  # 11 x 100 folders, made in steps (a path's length has a limit)
            deep = deep / "/".join(["d"] * 100)
            deep.mkdir(parents=True)
        (deep / "bottom.md").write_text("At the bottom.\n")
        found = walk(tmp_path, tmp_path, ScanSettings())
        names = {c.rel.rsplit("/", 1)[-1] for c in found.files}
        assert names == {"plain.md", "bottom.md"}
    finally:  # pytest's own clean-up would recurse as deep
        (deep / "bottom.md").unlink(missing_ok=True)
        while deep != tmp_path:
            with contextlib.suppress(FileNotFoundError):
                deep.rmdir()
            deep = deep.parent


def test_a_file_swapped_for_a_fifo_after_the_scan_is_skipped_not_waited_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes.md"
    path.write_text("soon a FIFO\n")
    path.unlink()
    os.mkfifo(path)  # no writer will ever come

    def hung(*_: object) -> None:
        raise TimeoutError("blocked opening a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        result = read_bytes(path, 1 << 20)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not isinstance(result, bytes) and "not a regular file" in result.detail


LATIN_1 = {
    "fr": "Le château de la Loire est une merveille. Une approche naïve de la cuisine "
    "française : crème brûlée, pâté, façade, où, déjà, très élégant.\n",
    "de": "Die Größe der Straße ist für Fußgänger ungewöhnlich. Übermäßig schöne Brücken "
    "über den Fluss, Äpfel und Öl.\n",
    "es": "El niño comió en la montaña. ¿Dónde está la estación? ¡Qué difícil es aprender "
    "español! Canción, corazón.\n",
}


def test_latin_1_text_is_read_as_latin_1_and_found(hashed: Path) -> None:
    for language, text in LATIN_1.items():
        document = read_document(text.encode("latin-1"))
        assert not isinstance(document, type(None)) and getattr(document, "text", "") == text
        (hashed / "docs").mkdir(exist_ok=True)
        (hashed / "docs" / f"{language}.txt").write_bytes(text.encode("latin-1"))
    assert run("index", "docs").exit_code == 0
    for word, file in (("château", "fr"), ("naïve", "fr"), ("Straße", "de"), ("niño", "es")):
        found = run("query", word, "--mode", "lexical", "--json")
        assert found.exit_code == 0 and json.loads(found.stdout)[0]["path"] == f"docs/{file}.txt"
    # Text of another script in its own code page is still read by the detector.
    russian = "Привет, как дела? Это простой текст на русском языке.\n"
    assert getattr(read_document(russian.encode("cp1251")), "text", "") == russian


def test_one_huge_line_is_chunked_in_linear_time() -> None:
    words = ["alpha", "beta", "gamma", "délta", "x1", '{"k":', "1},", "東京都"]
    text = " ".join(words[i % 7 + (i % 3 == 0)] for i in range(400_000))  # ~2 MB, one line
    settings = ChunkSettings.for_encoder("last", 512)
    started = time.perf_counter()
    chunks = chunk_document(text, "text", settings)
    seconds = time.perf_counter() - started
    assert seconds < 8, f"{seconds:.1f} s for {len(text) / 1e6:.1f} MB"  # was 19 s (quadratic)
    data = text.encode()
    assert all(data[c.start_byte : c.end_byte].decode() == c.text for c in chunks[::97])
    assert max(c.tokens for c in chunks) <= settings.max_tokens


def test_names_in_progress_lines_are_text_not_markup() -> None:
    """A model or file name that looks like Rich markup (from a shared collection's settings,
    or a GGUF's name) is printed as it is: '[link=...]' makes no link, '[/b]' no crash."""
    import io

    from rich.console import Console

    from tpsearch.cli.render.progress import RichProgress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system="standard")
    hostile = "loading [link=https://evil.example/]smollm2[/link] from models/[/b]"
    with RichProgress(console) as progress:
        progress.start("load", None)
        progress.note("load", hostile)
        progress.bars.refresh()
    shown = out.getvalue()
    assert "[link=https://evil.example/]smollm2[/link]" in shown
    assert "\x1b]8;" not in shown  # no OSC 8 hyperlink


def test_get_refuses_what_an_indexed_name_has_become_since(tmp_path: Path) -> None:
    """After indexing, someone who can write in the tree swaps an indexed file for a link to
    a hidden file (never indexed) or for a FIFO: the MCP `get` tool (Collection.read) refuses
    the one and does not block on the other."""
    write_corpus(tmp_path)
    (tmp_path / ".env").write_text("SECRET_TOKEN=hunter2\n", encoding="utf-8")
    with Collection.locate(tmp_path, create=True) as col:
        col.index([tmp_path / "docs"], encoder_factory=using(HashingEncoder()))
        assert col.read("docs/guide.md").total_lines > 0
        guide = tmp_path / "docs" / "guide.md"
        guide.unlink()
        guide.symlink_to(tmp_path / ".env")
        with pytest.raises(CollectionError, match="did not index"):
            col.read("docs/guide.md")
        guide.unlink()
        os.mkfifo(guide)
        started = time.monotonic()
        with pytest.raises(CollectionError, match="cannot read"):
            col.read("docs/guide.md")
        assert time.monotonic() - started < 5


def test_a_file_name_with_escapes_is_shown_whole_in_the_dedupe_table(
    hashed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made visible before the table is laid out: `␛` takes a column like any character, and
    the name's last letters are not cut."""
    monkeypatch.setenv("COLUMNS", "100")
    text = "# Notes\n\nthe same words in both files, a copy of the other\n"
    write_corpus(hashed, {"docs/dup.md": text, "docs/dup\x1b[31m1[b].md": text})
    assert run("index", "docs").exit_code == 0
    shown = run("dedupe")
    assert shown.exit_code == 0 and "docs/dup\u241b[31m1[b].md" in shown.stdout, shown.stdout
