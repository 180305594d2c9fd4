"""The SQLite database: migrations, one transaction per file, FTS and vectors kept in step."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tpsearch.collection.store import Store
from tpsearch.errors import CollectionError


def file_row(path: str, sha: str = "h") -> dict[str, object]:
    return {
        "path": path,
        "size": 1,
        "mtime_ns": 1,
        "sha256": sha,
        "encoding": "utf-8",
        "format": "text",
        "indexed_at": "now",
    }


def chunk_row(seq: int, text: str) -> dict[str, object]:
    return {
        "seq": seq,
        "start_line": 1,
        "end_line": 1,
        "start_byte": 0,
        "end_byte": len(text),
        "heading": "",
        "text": text,
        "tokens": 1,
    }


def matches(store: Store, word: str) -> list[int]:
    rows = store.query("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", [word])
    return [r[0] for r in rows]


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = Store.open(tmp_path / "tpsearch.db", write=True)
    yield opened
    opened.close()


def test_any_sqlite_tool_can_read_the_database(store: Store) -> None:
    store.replace_file(file_row("a.md"), [chunk_row(0, "hello world")])
    plain = sqlite3.connect(store.path)
    tables = {r[0] for r in plain.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"files", "chunks", "vectors", "meta", "chunks_fts", "_sqlite_migrations"} <= tables
    assert plain.execute("SELECT text FROM chunks").fetchall() == [("hello world",)]
    assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_newer_schema_is_refused_not_damaged(tmp_path: Path, store: Store) -> None:
    store.db.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('tpsearch', 'm999_from_the_future', 'later')"
    )
    with pytest.raises(CollectionError, match="newer tpsearch"):
        Store.open(store.path, write=True)


def test_readers_never_create_a_database(tmp_path: Path) -> None:
    with pytest.raises(CollectionError, match="no collection database"):
        Store.open(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_replacing_a_file_replaces_its_chunks_text_index_and_vectors(store: Store) -> None:
    store.replace_file(file_row("a.md"), [chunk_row(0, "hello world")])
    (first,) = matches(store, "hello")
    store.add_vectors([first], np.ones((1, 4), dtype=np.float32))
    store.replace_file(file_row("a.md", "h2"), [chunk_row(0, "goodbye world")])
    assert matches(store, "hello") == []
    (second,) = matches(store, "goodbye")
    assert second > first  # ids are never reused: an old FAISS id cannot name a new chunk
    assert store.counts() == {"files": 1, "chunks": 1, "embedded": 0, "pending": 1}
    assert store.problems() == []


def test_removing_files_removes_everything_of_theirs(store: Store) -> None:
    store.replace_file(file_row("a.md"), [chunk_row(0, "alpha"), chunk_row(1, "beta")])
    store.replace_file(file_row("b.md"), [chunk_row(0, "gamma")])
    ids = [r[0] for r in store.query("SELECT id FROM chunks ORDER BY id")]
    store.add_vectors(ids, np.eye(3, 4, dtype=np.float32))
    assert store.remove_files(["a.md"]) == 1
    assert matches(store, "alpha") == [] and matches(store, "gamma") == [ids[2]]
    assert store.vector_ids().tolist() == [ids[2]]
    np.testing.assert_array_equal(store.vectors_for(np.array([ids[2]]), 4), np.eye(3, 4)[2:])
    assert store.problems() == []


def test_vectors_come_back_in_the_order_asked_an_id_asked_twice_in_both_rows(
    store: Store,
) -> None:
    store.replace_file(file_row("a.md"), [chunk_row(i, f"text {i}") for i in range(3)])
    ids = [r[0] for r in store.query("SELECT id FROM chunks ORDER BY id")]
    store.add_vectors(ids, np.eye(3, 4, dtype=np.float32))
    asked = np.array([ids[2], ids[0], ids[2]])
    np.testing.assert_array_equal(store.vectors_for(asked, 4), np.eye(3, 4)[[2, 0, 2]])


def test_a_failed_file_transaction_leaves_the_old_version(store: Store) -> None:
    store.replace_file(file_row("a.md"), [chunk_row(0, "original")])
    with pytest.raises(sqlite3.IntegrityError):  # two chunks with one seq: the insert fails
        store.replace_file(file_row("a.md", "h2"), [chunk_row(0, "new"), chunk_row(0, "new")])
    assert [r[0] for r in store.query("SELECT text FROM chunks")] == ["original"]
    assert matches(store, "original") and store.problems() == []


def test_problems_names_broken_invariants(store: Store) -> None:
    store.replace_file(file_row("a.md"), [chunk_row(0, "hello")])
    raw = sqlite3.connect(store.path)  # foreign keys off, as in a careless manual edit
    raw.execute("INSERT INTO vectors (chunk_id, vector) VALUES (999, x'00000000')")
    raw.commit()
    assert store.problems() == ["1 vectors belong to no chunk"]
