"""The collection's SQLite database: files, chunks, vectors, settings and an FTS5 index.

SQLite is the source of truth. Each chunk's vector lives next to it (a float32 blob; no row:
pending), so the FAISS file is only a cache that can always be rebuilt. Every change to one
file (its row, its chunks, their full-text entries) is one transaction, so a crash at any
moment leaves either the old state of that file or the new one. The database is in WAL mode:
readers never wait for the writer. Any SQLite tool can open it.

Chunk ids come from AUTOINCREMENT, so an id is never reused: a FAISS id can only ever name the
chunk it was added for.
"""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from tpsearch.collection.db_errors import database_error, way_out
from tpsearch.collection.schema import (
    CHUNK_COLUMNS,
    READER_OPTIONAL,
    SCHEMA_STEPS,
    STAT_COLUMNS,
    ChunkRecord,
    ChunkRow,
    FileRow,
    SkipRow,
    migrations,
    signature,
)
from tpsearch.collection.sources import Signature
from tpsearch.errors import CollectionError, TpsearchWarning, WriterBusy

_BUSY, _LOCKED, _READONLY, _CANTOPEN = 5, 6, 8, 14  # SQLite's primary result codes


def _cause(error: sqlite3.DatabaseError) -> str:
    """'busy', 'read-only' or 'other': whether an error says the database was not checked."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    text = str(error).lower()
    if code is not None:
        code &= 0xFF  # extended codes carry the primary one in their low byte
    if code in (_BUSY, _LOCKED) or (code is None and "locked" in text):
        return "busy"
    if code in (_READONLY, _CANTOPEN) or (code is None and "readonly" in text):
        return "read-only"
    return "other"


def vector_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


# Chunks without a vector with ids in (?, ?]: what `pending` reads and `pending_count` counts.
_PENDING = (
    "FROM chunks c LEFT JOIN vectors v ON v.chunk_id = c.id"
    " WHERE v.chunk_id IS NULL AND c.id > ? AND c.id <= ?"
)


def _read_only_media(path: Path) -> Path | sqlite3.Connection:
    """A reader's connection to a database in a folder nobody here may write (a read-only
    mount, a shared folder): with no -wal file beside it, no writer is at work, and SQLite is
    told the file is immutable (else WAL mode needs to create a -shm file, and cannot)."""
    if os.access(path.parent, os.W_OK) or path.with_name(path.name + "-wal").exists():
        return path
    return sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True, check_same_thread=False)


_CHANGES = ("new", "updated", "removed", "embedded")  # IndexSummary fields: a run did work


class Store:
    """One connection to a collection's database."""

    def __init__(self, path: Path, write: bool = False) -> None:
        self.path = path
        self._counts: tuple[tuple[int, int], dict[str, int]] | None = None
        try:
            self.db = Database(_read_only_media(path) if not write else path, execute_plugins=False)
            self.db.execute("PRAGMA busy_timeout = 10000")
            self.db.execute("PRAGMA foreign_keys = ON")
            if write:  # WAL is a property of the file: readers find it set
                self.db.enable_wal()
            self.db.execute("PRAGMA synchronous = NORMAL")  # WAL: safe against crashes
        except sqlite3.DatabaseError as error:
            raise database_error(error, path) from None

    @classmethod
    def open(cls, path: Path, write: bool = False) -> Store:
        """Open (a writer also creates or upgrades) a collection database.

        A writer must hold the collection's writer lock when `needs_setup` says so: creating
        or upgrading the database is writing.
        """
        if not write and not path.exists():
            raise CollectionError(f"no collection database at {path}")
        store = cls(path, write)
        try:
            store._check_schema(write)
        except sqlite3.DatabaseError as error:
            store.close()
            raise database_error(error, path) from None
        except BaseException:
            store.close()
            raise
        return store

    @staticmethod
    def needs_setup(path: Path) -> bool:
        """Whether the database is missing or lacks schema steps (read only; when unsure, yes)."""
        if not path.exists():
            return True
        try:
            connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
            try:
                rows = connection.execute(
                    "SELECT name FROM _sqlite_migrations WHERE migration_set = 'tpsearch'"
                ).fetchall()
            finally:
                connection.close()
        except sqlite3.DatabaseError:
            return True
        return bool(set(SCHEMA_STEPS) - {name for (name,) in rows})

    def _check_schema(self, write: bool) -> None:
        applied = {m.name for m in migrations.applied(self.db)}
        newer = applied - set(SCHEMA_STEPS)
        missing = set(SCHEMA_STEPS) - applied
        if newer:
            raise CollectionError(
                f"{self.path} was written by a newer tpsearch (schema steps "
                f"{', '.join(sorted(newer))}): upgrade tpsearch to use it"
            )
        if missing and write:
            migrations.apply(self.db)  # each step in one transaction with its record
        elif missing - READER_OPTIONAL:
            state = "is being created" if not applied else "needs an upgrade"
            raise CollectionError(
                f"the collection at {self.path.parent} {state}: run `tpsearch index` to finish it"
            )

    def close(self) -> None:
        self.db.close()

    def wait_for_writers(self, bound_seconds: float = 60.0) -> None:
        """Before a run writes: take SQLite's write lock for a moment. When another process
        holds it (an open `sqlite3` shell, a backup), warn that the run waits, up to
        `bound_seconds`, then raise WriterBusy with the way out."""
        (timeout,) = self.db.execute("PRAGMA busy_timeout").fetchone()
        try:
            for wait_ms in (200, int(bound_seconds * 1000)):
                self.db.execute(f"PRAGMA busy_timeout = {wait_ms}")
                try:
                    self.db.execute("BEGIN IMMEDIATE")
                    self.db.execute("COMMIT")
                    return
                except sqlite3.OperationalError as error:
                    if _cause(error) != "busy":
                        raise
                if wait_ms == 200:
                    warnings.warn(
                        f"another process holds the write lock of {self.path} (an open "
                        f"`sqlite3` shell?): waiting up to {bound_seconds:g} s for it",
                        TpsearchWarning,
                        stacklevel=2,
                    )
            raise WriterBusy(
                f"another process has held the write lock of {self.path} for over "
                f"{bound_seconds:g} s: close it (an open `sqlite3` shell, a tool reading the "
                "database) and run the command again"
            )
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout)}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.db.atomic():
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every read inside sees one consistent state."""
        if self.db.conn.in_transaction:
            yield
            return
        self.db.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.db.conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, params).fetchall()

    # --- settings ----------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, ValueError) as error:  # edited by hand, or a damaged page
            raise CollectionError(
                f"the setting {key!r} in {self.path} is not valid JSON ({error}): delete it "
                f"(`sqlite3 {self.path} \"DELETE FROM meta WHERE key = '{key}'\"`) and run "
                "`tpsearch index`, or move the collection folder aside and index again"
            ) from None

    def set_meta(self, **values: Any) -> None:
        with self.db.atomic():
            for key, value in values.items():
                if value is None:
                    self.db.execute("DELETE FROM meta WHERE key = ?", [key])
                else:
                    self.db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        [key, json.dumps(value, sort_keys=True, default=str)],
                    )

    def set_meta_durably(self, **values: Any) -> None:
        """`set_meta`, committed with synchronous=FULL: on disk, with every earlier commit,
        before it returns (NORMAL leaves the last commits to the next checkpoint)."""
        self.db.execute("PRAGMA synchronous = FULL")
        try:
            self.set_meta(**values)
        finally:
            self.db.execute("PRAGMA synchronous = NORMAL")

    # --- files and chunks --------------------------------------------------------------------

    def file_ids(self) -> dict[str, int]:
        """Path -> id of every file."""
        return dict(self.db.execute("SELECT path, id FROM files").fetchall())

    def files(self) -> dict[str, FileRow]:
        stat = ", ".join(STAT_COLUMNS)
        rows = self.db.execute(f"SELECT id, path, sha256, {stat} FROM files")
        return {row[1]: FileRow(row[0], row[1], row[2], signature(row[3:])) for row in rows}

    def replace_file(self, file: dict[str, Any], chunks: Sequence[dict[str, Any]]) -> None:
        """Put a file and its chunks in place of any earlier version, in one transaction."""
        with self.db.atomic():
            self.db.execute("DELETE FROM files WHERE path = ?", [file["path"]])
            file_id = self.db.table("files").insert(file).last_pk
            self.db.conn.executemany(  # the hot path of a scan: plain executemany
                f"INSERT INTO chunks (file_id, {', '.join(CHUNK_COLUMNS)})"
                f" VALUES (?, {', '.join('?' * len(CHUNK_COLUMNS))})",
                [(file_id, *(chunk[c] for c in CHUNK_COLUMNS)) for chunk in chunks],
            )

    def touch_file(self, path: str, stat: Signature) -> None:
        """Same content, new stat: remember the stat so the next run need not hash again."""
        columns = ", ".join(f"{c} = ?" for c in STAT_COLUMNS)
        self.db.execute(f"UPDATE files SET {columns} WHERE path = ?", [*astuple(stat), path])

    def remove_files(self, paths: Iterable[str]) -> int:
        """Drop files with their chunks, vectors and full-text entries (one transaction)."""
        removed = 0
        with self.db.atomic():
            for path in paths:
                removed += self.db.execute("DELETE FROM files WHERE path = ?", [path]).rowcount
        return removed

    def mark_all_for_rechunk(self) -> None:
        self.db.execute("UPDATE files SET sha256 = ''")

    def replace_skips(self, under: Iterable[str], skips: Iterable[dict[str, Any]]) -> None:
        """This scan's skips in place of the earlier ones under the scanned paths."""
        with self.db.atomic():
            for prefix in under:
                if prefix == ".":
                    self.db.execute("DELETE FROM skipped WHERE path NOT LIKE '../%'")
                else:
                    self.db.execute(
                        "DELETE FROM skipped WHERE path = ? OR substr(path, 1, ?) = ?",
                        [prefix, len(prefix) + 1, prefix.rstrip("/") + "/"],
                    )
            self.db.table("skipped").insert_all(skips, replace=True)

    def skip_counts(self) -> dict[str, int]:
        """How many paths the last scans skipped, by reason."""
        rows = self.db.execute("SELECT reason, count(*) FROM skipped GROUP BY reason ORDER BY 1")
        return dict(rows.fetchall())

    def skipped(self) -> list[SkipRow]:
        stat = ", ".join(STAT_COLUMNS)
        rows = self.db.execute(f"SELECT path, reason, detail, {stat} FROM skipped ORDER BY path")
        return [SkipRow(row[0], row[1], row[2], signature(row[3:])) for row in rows]

    # --- vectors -----------------------------------------------------------------------------

    def pending(
        self, after: int, limit: int, upto: int | None = None
    ) -> list[tuple[int, str, str]]:
        """(id, heading, text) of chunks without a vector, in id order, ids in (after, upto]."""
        return self.query(
            f"SELECT c.id, c.heading, c.text {_PENDING} ORDER BY c.id LIMIT ?",
            [after, upto if upto is not None else 2**62, limit],
        )

    def pending_count(self, after: int, limit: int, upto: int | None = None) -> int:
        """How many chunks `pending` would give (reads no text)."""
        sql = f"SELECT count(*) FROM (SELECT 1 {_PENDING} LIMIT ?)"
        return int(self.query(sql, [after, upto if upto is not None else 2**62, limit])[0][0])

    def next_chunk_id(self) -> int:
        """A lower bound of the ids chunks inserted from now on will get (never reused)."""
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        return (row[0] if row else 0) + 1

    def add_vectors(self, ids: Sequence[int], vectors: np.ndarray) -> int:
        """Store vectors of chunks that still exist (one transaction); how many were stored."""
        with self.db.atomic():
            cursor = self.db.conn.executemany(
                "INSERT INTO vectors (chunk_id, vector)"
                " SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?1)",
                [(int(i), vector_blob(v)) for i, v in zip(ids, vectors, strict=True)],
            )
        return cursor.rowcount

    def clear_vectors(self) -> None:
        self.db.execute("DELETE FROM vectors")

    def vector_ids(self) -> np.ndarray:
        """Sorted ids of the chunks that have a vector (foreign keys keep them live)."""
        rows = self.db.conn.execute("SELECT chunk_id FROM vectors ORDER BY chunk_id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def without_vectors(self, ids: Sequence[int]) -> set[int]:
        """Those of `ids` that have no vector (pending)."""
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        sql = f"SELECT chunk_id FROM vectors WHERE chunk_id IN ({marks})"
        return set(ids) - {row[0] for row in self.db.conn.execute(sql, list(ids))}

    def vector_digest(self) -> list[int]:
        """[count, highest chunk id] of the stored vectors. Chunk ids are never reused, so two
        states with the same digest hold the same set of vectors (a vector added since has a
        higher id; one removed lowers the count unless another was added)."""
        row = self.db.conn.execute(
            "SELECT count(*), coalesce(max(chunk_id), 0) FROM vectors"
        ).fetchone()
        return [int(row[0]), int(row[1])]

    def has_vectors(self) -> bool:
        return bool(self.db.conn.execute("SELECT EXISTS (SELECT 1 FROM vectors)").fetchone()[0])

    def version(self) -> tuple[int, int]:
        """Changes whenever the database may have changed: commits of other connections
        (data_version) or writes of this one (total_changes)."""
        (data_version,) = self.db.conn.execute("PRAGMA data_version").fetchone()
        return data_version, self.db.conn.total_changes

    def vectors_for(self, ids: np.ndarray, dim: int) -> np.ndarray:
        """(len(ids), dim) float32 in the order of `ids` (an id given twice fills both rows)."""
        out = np.empty((len(ids), dim), dtype=np.float32)
        rows: dict[int, list[int]] = {}
        for row, i in enumerate(ids):
            rows.setdefault(int(i), []).append(row)
        wanted = list(rows)
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            marks = ",".join("?" * len(batch))
            sql = f"SELECT chunk_id, vector FROM vectors WHERE chunk_id IN ({marks})"
            for chunk_id, blob in self.db.conn.execute(sql, batch):
                out[rows[chunk_id]] = np.frombuffer(blob, dtype="<f4")
        return out

    def all_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live embedded chunk, streamed in id order."""
        ids = self.vector_ids()
        out = np.empty((len(ids), dim), dtype=np.float32)
        cursor = self.db.conn.execute("SELECT vector FROM vectors ORDER BY chunk_id")
        for row, (blob,) in enumerate(cursor):
            out[row] = np.frombuffer(blob, dtype="<f4")
        return ids, out

    # --- reading chunks ----------------------------------------------------------------------

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            "SELECT c.id, f.path, c.start_line, c.end_line, c.heading, c.text FROM chunks c"
            f" JOIN files f ON f.id = c.file_id WHERE c.id IN ({marks})",
            list(ids),
        )
        return {row[0]: ChunkRow(*row) for row in rows}

    def file_heads(self, paths: Sequence[str]) -> dict[str, tuple[str, str, str]]:
        """Per file: its format, its first chunk's text, and its first heading path (for a
        hit's title and snippet)."""
        rows = self.db.execute(
            "SELECT f.path, f.format, (SELECT text FROM chunks WHERE file_id = f.id ORDER BY seq"
            " LIMIT 1), (SELECT heading FROM chunks WHERE file_id = f.id AND heading != ''"
            " ORDER BY seq LIMIT 1) FROM files f WHERE f.path IN (SELECT value FROM json_each(?))",
            [json.dumps(list(paths))],
        )
        return {path: (fmt, text or "", heading or "") for path, fmt, text, heading in rows}

    def chunk_ids_of_files(self, file_ids: Sequence[int]) -> np.ndarray:
        """Ids of the chunks of these files, sorted."""
        rows = self.db.execute(
            "SELECT id FROM chunks WHERE file_id IN (SELECT value FROM json_each(?)) ORDER BY id",
            [json.dumps(list(file_ids))],
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def search_text(
        self, expression: str, limit: int, file_ids: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) of the chunks matching an FTS5 expression,
        best first; heading matches weigh double. Only chunks of `file_ids` when given."""
        sql = (
            "SELECT rowid, bm25(chunks_fts, 1.0, 2.0) AS r FROM chunks_fts WHERE chunks_fts MATCH ?"
        )
        params: list[Any] = [expression]
        if file_ids is not None:
            sql += (
                " AND rowid IN (SELECT id FROM chunks"
                " WHERE file_id IN (SELECT value FROM json_each(?)))"
            )
            params.append(json.dumps(list(file_ids)))
        rows = self.db.execute(sql + " ORDER BY r LIMIT ?", [*params, limit]).fetchall()
        return [(int(chunk_id), -float(bm25)) for chunk_id, bm25 in rows]

    def chunk_records(self) -> list[ChunkRecord]:
        """Every chunk with its file's facts, file by file, in document order."""
        rows = self.db.execute(
            "SELECT c.id, c.file_id, f.path, c.start_line, c.end_line, c.start_byte,"
            " c.end_byte, c.text, f.size, f.mtime_ns, f.sha256, f.encoding, f.indexed_at"
            " FROM chunks c JOIN files f ON f.id = c.file_id"
            " ORDER BY c.file_id, c.start_byte, c.end_byte"
        )
        return [ChunkRecord(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Files, chunks, embedded and pending chunks (cached until the database changes)."""
        version = self.version()
        if self._counts is None or self._counts[0] != version:
            (files,) = self.db.execute("SELECT count(*) FROM files").fetchone()
            (chunks,) = self.db.execute("SELECT count(*) FROM chunks").fetchone()
            (embedded,) = self.db.execute("SELECT count(*) FROM vectors").fetchone()
            counts = {"files": files, "chunks": chunks, "embedded": embedded}
            self._counts = version, {**counts, "pending": chunks - embedded}
        return dict(self._counts[1])

    # --- runs --------------------------------------------------------------------------------

    def start_run(self, started_at: str) -> int:
        """Record a run; runs still marked running were killed (the caller holds the lock)."""
        self.db.execute("UPDATE runs SET status = 'killed' WHERE status = 'running'")
        cursor = self.db.execute(
            "INSERT INTO runs (started_at, status) VALUES (?, 'running')", [started_at]
        )
        return int(cursor.lastrowid or 0)

    def finish_run(
        self, run_id: int, finished_at: str, status: str, summary: dict[str, Any]
    ) -> None:
        self.db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
            [finished_at, status, json.dumps(summary), run_id],
        )

    def last_run(self, changed: bool = False) -> dict[str, Any] | None:
        """The latest run; with `changed`, the latest that added, changed, removed or embedded
        something (a run that found nothing to do is no news)."""
        where = (
            "WHERE "
            + " + ".join(f"coalesce(json_extract(summary, '$.{n}'), 0)" for n in _CHANGES)
            + " > 0"
            if changed
            else ""
        )
        row = self.db.execute(
            f"SELECT started_at, finished_at, status, summary FROM runs {where} "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {
            "started_at": row[0],
            "finished_at": row[1],
            "status": row[2],
            "summary": json.loads(row[3]) if row[3] else None,
        }

    # --- checks ------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """What breaks the collection's invariants; empty when it is consistent."""
        found = []
        (integrity,) = self.db.execute("PRAGMA integrity_check").fetchone()
        if integrity != "ok":
            found.append(f"SQLite integrity check: {integrity} ({way_out(self.path)})")
        (orphans,) = self.db.execute(
            "SELECT count(*) FROM vectors WHERE chunk_id NOT IN (SELECT id FROM chunks)"
        ).fetchone()
        if orphans:
            found.append(f"{orphans} vectors belong to no chunk")
        (loose,) = self.db.execute(
            "SELECT count(*) FROM chunks WHERE file_id NOT IN (SELECT id FROM files)"
        ).fetchone()
        if loose:
            found.append(f"{loose} chunks belong to no file")
        dim = self.get_meta("dim")
        if dim is not None:
            (bad,) = self.db.execute(
                "SELECT count(*) FROM vectors WHERE length(vector) != ?", [4 * dim]
            ).fetchone()
            if bad:
                found.append(f"{bad} vectors are not {dim}-dimensional")
        return found

    def full_text_problem(self, wait_ms: int = 2000) -> str | None:
        """What is wrong with the full-text index (None: in step with the chunks).

        FTS5 checks with an INSERT, so this writes: call it outside any snapshot, holding the
        writer lock. Raises WriterBusy when another connection holds SQLite's write lock for
        longer than `wait_ms`.
        """
        (timeout,) = self.db.execute("PRAGMA busy_timeout").fetchone()
        self.db.execute(f"PRAGMA busy_timeout = {min(int(timeout), wait_ms)}")
        try:
            self.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
        except sqlite3.DatabaseError as error:
            cause = _cause(error)
            if cause == "busy":
                raise WriterBusy(f"another process is writing the database ({error})") from None
            if cause == "read-only":
                raise CollectionError(f"the database cannot be written here ({error})") from None
            return f"full-text index out of step with the chunks: {error}"
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout)}")
        return None
