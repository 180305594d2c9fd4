"""What `tpsearch status` shows: a collection's counts, settings and sizes, and with `--check`
every invariant of its database."""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpsearch.collection.db_errors import DamagedDatabase, database_error
from tpsearch.collection.locking import WriterLock
from tpsearch.collection.schema import DB_NAME
from tpsearch.collection.vector_space import describe_space
from tpsearch.engine.encoder import fingerprint_of
from tpsearch.errors import CollectionError, WriterBusy

if TYPE_CHECKING:
    from tpsearch.collection.facade import Collection


@dataclass(frozen=True)
class CollectionStatus:
    folder: Path
    root: Path
    files: int
    chunks: int
    embedded: int
    pending: int
    skipped: dict[str, int]  # reason -> count
    model_id: str | None
    fingerprint: str | None  # of the vectors: encoder settings and chunker settings
    encoder: dict[str, Any]  # the encoder's settings, as it describes them
    chunker: dict[str, Any]
    sources: list[str]
    filters: dict[str, Any]  # the remembered --include, --exclude and --max-file-size
    bytes_on_disk: dict[str, int]  # database (with its WAL) and vector index
    vector_index: dict[str, Any] | None  # kind and size of the saved FAISS file
    space: dict[str, Any] | None  # the corrected space scores are read in (vector_space.py)
    last_run: dict[str, Any] | None
    last_change: dict[str, Any] | None  # the latest run that changed something
    problems: list[str] | None  # None: not checked
    unchecked: list[str] | None  # what --check could not check now, and why

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, as `tpsearch status --json` prints it (paths as strings)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Check:
    problems: list[str]  # broken invariants; empty when consistent
    unchecked: list[str]  # what could not be checked now, and why


def read_status(col: Collection, check: bool = False) -> CollectionStatus:
    """The collection's status; raises DamagedDatabase when the SQLite file is damaged, with
    what SQLite's quick check found."""
    try:
        return _status(col, check)
    except sqlite3.DatabaseError as error:
        found = database_error(error, col.store.path)
        if isinstance(found, DamagedDatabase):
            found = DamagedDatabase(f"{found} [{_integrity(col)}]")
        raise found from None


def _integrity(col: Collection) -> str:
    try:
        rows = col.store.db.execute("PRAGMA quick_check(5)").fetchall()
        found = "; ".join(str(row[0]) for row in rows)
        return "SQLite quick check: " + "; ".join(found.splitlines())
    except sqlite3.DatabaseError as error:
        return f"SQLite quick check: {error}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _status(col: Collection, check: bool) -> CollectionStatus:
    store = col.store
    with store.snapshot():
        skipped = store.skip_counts()
        encoder_fp, chunker = store.get_meta("fingerprint"), store.get_meta("chunker", {})
        vectors = col.vectors_path()
        status = CollectionStatus(
            folder=col.folder,
            root=col.root,
            skipped=skipped,
            model_id=store.get_meta("model_id"),
            fingerprint=fingerprint_of({"encoder": encoder_fp, "chunker": chunker})
            if encoder_fp
            else None,
            encoder=store.get_meta("encoder", {}),
            chunker=chunker,
            sources=store.get_meta("sources", []),
            filters=store.get_meta("scan", {}),
            bytes_on_disk={
                "database": _size(store.path) + _size(store.path.with_name(DB_NAME + "-wal")),
                "vectors": _size(vectors),
            },
            vector_index=store.get_meta("vector_index") if vectors.exists() else None,
            space=describe_space(store),
            last_run=store.last_run(),
            last_change=store.last_run(changed=True),
            problems=None,
            unchecked=None,
            **store.counts(),
        )
    if not check:
        return status
    checked = check_collection(col)  # outside the snapshot: it writes
    return dataclasses.replace(status, problems=checked.problems, unchecked=checked.unchecked)


def check_collection(col: Collection) -> Check:
    """Every invariant of the database (the FAISS file needs no check: a query compares it
    with SQLite by id, and searches exactly what it lacks or cannot read). Reads everything.

    FTS5 checks its index with an INSERT: that part runs outside any snapshot, under the
    writer lock, and is reported as not checked while another process writes.
    """
    with col.store.snapshot():
        problems = col.store.problems()
    unchecked = []
    try:
        with WriterLock(col.folder):
            full_text = col.store.full_text_problem()
        problems += [full_text] if full_text else []
    except WriterBusy:
        unchecked.append(
            "the full-text index: a writer is busy (run `tpsearch status --check` again "
            "when it has finished)"
        )
    except CollectionError as error:
        unchecked.append(f"the full-text index: {error}")
    except OSError as error:  # no lock file can be made: a read-only folder
        unchecked.append(f"the full-text index: {error.strerror or error}")
    return Check(problems, unchecked)
