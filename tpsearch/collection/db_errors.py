"""What a failing SQLite call means for the person running tpsearch, in one line.

SQLite reports a full disk, a damaged file, another process's write lock or a read-only
folder as `sqlite3.DatabaseError`s; `database_error` turns each into a `CollectionError` whose
message says what happened and the way out. The CLI's error boundary applies it to any such
error that reaches it, so no command shows a traceback for them.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from tpsearch.errors import CollectionError, WriterBusy

# SQLite's primary result codes (https://sqlite.org/rescode.html)
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26
DISK_FULL_CODES = (errno.ENOSPC, errno.EDQUOT)


class DamagedDatabase(CollectionError):
    """The collection's SQLite file is damaged (a page overwritten, a file cut short)."""


def way_out(path: Path | None) -> str:
    where = path.parent if path is not None else ".tpsearch"
    db = path if path is not None else ".tpsearch/tpsearch.db"
    return (
        f"your files are untouched: move {where} aside and run `tpsearch index` to rebuild the "
        f"collection, or salvage it with `sqlite3 {db} .recover | sqlite3 recovered.db`"
    )


def primary_code(error: sqlite3.DatabaseError) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF if code is not None else None  # extended codes: the low byte


def database_error(error: sqlite3.DatabaseError, path: Path | None = None) -> CollectionError:
    """The CollectionError to raise for `error` from the database at `path` (if known)."""
    code, text = primary_code(error), str(error)
    name = str(path) if path is not None else "the collection database"
    if code == _FULL or "disk is full" in text:
        return CollectionError(
            f"the disk is full: SQLite cannot write {name} ({text}); the work committed so far "
            "is kept: free some space and run the command again"
        )
    if code in (_CORRUPT, _NOTADB) or "malformed" in text:
        return DamagedDatabase(f"{name} is damaged ({text}): {way_out(path)}")
    if code in (_BUSY, _LOCKED) or "locked" in text:
        return WriterBusy(
            f"another process holds the write lock of {name} ({text}): close it (an open "
            "`sqlite3` shell, a tool that reads the database) and run the command again"
        )
    if code in (_READONLY, _CANTOPEN) or "readonly" in text:
        return CollectionError(
            f"cannot write {name} ({text}): give yourself write access to its folder, or pass "
            "--index DIR to use a collection in a folder you may write"
        )
    if code == _IOERR:
        return CollectionError(f"SQLite cannot read or write {name} ({text}): is the disk ok?")
    return CollectionError(f"the collection database failed: {text} ({name})")


def os_error(error: OSError) -> CollectionError | None:
    """A CollectionError for an OSError a user can fix (a full disk, no permission), else None."""
    where = f" ({error.filename})" if error.filename else ""
    if error.errno in DISK_FULL_CODES:
        return CollectionError(
            f"the disk is full{where}: the work committed so far is kept; free some space and "
            "run the command again"
        )
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CollectionError(
            f"{error.strerror}{where}: give yourself write access, or choose another folder"
        )
    return None
