"""`tpsearch serve`: one collection kept warm behind a Unix socket in its `.tpsearch/` folder.

The socket is the owner's only (mode 0600, made under umask 0177). One request per connection,
one JSON line each way, answered one at a time by the thread that owns the open collection.
The server stops after `idle` seconds without a request, on SIGTERM, or on a `stop` request.
Requests from another tpsearch version or with other model options are refused, with the reason:
the client then works in-process. Nothing is cached beyond what `Collection` keeps, which follows
every index run (see `service.py`), so a warm query never answers from a stale index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import time
from typing import Any

from tpsearch import __version__
from tpsearch.errors import CollectionError, ModelLoadError, TpsearchError
from tpsearch.server.client import ask, jsonable, socket_path
from tpsearch.server.service import Service


def warm_up(service: Service) -> str | None:
    """Load the encoder the collection's vectors need now; None, or why it did not load."""
    collection = service.collection
    if collection.stored_settings() is None:
        return "no vectors yet: the model loads on the first semantic query"
    try:
        settings = collection.wanted_settings(service.overrides, reembed=False)
        collection.encoder(settings, service.encoders)
    except (ModelLoadError, CollectionError) as error:
        return str(error)
    return None


def handle(service: Service, request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The answer to one request, and whether to stop after it."""
    op = request.get("op")
    if op == "ping":
        return {**service.describe(), "overrides": jsonable(service.overrides)}, False
    if op == "stop":
        return {"stopped": os.getpid()}, True
    if request.get("version") != __version__:
        why = f"it runs tpsearch {__version__}, this is {request.get('version')}"
        return {"refused": why}, False
    if request.get("overrides") != jsonable(service.overrides):
        return {"refused": "it was started with other model options (e.g. --device)"}, False
    if op != "query":
        return {"error": f"unknown request {op!r}", "exit_code": 2}, False
    try:
        service.calls += 1
        args = request.get("args", {})
        result = service.collection.query(
            str(args["text"]),
            k=int(args.get("k", 10)),
            mode=str(args.get("mode", "hybrid")),
            path=args.get("path"),
            min_score=args.get("min_score"),
            files=bool(args.get("files")),
            context=None if args.get("context") is None else int(args["context"]),
            overrides=service.overrides,
            encoder_factory=service.encoders,
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:  # "k": Infinity
        return {"error": f"a malformed request: {error}", "exit_code": 2}, False
    except TpsearchError as error:
        return {"error": str(error), "exit_code": error.exit_code}, False
    return {
        "used": result.used,
        "mode": result.mode,
        "hits": [dataclasses.asdict(hit) for hit in result.hits],
        "notices": result.notices,
        "pid": os.getpid(),
    }, False


def serve_socket(service: Service, idle: float) -> None:
    """Listen until idle for `idle` seconds, SIGTERM, or a stop request."""
    path = socket_path(service.folder)
    if len(os.fsencode(path)) >= 104:
        raise CollectionError(f"the path {path} is too long for a Unix socket: move the collection")
    if ask(service.folder, {"op": "ping"}, timeout=5) is not None:
        raise CollectionError(f"a server already runs for {service.folder}: tpsearch serve --stop")
    path.unlink(missing_ok=True)  # left by a server that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)
    try:
        listener.bind(os.fspath(path))
    finally:
        os.umask(mask)
    os.chmod(path, 0o600)
    inode = path.stat().st_ino
    signal.signal(signal.SIGTERM, _exit)
    try:
        listener.listen(16)
        warm_up(service)
        last = time.monotonic()
        while True:
            listener.settimeout(max(0.1, min(5.0, idle - (time.monotonic() - last))))
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                if time.monotonic() - last >= idle:
                    return
                continue
            last = time.monotonic()
            if _answer(service, connection):
                return
    finally:
        listener.close()
        try:
            if path.stat().st_ino == inode:  # still ours
                path.unlink()
        except OSError:
            pass
        service.close()


MAX_REQUEST_BYTES = 1 << 20  # a query is a line of JSON: a megabyte is plenty


def _exit(*_: object) -> None:
    raise SystemExit(0)  # runs the clean-up: the socket goes


def _answer(service: Service, connection: socket.socket) -> bool:
    with connection:
        connection.settimeout(30)
        try:
            line = connection.makefile("rb").readline(MAX_REQUEST_BYTES)
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, RecursionError):
            return False  # a client that went away or sent garbage: the next one counts
        answer, stop = handle(service, request)
        with contextlib.suppress(OSError):
            connection.sendall(json.dumps(answer).encode() + b"\n")
        return stop
