"""Indexing a folder: what a first run, a re-run, a change, a deletion and a failure leave."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.corpus import (
    API,
    FILES,
    LONG_AGO,
    FlakyEncoder,
    downgrade_to_first_schema,
    edit,
    failing_to_load,
    using,
    write_corpus,
)
from tests.fakes import HashingEncoder
from tpsearch.collection import Collection, EncoderFactory, find_index_dir
from tpsearch.collection.locking import WriterLock
from tpsearch.collection.vector_index import VectorIndex, VectorPolicy
from tpsearch.errors import CollectionError, ConfigError, EncodingError, ModelLoadError


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_corpus(tmp_path)


@pytest.fixture
def col(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Collection.locate(tmp_path, create=True) as opened:
        yield opened


def hashing() -> EncoderFactory:
    return using(HashingEncoder())


def chunk_ids(col: Collection) -> list[int]:
    return [r[0] for r in col.store.query("SELECT id FROM chunks ORDER BY id")]


def saved_ids(col: Collection) -> list[int]:
    saved = VectorIndex.load(col.vectors_path())
    assert saved is not None, "no saved vector index"
    return saved.ids().tolist()


def lexical_paths(col: Collection, text: str) -> set[str]:
    return {h.path for h in col.query(text, mode="lexical").hits}


def test_first_run_indexes_every_text_file(col: Collection, docs: Path) -> None:
    encoder = HashingEncoder()
    summary = col.index([docs], encoder_factory=using(encoder))
    assert (summary.new, summary.updated, summary.unchanged, summary.removed) == (3, 0, 0, 0)
    assert {s.rel: s.reason for s in summary.skips} == {
        "docs/.draft.md": "hidden",
        "docs/logo.png": "binary",
    }
    assert summary.line().startswith("3 new, 0 updated, 0 unchanged, 0 removed, 2 skipped")
    assert summary.pending == 0 and summary.embedded == len(chunk_ids(col)) == 3
    assert saved_ids(col) == chunk_ids(col)
    assert col.problems() == []


def test_a_rerun_without_changes_reads_nothing_and_loads_no_model(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    reads: list[bytes] = []
    import tpsearch.collection.scanning as scanning

    real = scanning.read_document
    monkeypatch.setattr(scanning, "read_document", lambda data: reads.append(data) or real(data))
    summary = col.index(encoder_factory=failing_to_load)  # remembered sources; model unneeded
    assert summary.line().startswith("0 new, 0 updated, 3 unchanged, 0 removed, 2 skipped")
    assert reads == [] and summary.embedded == 0


def test_an_edit_that_keeps_size_and_mtime_is_found(col: Collection, docs: Path) -> None:
    """Like git, the stat signature has ctime, inode and device too: `cp -p`, `tar x` or an
    editor writing a temporary file and renaming it over keep size and mtime, not those."""
    col.index([docs], encoder_factory=hashing())
    api = docs / "api.md"
    mtime = api.stat().st_mtime_ns
    api.write_text(API.replace("bearer", "signed"), encoding="utf-8")  # in place, as cp -p
    os.utime(api, ns=(mtime, mtime))
    summary = col.index(encoder_factory=hashing())
    assert summary.updated == 1 and lexical_paths(col, "signed") == {"docs/api.md"}
    temporary = docs / "api.md.tmp"
    temporary.write_text(API.replace("bearer", "hashed"), encoding="utf-8")
    os.utime(temporary, ns=(mtime, mtime))
    os.replace(temporary, api)  # a new inode under the old name
    summary = col.index(encoder_factory=hashing())
    assert summary.updated == 1 and lexical_paths(col, "hashed") == {"docs/api.md"}
    assert col.index(encoder_factory=hashing()).unchanged == 3


def test_a_file_changed_twice_within_a_timestamp_tick_is_found(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a file system with coarse timestamps and no ctime or inode changes (simulated),
    a file written during a scan can change again without its stat changing ("racy git")."""
    import tpsearch.collection.sources as sources

    def coarse(info: os.stat_result) -> sources.Signature:
        return sources.Signature(info.st_size, info.st_mtime_ns // 10**9 * 10**9, 0, 0, 0)

    monkeypatch.setattr(sources, "signature_of", coarse)
    fresh = docs / "fresh.md"
    fresh.write_text("# Fresh\n\nWritten a moment ago.\n", encoding="utf-8")
    mtime = fresh.stat().st_mtime_ns
    col.index([docs], encoder_factory=hashing())
    fresh.write_text("# Fresh\n\nRewritten a moment later\n", encoding="utf-8")  # same size
    os.utime(fresh, ns=(mtime, mtime))
    summary = col.index(encoder_factory=hashing())
    assert summary.updated == 1 and lexical_paths(col, "rewritten") == {"docs/fresh.md"}


def test_collections_of_the_first_schema_are_upgraded_without_reembedding(
    col: Collection, docs: Path
) -> None:
    col.index([docs], encoder_factory=hashing())
    downgrade_to_first_schema(col.store.path)
    with Collection.open(col.folder) as reader:  # readers work before the upgrade
        assert reader.query("firewall", path="*.md", encoder_factory=hashing()).hits
        assert reader.status().skipped == {"binary": 1, "hidden": 1}
        assert reader.dedupe().groups == ()
    with Collection.open(col.folder, write=True) as writer:
        encoder = HashingEncoder()
        summary = writer.index(encoder_factory=using(encoder))
        assert summary.unchanged == 3 and encoder.texts_encoded == 0  # hashed, not re-chunked
        assert writer.problems() == []


def test_a_changed_file_is_rechunked_and_only_it_is_embedded(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    before = set(chunk_ids(col))
    edit(docs / "api.md", API.replace("bearer tokens", "signed cookies"))
    encoder = HashingEncoder()
    summary = col.index(encoder_factory=using(encoder))
    assert (summary.new, summary.updated, summary.unchanged) == (0, 1, 2)
    new_ids = set(chunk_ids(col)) - before
    assert encoder.texts_encoded == len(new_ids) == summary.chunks_written
    assert lexical_paths(col, "cookies") == {"docs/api.md"}
    assert lexical_paths(col, "bearer") == set()
    assert saved_ids(col) == chunk_ids(col)


def test_a_new_mtime_with_the_same_content_is_unchanged(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    edit(docs / "api.md", API)
    encoder = HashingEncoder()
    summary = col.index(encoder_factory=using(encoder))
    assert summary.unchanged == 3 and encoder.texts_encoded == 0


def test_a_deleted_file_leaves_sqlite_fts_and_faiss(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    (docs / "api.md").unlink()
    summary = col.index(encoder_factory=using(HashingEncoder()))
    assert summary.removed == 1
    assert "docs/api.md" not in col.store.files()
    assert lexical_paths(col, "endpoints") == set()
    assert saved_ids(col) == chunk_ids(col)
    semantic = col.query(
        "endpoints items", mode="semantic", encoder_factory=using(HashingEncoder())
    )
    assert "docs/api.md" not in {h.path for h in semantic.hits}


def test_a_file_that_turns_binary_is_removed_and_skipped(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    (docs / "notes.txt").write_bytes(b"\x00\x01binary now")
    summary = col.index(encoder_factory=using(HashingEncoder()))
    assert summary.removed == 1
    assert ("docs/notes.txt", "binary") in {(s.rel, s.reason) for s in summary.skips}
    assert col.status().skipped == {"binary": 2, "hidden": 1}


def test_a_bare_run_rescans_the_remembered_folders(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    edit(docs / "more.md", "# More\n\nA brand new page about gardening.\n")
    summary = col.index(encoder_factory=using(HashingEncoder()))
    assert summary.new == 1 and lexical_paths(col, "gardening") == {"docs/more.md"}
    assert col.status().sources == ["docs"]


def test_a_missing_remembered_folder_keeps_its_files_until_forgotten(
    col: Collection, docs: Path
) -> None:
    """A folder can be missing for a while (a disk not mounted, a checkout being switched):
    its files stay searchable, and the user is told how to remove them for good."""
    col.index([docs], encoder_factory=hashing())
    hidden = docs.with_name("unmounted")
    docs.rename(hidden)
    summary = col.index(encoder_factory=hashing())
    assert summary.removed == 0 and col.store.counts()["files"] == 3
    assert "docs is missing" in summary.notices[0] and "--forget docs" in summary.notices[0]
    assert lexical_paths(col, "firewall") == {"docs/guide.md"}
    hidden.rename(docs)  # back again: nothing to redo
    assert col.index(encoder_factory=hashing()).line().startswith("0 new, 0 updated, 3 unch")
    shutil.rmtree(docs)
    with pytest.raises(ConfigError, match="not a remembered"):
        col.index(forget=["elsewhere"], encoder_factory=hashing())
    forgotten = col.index(forget=[docs], encoder_factory=hashing())
    assert forgotten.removed == 3 and col.store.counts()["chunks"] == 0
    assert col.status().sources == [] and col.status().skipped == {}
    bare = col.index(encoder_factory=hashing())  # nothing remembered: not the whole root
    assert bare.line().startswith("0 new, 0 updated, 0 unchanged, 0 removed, 0 skipped")
    assert "tpsearch index PATH" in bare.notices[0]


def test_forgetting_a_folder_keeps_what_is_indexed_again(col: Collection, docs: Path) -> None:
    (docs / "more").mkdir()
    edit(docs / "more" / "extra.md", "# Extra\n\nAn extra page about sailing.\n")
    col.index([docs], encoder_factory=hashing())
    summary = col.index([docs / "more"], forget=[docs], encoder_factory=hashing())
    assert summary.removed == 3 and sorted(col.store.files()) == ["docs/more/extra.md"]
    assert col.status().sources == ["docs/more"]


def test_changing_a_vector_setting_is_refused_and_offers_reembed(
    col: Collection, docs: Path
) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    before = chunk_ids(col)
    with pytest.raises(CollectionError, match=r"pooling: 'last' -> 'mean'.*--reembed"):
        col.index(overrides={"pooling": "mean"}, encoder_factory=using(HashingEncoder()))
    assert chunk_ids(col) == before  # nothing touched
    summary = col.index(overrides={"device": "cpu"}, encoder_factory=using(HashingEncoder()))
    assert summary.unchanged == 3  # the device changes speed, not vectors


def test_reembed_replaces_every_vector_under_a_new_file(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    assert col.vectors_path(1).exists()
    encoder = HashingEncoder(dim=32, model_id="test/other")
    summary = col.index(overrides={"pooling": "mean"}, reembed=True, encoder_factory=using(encoder))
    assert summary.updated == 3  # the chunk budget follows the pooling: re-chunked
    # every chunk, and one probe text: the new encoder is tried before a vector is dropped
    assert encoder.texts_encoded == len(chunk_ids(col)) + 1 and summary.pending == 0
    assert not col.vectors_path(1).exists() and saved_ids(col) == chunk_ids(col)
    assert col.status().model_id == "test/other"
    again = col.index(encoder_factory=using(encoder))  # stored settings now say mean
    assert again.unchanged == 3


def test_a_new_default_chunk_size_leaves_a_collection_as_it_was_built_until_reembed(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later tpsearch with smaller default chunks neither refuses an older collection nor
    re-embeds it unasked: it keeps its chunk size, says so, and --reembed adopts the new one."""
    col.index([docs], encoder_factory=hashing())
    before = chunk_ids(col)
    monkeypatch.setattr("tpsearch.collection.chunking.LAST_POOLING_TOKENS", 12)
    (docs / "added.md").write_text("# Added\n\n" + "More words on a new page. " * 20)
    summary = col.index([docs], encoder_factory=hashing())
    assert summary.new == 1 and summary.unchanged == 3
    assert any("keeps its 160-token chunks" in notice for notice in summary.notices)
    assert col.status().chunker["max_tokens"] == 160 and chunk_ids(col)[:3] == before
    assert len(chunk_ids(col)) == 4  # the new page cut as its neighbours were
    summary = col.index([docs], reembed=True, encoder_factory=hashing())
    assert col.status().chunker["max_tokens"] == 12 and len(chunk_ids(col)) > 8
    assert not any("keeps its" in notice for notice in summary.notices)


def test_a_model_giving_other_vectors_is_refused(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    edit(docs / "api.md", API + "\nOne more line.\n")
    with pytest.raises(CollectionError, match="fingerprint"):
        col.index(encoder_factory=using(HashingEncoder(dim=32, model_id="test/changed")))
    dims = col.store.query("SELECT DISTINCT length(vector) FROM vectors")
    assert dims == [(4 * 64,)]  # no vector of the other model slipped in


def test_resolved_settings_are_stored_for_the_next_run(col: Collection, docs: Path) -> None:
    class Resolving(HashingEncoder):
        resolved_settings = col.wanted_settings({}, False).with_overrides(tp_start=1, tp_end=3)

    col.index([docs], encoder_factory=using(Resolving()))
    stored = col.stored_settings()
    assert stored is not None and (stored.tp_start, stored.tp_end) == (1, 3)


def test_without_a_model_the_scan_is_kept_and_keywords_work(col: Collection, docs: Path) -> None:
    with pytest.raises(ModelLoadError, match="keywords only"):
        col.index([docs], encoder_factory=failing_to_load)
    counts = col.store.counts()
    assert counts["files"] == 3 and counts["pending"] == counts["chunks"] > 0
    result = col.query("firewall port", encoder_factory=failing_to_load)
    assert result.used == "lexical" and result.hits[0].path == "docs/guide.md"
    assert "keyword" in result.notices[0]
    summary = col.index(encoder_factory=using(HashingEncoder()))  # later, the model loads
    assert summary.embedded == counts["chunks"] and summary.pending == 0
    assert col.query("firewall port", encoder_factory=using(HashingEncoder())).used == "hybrid"


def test_an_encoder_failing_midway_keeps_what_was_committed(col: Collection, docs: Path) -> None:
    for n in range(20):
        edit(docs / f"page{n}.md", f"# Page {n}\n\nText of page number {n}.\n")
    flaky = FlakyEncoder(fail_on_call=2, error=RuntimeError("out of memory"))
    with pytest.raises(RuntimeError, match="out of memory"):
        col.index([docs], encoder_factory=using(flaky), batch_size=1)  # groups of 8 chunks
    counts = col.store.counts()
    assert 1 <= counts["embedded"] <= 8 < counts["chunks"]  # the first group (<= 8) is kept
    assert col.store.last_run()["status"] == "failed"  # type: ignore[index]
    assert col.problems() == []
    encoder = HashingEncoder()
    col.index(encoder_factory=using(encoder))
    assert encoder.texts_encoded == counts["pending"]  # only the rest, nothing twice
    assert col.store.counts()["pending"] == 0 and saved_ids(col) == chunk_ids(col)


def test_non_finite_vectors_are_refused(col: Collection, docs: Path) -> None:
    class Broken(HashingEncoder):
        def encode(self, texts, batch_size=32):  # type: ignore[no-untyped-def]
            return np.full((len(texts), self.dim), np.nan, dtype=np.float32)

    with pytest.raises(EncodingError, match="non-finite"):
        col.index([docs], encoder_factory=using(Broken()))
    assert col.store.counts()["embedded"] == 0


def test_ctrl_c_keeps_committed_files(col: Collection, docs: Path) -> None:
    class StopAfterOneFile:
        def start(self, phase: str, total: int | None) -> None:
            pass

        def advance(self, phase: str, amount: int = 1) -> None:
            raise KeyboardInterrupt

        def finish(self, phase: str) -> None:
            pass

    with pytest.raises(KeyboardInterrupt):
        col.index([docs], encoder_factory=using(HashingEncoder()), progress=StopAfterOneFile())
    assert col.store.counts()["files"] == 1 and col.store.last_run()["status"] == "interrupted"  # type: ignore[index]
    summary = col.index(encoder_factory=using(HashingEncoder()))
    assert (summary.new, summary.unchanged) == (2, 1) and summary.pending == 0


def test_one_writer_at_a_time(col: Collection, docs: Path) -> None:
    with WriterLock(col.folder), pytest.raises(CollectionError, match="another tpsearch"):
        col.index([docs], encoder_factory=using(HashingEncoder()))


def test_readers_are_not_blocked_by_a_writer(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    writer = sqlite3.connect(col.store.path)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM chunks")  # uncommitted: readers keep seeing the old state
    try:
        with Collection.open(col.folder) as reader:
            result = reader.query("firewall", encoder_factory=using(HashingEncoder()))
        assert result.hits and result.hits[0].path == "docs/guide.md"
    finally:
        writer.rollback()


def test_a_missing_or_corrupt_vector_file_is_rebuilt(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    col.vectors_path(1).write_bytes(b"not a faiss index")
    with Collection.open(col.folder) as reader:
        result = reader.query("firewall", mode="semantic", encoder_factory=using(HashingEncoder()))
        assert result.hits[0].path == "docs/guide.md"
    col.index(encoder_factory=using(HashingEncoder()))  # the writer notices the damage too
    assert saved_ids(col) == chunk_ids(col)


def test_the_collection_is_found_from_a_subfolder(tmp_path: Path, docs: Path) -> None:
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(HashingEncoder()))
    assert find_index_dir(docs) == tmp_path / ".tpsearch"
    with Collection.locate(docs) as found:
        assert found.root == tmp_path and found.status().files == len(FILES)


def test_no_collection_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CollectionError, match="tpsearch index PATH"):
        Collection.locate(tmp_path)
    with pytest.raises(CollectionError, match="no collection in"):
        Collection.locate(tmp_path, explicit=tmp_path / "elsewhere")


def test_status_reports_what_a_user_needs(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    status = col.status(check=True)
    assert (status.files, status.pending, status.embedded) == (3, 0, status.chunks)
    assert status.skipped == {"binary": 1, "hidden": 1}
    assert status.model_id == "test/hashing" and status.fingerprint
    assert status.encoder["kind"] == "hashing bag of words"
    assert status.chunker["max_tokens"] == 160
    assert status.bytes_on_disk["database"] > 0 and status.bytes_on_disk["vectors"] > 0
    assert status.vector_index == {"kind": "exact", "vectors": 3, "nlist": 0, "nprobe": 0}
    assert status.last_run["status"] == "completed"  # type: ignore[index]
    assert status.problems == []


def test_reembed_with_a_mistyped_path_changes_nothing(col: Collection, docs: Path) -> None:
    col.index([docs], encoder_factory=using(HashingEncoder()))
    before = col.store.counts()
    with pytest.raises(ConfigError, match="no such file or folder"):
        col.index([docs.parent / "dcos"], reembed=True, encoder_factory=using(HashingEncoder()))
    assert col.store.counts() == before and before["embedded"] == 3  # no vector dropped
    assert col.vectors_epoch() == 1 and saved_ids(col) == chunk_ids(col)
    assert col.status().sources == ["docs"]


def test_a_batch_size_below_one_is_refused_before_any_work(col: Collection, docs: Path) -> None:
    with pytest.raises(ConfigError, match="batch size"):
        col.index([docs], encoder_factory=using(HashingEncoder()), batch_size=0)
    assert col.store.counts()["files"] == 0 and col.store.last_run() is None


RACE = """
import sys, time
from pathlib import Path
from tests.corpus import using
from tests.fakes import HashingEncoder
from tpsearch.collection import Collection
from tpsearch.errors import TpsearchError
root, me, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(root / f"ready-{me}").touch()
while len(list(root.glob("ready-*"))) < n:  # all start together
    time.sleep(0.001)
try:
    with Collection.locate(root, create=True) as col:
        col.index([root / "docs"], encoder_factory=using(HashingEncoder()))
    print("indexed")
except TpsearchError as error:
    print("refused:", error)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="timing of process start-up")
def test_first_runs_started_together_end_cleanly(tmp_path: Path, docs: Path) -> None:
    """Creating and upgrading the database happens under the writer lock: a run that loses the
    race is told that another process is writing, never shown a raw SQLite error."""
    n = 4
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-c", RACE, str(tmp_path)]
    runs = [
        subprocess.Popen([*command, str(i), str(n)], env=env, stdout=subprocess.PIPE, text=True)
        for i in range(n)
    ]
    outputs = [run.communicate(timeout=120)[0].strip() for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert "indexed" in outputs, outputs
    for output in outputs:
        assert output == "indexed" or "another tpsearch process is writing" in output, output
    with Collection.open(tmp_path / ".tpsearch") as col:
        assert col.store.counts()["files"] == 3 and col.problems() == []


def write_files(root: Path, rels: list[str]) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        edit(root / rel, f"# {rel}\n\nThe page {rel} about its own topic.\n")


def test_indexing_a_subfolder_keeps_what_the_patterns_select(col: Collection) -> None:
    write_files(col.root, ["docs/api/a.md", "docs/api/b.md", "docs/guide/c.md"])
    first = col.index([col.root / "docs"], include=["docs/api/"], encoder_factory=hashing())
    assert first.new == 2 and sorted(col.store.files()) == ["docs/api/a.md", "docs/api/b.md"]
    subset = col.index([col.root / "docs" / "api"], encoder_factory=hashing())
    assert (subset.unchanged, subset.removed) == (2, 0)
    bare = col.index(encoder_factory=hashing())
    assert (bare.new, bare.unchanged, bare.removed) == (0, 2, 0)
    relative_to_docs = col.index(include=["api/*.md"], encoder_factory=hashing())
    assert relative_to_docs.removed == 2
    assert "patterns are relative to the collection root" in relative_to_docs.notices[0]


def test_an_exclude_holds_whichever_folder_is_indexed(col: Collection) -> None:
    write_files(col.root, ["docs/a.md", "docs/internal/secret.md"])
    col.index([col.root / "docs"], exclude=["docs/internal/"], encoder_factory=hashing())
    direct = col.index([col.root / "docs" / "internal"], encoder_factory=hashing())
    assert direct.new == 0 and [s.reason for s in direct.skips] == ["excluded"]
    assert sorted(col.store.files()) == ["docs/a.md"]
    assert col.index(encoder_factory=hashing()).line().startswith("0 new, 0 updated, 1 unch")


def test_filters_are_remembered_until_given_again_or_cleared(col: Collection, docs: Path) -> None:
    col.index([docs], include=["*.md"], encoder_factory=hashing())
    assert "docs/notes.txt" not in col.store.files()
    assert col.index(encoder_factory=hashing()).unchanged == 2  # remembered
    assert col.status().filters["include"] == ["*.md"]
    changed = col.index(include=["*.txt"], encoder_factory=hashing())
    assert (changed.new, changed.removed) == (1, 2)
    cleared = col.index(include=[], exclude=[], encoder_factory=hashing())
    assert cleared.new == 2 and len(col.store.files()) == 3
    assert col.status().filters["include"] == []


@pytest.mark.parametrize("include", [[""], ["  "], ["# a comment"], ["!*.md"], ["!"], ["\\"]])
def test_a_pattern_that_matches_nothing_is_refused(
    col: Collection, docs: Path, include: list[str]
) -> None:
    col.index([docs], encoder_factory=hashing())
    with pytest.raises(ConfigError, match="pattern"):
        col.index(include=include, encoder_factory=hashing())
    assert len(col.store.files()) == 3  # nothing removed


def test_a_new_chunker_version_recuts_files_as_they_change(col: Collection, docs: Path) -> None:
    """Cutting rules of a newer tpsearch do not force a re-embedding of every file."""
    col.index([docs], encoder_factory=hashing())
    old = {**col.store.get_meta("chunker"), "version": 1}
    col.store.set_meta(chunker=old)
    edit(docs / "api.md", API + "\nOne more line.\n")
    encoder = HashingEncoder()
    summary = col.index(encoder_factory=using(encoder))
    assert (summary.updated, summary.unchanged) == (1, 2)  # only the changed file, re-cut
    assert encoder.texts_encoded == summary.chunks_written
    assert "--reembed" in summary.notices[0]
    assert col.store.get_meta("chunker")["version"] > 1
    assert col.index(encoder_factory=hashing()).notices == []


def test_a_reader_searches_vectors_not_yet_saved_without_building_an_index(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a writer runs, or after one died, SQLite holds vectors the saved FAISS file lacks
    (and lacks chunks it holds): every query process used to rebuild, even retrain, an index."""
    col.index([docs], encoder_factory=hashing())  # saved: 3 vectors
    for n in range(12):
        edit(docs / f"page{n}.md", f"# Page {n}\n\nSailing boats, page number {n}.\n")
    (docs / "notes.txt").unlink()
    monkeypatch.setattr("tpsearch.collection.indexing._save_vectors", lambda col, progress: None)
    col.index(encoder_factory=hashing())  # as a writer that has not saved yet
    monkeypatch.undo()

    def no_build(*args: object, **kwargs: object) -> VectorIndex:
        raise AssertionError("a reader built a vector index")

    monkeypatch.setattr(VectorIndex, "build", no_build)
    with Collection.open(col.folder) as reader:
        reader.policy = VectorPolicy(exact_max=4)  # 14 vectors would call for an IVF index
        for _ in range(2):  # the second query reuses what the first read
            found = reader.query(
                "sailing boats page number 7", mode="semantic", k=20, encoder_factory=hashing()
            )
            paths = [hit.path for hit in found.hits]
            assert paths[0] == "docs/page7.md" and len(paths) == 14
            assert "docs/notes.txt" not in paths  # removed since the save: not in the top k
            assert (
                len(
                    reader.query(
                        "billing", path="*.txt", mode="semantic", encoder_factory=hashing()
                    ).hits
                )
                == 0
            )


def test_a_long_run_saves_the_vector_index_as_it_goes(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tpsearch.collection.vector_cache as vector_cache

    monkeypatch.setattr(vector_cache, "SAVE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(vector_cache, "SAVE_TIME_SHARE", 1e9)  # no matter how long saves take
    for n in range(30):
        edit(docs / f"page{n}.md", f"# Page {n}\n\nText of page number {n}.\n")
    saves: list[int] = []
    real_save = VectorIndex.save

    def counting_save(index: VectorIndex, path: Path) -> None:
        saves.append(index.ntotal)
        real_save(index, path)

    monkeypatch.setattr(VectorIndex, "save", counting_save)
    summary = col.index([docs], encoder_factory=hashing(), batch_size=1)  # groups of 8
    assert len(saves) >= 3 and saves[0] < saves[-1] == summary.embedded == 33


def test_sqlite_is_made_durable_before_a_vector_file_is_saved(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With synchronous=NORMAL a power cut can undo the last commits, ids with them; a FAISS
    file saved after them would then hold ids SQLite may hand out again for other chunks."""
    events: list[str] = []
    col.store.db.conn.set_trace_callback(
        lambda sql: events.append("full") if "synchronous = FULL" in sql else None
    )
    real_save = VectorIndex.save
    monkeypatch.setattr(
        VectorIndex, "save", lambda index, path: events.append("save") or real_save(index, path)
    )
    col.index([docs], encoder_factory=hashing())
    assert events and events[0] == "full" and events[-1] == "save"
    assert all(events[i - 1] == "full" for i, e in enumerate(events) if e == "save")


def test_status_check_while_a_writer_is_busy_says_what_it_could_not_check(
    col: Collection, docs: Path
) -> None:
    """FTS5's integrity check is an INSERT: it needs the write lock a busy writer holds."""
    col.index([docs], encoder_factory=hashing())
    other = sqlite3.connect(col.store.path)  # a writer in the middle of a transaction
    other.execute("BEGIN IMMEDIATE")
    try:
        with Collection.open(col.folder) as reader:
            reader.store.db.execute("PRAGMA busy_timeout = 100")
            status = reader.status(check=True)
        assert status.problems == []  # not "full-text index out of step: database is locked"
        assert "a writer is busy" in (status.unchecked or [""])[0]
    finally:
        other.rollback()
    with WriterLock(col.folder), Collection.open(col.folder) as reader:  # `tpsearch index`
        status = reader.status(check=True)
    assert status.problems == [] and "a writer is busy" in (status.unchecked or [""])[0]
    status = col.status(check=True)
    assert (status.problems, status.unchecked) == ([], [])


def test_a_file_rejected_for_its_content_is_not_read_again_until_it_changes(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = docs / "data.txt"
    data.write_bytes(b"\x00\x01 not text " * 100)
    os.utime(data, (LONG_AGO, LONG_AGO))
    col.index([docs], encoder_factory=hashing())
    import tpsearch.collection.scanning as scanning

    reads: list[bytes] = []
    real = scanning.read_document
    monkeypatch.setattr(scanning, "read_document", lambda raw: reads.append(raw) or real(raw))
    again = col.index(encoder_factory=hashing())
    assert reads == [] and ("docs/data.txt", "binary") in {(s.rel, s.reason) for s in again.skips}
    edit(data, "Text at last: a page about kites.\n")
    changed = col.index(encoder_factory=hashing())
    assert len(reads) == 1 and changed.new == 1 and lexical_paths(col, "kites") == {"docs/data.txt"}


def test_files_and_folders_that_cannot_be_read_are_skipped_and_counted(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (docs / "locked").mkdir()
    edit(docs / "locked" / "inside.md", "# Inside\n\nBehind a closed door.\n")
    denied = {docs / "api.md", docs / "locked"}
    real_open, real_scandir = os.open, os.scandir

    def open_file(path: os.PathLike[str] | str, flags: int, *args: int) -> int:
        if Path(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    def scandir(path: os.PathLike[str] | str):  # type: ignore[no-untyped-def]
        if Path(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr("tpsearch.collection.documents.os.open", open_file)  # as chmod 000 would
    monkeypatch.setattr("tpsearch.collection.walk.os.scandir", scandir)
    summary = col.index([docs], encoder_factory=hashing())
    unreadable = {s.rel: s.detail for s in summary.skips if s.reason == "unreadable"}
    assert unreadable == {"docs/api.md": "Permission denied", "docs/locked/": "Permission denied"}
    assert summary.new == 2 and sorted(col.store.files()) == ["docs/guide.md", "docs/notes.txt"]


def test_ctrl_c_while_the_model_loads_encodes_nothing_after(col: Collection, docs: Path) -> None:
    loading = threading.Event()
    encoder = HashingEncoder()

    def slow_to_load(settings: object) -> HashingEncoder:
        loading.set()
        time.sleep(0.3)
        return encoder

    class CtrlCOnceLoading:
        def start(self, phase: str, total: int | None) -> None:
            pass

        def advance(self, phase: str, amount: int = 1) -> None:
            if phase == "scan":
                assert loading.wait(10)
                raise KeyboardInterrupt

        def finish(self, phase: str) -> None:
            pass

    with pytest.raises(KeyboardInterrupt):
        col.index([docs], encoder_factory=slow_to_load, progress=CtrlCOnceLoading())
    assert encoder.calls == 0 and col.store.counts()["embedded"] == 0


def test_a_file_name_that_is_not_utf8_is_skipped_and_the_rest_indexed(
    col: Collection, docs: Path
) -> None:
    """SQLite keeps text as UTF-8: such a name is reported, never a crash that blocks every run."""
    latin1 = os.fsencode(docs) + b"/caf\xe9.md"
    with open(latin1, "wb") as handle:
        handle.write(b"# Menu\n\nCoffee and croissants.\n")
    os.mkdir(os.fsencode(docs) + b"/r\xe9sum\xe9")
    summary = col.index([docs], encoder_factory=hashing())
    assert summary.new == 3 and sorted(col.store.files()) == [
        "docs/api.md",
        "docs/guide.md",
        "docs/notes.txt",
    ]
    unreadable = {s.rel: s.detail for s in summary.skips if s.reason == "unreadable"}
    assert unreadable == {
        "docs/caf\\xe9.md": "its name is not valid UTF-8: rename it",
        "docs/r\\xe9sum\\xe9/": "its name is not valid UTF-8: rename it",
    }
    again = col.index(encoder_factory=hashing())
    assert again.unchanged == 3 and col.status().skipped["unreadable"] == 2
    with pytest.raises(ConfigError, match="not valid UTF-8"):  # named on the command line
        col.index([Path(os.fsdecode(latin1))], encoder_factory=hashing())


def test_an_invalid_line_in_an_ignore_file_is_passed_over_as_git_does(
    col: Collection, docs: Path
) -> None:
    (docs / ".gitignore").write_text("!\n\\\nnotes.txt\n")
    summary = col.index([docs], encoder_factory=hashing())
    assert sorted(col.store.files()) == ["docs/api.md", "docs/guide.md"]
    assert {s.rel: s.reason for s in summary.skips}["docs/notes.txt"] == "ignored"


def test_a_collection_folder_inside_the_indexed_tree_is_left_out(
    tmp_path: Path, docs: Path
) -> None:
    """--index docs/search-index (not hidden): its database is never read as a document."""
    with Collection.locate(tmp_path, docs / "search-index", create=True) as col:
        col.index([docs], encoder_factory=hashing())
        again = col.index(encoder_factory=hashing())
        assert again.unchanged == 3 and again.new == 0
        inside = [s for s in again.skips if "search-index" in s.rel]
        assert [(s.rel, s.reason) for s in inside] == [("search-index/", "collection")]


def test_a_rerun_without_changes_does_not_load_the_vector_file(
    tmp_path: Path, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a million vectors the file is gigabytes: a run that changed nothing leaves it alone;
    one that changed something, or finds the file replaced, brings it in step."""
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=hashing())
    loads: list[Path] = []
    real_load = VectorIndex.load
    monkeypatch.setattr(VectorIndex, "load", lambda path: loads.append(path) or real_load(path))
    with Collection.open(tmp_path / ".tpsearch", write=True) as col:  # as a new process would
        assert col.index(encoder_factory=hashing()).unchanged == 3
        assert loads == []
        edit(docs / "notes.txt", "New notes about kites and wind.\n")
        col.index(encoder_factory=hashing())
        assert len(loads) == 1 and saved_ids(col) == chunk_ids(col)
    with Collection.open(tmp_path / ".tpsearch", write=True) as col:
        loads.clear()
        col.index(encoder_factory=hashing())
        assert loads == []
        col.vectors_path().write_bytes(b"damaged")
        col.index(encoder_factory=hashing())
        assert saved_ids(col) == chunk_ids(col)  # noticed and rebuilt


def record_calls(encoder: HashingEncoder, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Each `encode` call's text lengths, in call order."""
    calls: list[list[int]] = []
    real = encoder.encode

    def encode(texts, batch_size=32):  # type: ignore[no-untyped-def]
        calls.append([len(t) for t in texts])
        return real(texts, batch_size)

    monkeypatch.setattr(encoder, "encode", encode)
    return calls


def test_chunks_are_encoded_in_groups_of_similar_length(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Less padding: pending chunks are regrouped by length before encoding (each group is
    still one encode call and one transaction), and every chunk gets its vector once."""
    import tpsearch.collection.embedding as embedding

    for n in range(12):  # short and long files, interleaved in id order
        edit(docs / f"extra{n:02}.md", ("# T\n\n" + "word " * (5 + 60 * (n % 2))) + "\n")
    with pytest.raises(ModelLoadError):  # everything scanned and pending: one window below
        col.index([docs], encoder_factory=failing_to_load)
    encoder = HashingEncoder()
    calls = record_calls(encoder, monkeypatch)
    monkeypatch.setattr(embedding, "WINDOW_GROUPS", 8)
    col.index(encoder_factory=using(encoder), batch_size=1)  # groups of 8, a window of 64
    lengths = [n for call in calls for n in call]
    assert len(calls) > 1 and len(lengths) <= 64
    assert lengths == sorted(lengths, reverse=True)  # the longest first, group after group
    counts = col.store.counts()
    assert counts["pending"] == 0 and counts["embedded"] == len(lengths) == counts["chunks"]


def test_a_quick_scan_is_encoded_in_full_windows_not_file_by_file(
    col: Collection, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker waits (briefly) for the scan to fill a window instead of encoding the first
    file's chunks alone: one length-sorted group here, so batches of similar lengths."""
    for n in range(40):  # short and long files, interleaved
        edit(docs / f"extra{n:02}.md", ("# T\n\n" + "word " * (5 + 60 * (n % 2))) + "\n")
    encoder = HashingEncoder()
    calls = record_calls(encoder, monkeypatch)
    summary = col.index([docs], encoder_factory=using(encoder), batch_size=32)  # groups of 256
    chunks = col.store.counts()["chunks"]
    assert 40 < chunks <= 256 and summary.embedded == chunks
    assert len(calls) == 1, [len(call) for call in calls]  # not the first file's chunks alone
    assert calls[0] == sorted(calls[0], reverse=True)


def test_a_new_database_beside_an_old_vector_file_never_uses_its_vectors(tmp_path: Path) -> None:
    """Deleting tpsearch.db to start again leaves vectors-1.faiss behind; the new database
    numbers its chunks from 1 again, so the old file's ids would name new chunks and their
    old vectors would answer for them."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"old-{i}.md").write_text(f"old note {i} about gardening and roses\n")
    with Collection.locate(tmp_path, create=True) as first:
        first.index([docs], encoder_factory=hashing())
    for path in (tmp_path / ".tpsearch").glob("tpsearch.db*"):
        path.unlink()
    assert (tmp_path / ".tpsearch" / "vectors-1.faiss").exists()
    for path in docs.iterdir():
        path.unlink()
    texts = [f"new page {i} on {topic}" for i, topic in enumerate(["tax", "jazz", "chess"] * 2)]
    for i, text in enumerate(texts):
        (docs / f"new-{i}.md").write_text(text + "\n")
    encoder = HashingEncoder()
    with Collection.locate(tmp_path, create=True) as second:
        second.index([docs], encoder_factory=using(encoder))
        ids = chunk_ids(second)
        with second.store.snapshot():  # the FAISS side alone: it picks a query's candidates
            for i, vector in enumerate(encoder.encode(texts)):
                ((found, score),) = second.vectors.search(vector, 1, encoder.dim)
                assert (found, round(score, 4)) == (ids[i], 1.0)
