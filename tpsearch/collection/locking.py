"""One writer at a time: an OS lock on a file in the collection folder.

The lock is `flock` (POSIX) or `msvcrt.locking` (Windows) on `write.lock`, held by an open file
descriptor: the operating system releases it when the owner exits, however it exits (kill -9
included), so a dead owner never blocks the next run and there is no stale-lock clean-up.
The file also holds the owner's pid, host and start time, for the message a second writer gets.
Readers never take it: SQLite's WAL mode lets them read while the writer writes.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from tpsearch.errors import WriterBusy

LOCK_NAME = "write.lock"
_INFO_OFFSET = 16  # owner info lives after the locked byte range (Windows locks bytes)


class WriterLock:
    """`with WriterLock(folder):` holds the collection's write lock, or raises WriterBusy."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            owner = _read_owner(fd)
            os.close(fd)
            raise WriterBusy(
                f"another tpsearch process is writing this collection ({owner}): wait for it "
                "to finish; queries keep working meanwhile"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, _INFO_OFFSET)
        os.lseek(fd, _INFO_OFFSET, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, _INFO_OFFSET)
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_owner(fd: int) -> str:
    try:
        os.lseek(fd, _INFO_OFFSET, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096) or b"{}")
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
