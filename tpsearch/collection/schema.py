"""The collection's database schema, under sqlite-utils migrations, and the rows read from it.

Each migration is one step that runs once per database, in order; `Store` (store.py) applies
them under the writer lock and reads and writes the tables. The schema is plain SQL so that any
SQLite tool can open a collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from tpsearch.collection.sources import Signature

DB_NAME = "tpsearch.db"
migrations = Migrations("tpsearch")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- JSON values
        CREATE TABLE files (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL UNIQUE,  -- relative to the collection root, '/'-separated
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,  -- 0: too fresh to trust, the next run compares hashes
            sha256 TEXT NOT NULL,  -- '': re-chunk on the next run whatever the content
            encoding TEXT NOT NULL,
            format TEXT NOT NULL,
            indexed_at TEXT NOT NULL
        );
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the FAISS id
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            start_byte INTEGER NOT NULL,
            end_byte INTEGER NOT NULL,
            heading TEXT NOT NULL,
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            UNIQUE (file_id, seq)
        );
        CREATE TABLE vectors (  -- no row for a chunk: its vector is pending
            chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            vector BLOB NOT NULL  -- little-endian float32, meta 'dim' values
        );
        -- Redundant with the primary key, but small: counting and listing ids reads this
        -- instead of every page of vectors.
        CREATE INDEX vectors_ids ON vectors (chunk_id);
        CREATE TABLE skipped (  -- what the last scan of each path left out
            path TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            size INTEGER,  -- with mtime_ns: a file whose content was rejected is not re-read
            mtime_ns INTEGER  -- until it changes
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,  -- running, completed, failed, interrupted, killed
            summary TEXT  -- JSON
        );
        """
    )
    # BM25 over chunk text and heading path; triggers keep it in step inside each transaction.
    db.table("chunks").enable_fts(
        ["text", "heading"], create_triggers=True, tokenize="porter unicode61 remove_diacritics 2"
    )


@migrations()
def m002_stat_signature(db: Database) -> None:
    """ctime, inode and device next to size and mtime (see `sources.Signature`). Rows written
    before have NULLs there, so their files are read and hashed once more (not re-chunked)."""
    for table in ("files", "skipped"):
        for column in ("ctime_ns", "inode", "device"):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER")


SCHEMA_STEPS = (m001_initial.__name__, m002_stat_signature.__name__)  # oldest first
# Steps that readers (query, status, dedupe, cluster) do without: a collection an older version
# wrote can be searched before the next `tpsearch index` upgrades it.
READER_OPTIONAL = frozenset({m002_stat_signature.__name__})
CHUNK_COLUMNS = (
    "seq",
    "start_line",
    "end_line",
    "start_byte",
    "end_byte",
    "heading",
    "text",
    "tokens",
)


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    sha256: str
    stat: Signature | None  # None: written by a version that did not record all of it


@dataclass(frozen=True)
class SkipRow:
    path: str
    reason: str
    detail: str
    stat: Signature | None  # of a file rejected for its content


def signature(values: Sequence[int | None]) -> Signature | None:
    if any(value is None for value in values):
        return None
    return Signature(*cast(Sequence[int], values))


STAT_COLUMNS = ("size", "mtime_ns", "ctime_ns", "inode", "device")


@dataclass(frozen=True)
class ChunkRow:
    id: int
    path: str
    start_line: int
    end_line: int
    heading: str
    text: str


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk with the facts of its file, as dedupe and cluster read them."""

    chunk_id: int
    file_id: int
    path: str
    start_line: int
    end_line: int
    start_byte: int
    end_byte: int
    text: str
    file_size: int
    mtime_ns: int  # 0: modified while it was scanned (too fresh to trust)
    sha256: str  # of the file's bytes; '' when marked for re-chunking
    encoding: str  # the codec that gives back the file's bytes (no byte-order mark)
    indexed_at: str
