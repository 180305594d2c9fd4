"""One writer at a time: an OS lock on a file in the collection folder.

The lock is `flock` (POSIX) or `msvcrt.locking` (Windows) on `write.lock`, held by an open file
descriptor: the operating system releases it when the owner exits, however it exits (kill -9
included), so a dead owner never blocks the next run and there is no stale-lock clean-up.
The file also holds the owner's pid, host and start time, for the message a second writer gets.
Readers never take it: SQLite's WAL mode lets them read while the writer writes.
A writer that would rather wait than fail (`tpsearch index` while `tpsearch watch` writes a
batch) passes `on_busy`: it is told once who holds the lock, then polls until it is free.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from tpsearch.errors import CollectionError, WriterBusy

LOCK_NAME = "write.lock"
_INFO_OFFSET = 16  # owner info lives after the locked byte range (Windows locks bytes)
POLL_SECONDS = 0.05  # how often a waiting writer tries again


class WriterLock:
    """`with WriterLock(folder):` holds the collection's write lock, or raises WriterBusy.

    With `on_busy`, a busy lock is waited for instead: `on_busy` gets the owner's description
    (pid, host, since) once, then the lock is tried every POLL_SECONDS until it is free.
    """

    def __init__(self, folder: Path, on_busy: Callable[[str], None] | None = None) -> None:
        self.path = folder / LOCK_NAME
        self.on_busy = on_busy
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise CollectionError(
                f"cannot write to the collection folder {self.path.parent} "
                f"({error.strerror or error}): give yourself write access to it, or pass "
                "--index DIR to index into a folder you may write; queries keep working"
            ) from None
        told = False
        while True:
            try:
                _lock(fd)
                break
            except OSError:
                owner = _read_owner(fd)
            if self.on_busy is None:
                os.close(fd)
                raise WriterBusy(
                    f"another tpsearch process is writing this collection ({owner}): wait for "
                    "it to finish; queries keep working meanwhile"
                ) from None
            try:
                if not told:
                    self.on_busy(owner)
                    told = True
                time.sleep(POLL_SECONDS)
            except BaseException:  # Ctrl-C while waiting: nothing held, nothing to undo
                os.close(fd)
                raise
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
