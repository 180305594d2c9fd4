"""The client side of `tpsearch serve`, light enough for every `tpsearch query`: no torch, no
SQLite, no numpy; a Unix socket in the collection folder and one JSON line each way.

A server answers only a client of its own version with its own settings; otherwise it says why
(`refused`) and the client works in-process, as without a server.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

SOCKET_NAME = "serve.sock"
LOG_NAME = "serve.log"
INDEX_DIR_NAME = ".tpsearch"  # as tpsearch.collection names it (not imported: it loads SQLite)


def socket_path(folder: Path) -> Path:
    return folder / SOCKET_NAME


def find_folder(cwd: Path, explicit: Path | None) -> Path | None:
    """The collection folder as `Collection.locate` finds it, or None."""
    if explicit is not None:
        return Path(os.path.abspath(cwd / explicit))
    for folder in (cwd, *cwd.parents):
        if (folder / INDEX_DIR_NAME).is_dir():
            return Path(os.path.abspath(folder / INDEX_DIR_NAME))
    return None


def jsonable(overrides: dict[str, Any]) -> dict[str, Any]:
    """Options as they travel: paths as strings, so that both sides compare them alike."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in sorted(overrides.items())}


def ask(
    folder: Path, request: dict[str, Any], timeout: float | None = None
) -> dict[str, Any] | None:
    """The server's answer to one request, or None when no server listens for `folder`."""
    path = socket_path(folder)
    if not _own_socket(path) or len(os.fsencode(path)) >= 104:  # sun_path's limit (macOS: 104)
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
            if not _peer_is_us(sock):
                return None
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = sock.makefile("rb").readline(MAX_REPLY_BYTES)
        except OSError:  # a socket left by a server that died, or one too slow to answer
            return None
    try:
        answer = json.loads(reply) if reply else None
    except (ValueError, RecursionError):
        return None  # not a tpsearch server: answer in-process
    return answer if isinstance(answer, dict) else None


MAX_REPLY_BYTES = 64 << 20


def _own_socket(path: Path) -> bool:
    """A socket file (not a link to one elsewhere) that belongs to this user: a `.tpsearch/`
    folder copied from someone else could hold a link to a socket another user listens on."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid()


def _peer_is_us(sock: socket.socket) -> bool:
    """The process at the other end runs as this user (Linux tells: SO_PEERCRED)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True  # elsewhere the socket file's owner (checked above) has to do
    credentials = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return bool(uid == os.getuid())
