"""The client side of `tpsearch serve`, light enough for every `tpsearch query`: no torch, no
SQLite, no numpy; a Unix socket in the collection folder and one JSON line each way.

A server answers only a client of its own version with its own settings; otherwise it says why
(`refused`) and the client works in-process, as without a server.
"""

from __future__ import annotations

import json
import os
import socket
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
    if not path.exists() or len(os.fsencode(path)) >= 104:  # sun_path's limit (macOS: 104)
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = sock.makefile("rb").readline()
        except OSError:  # a socket left by a server that died, or one too slow to answer
            return None
    if not reply:
        return None  # the server stopped while answering
    answer: dict[str, Any] = json.loads(reply)
    return answer
