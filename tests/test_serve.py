"""`tpsearch serve`: a real background server that `tpsearch query` uses by itself."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.corpus import edit
from tpsearch.collection import Collection
from tpsearch.server.client import ask

# `tpsearch query` run in a fresh process, reporting whether it imported torch.
QUERY = (
    "import sys\n"
    "from typer.testing import CliRunner\n"
    "from tpsearch.cli import app\n"
    "result = CliRunner().invoke(app, ['query', *sys.argv[1:], '--json'])\n"
    "print(result.exit_code, 'torch' in sys.modules)\n"
    "print(result.stdout)\n"
    "sys.stderr.write(result.stderr)\n"
)


@pytest.fixture
def tpsearch(tiny_collection: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    root = tiny_collection.parent

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tpsearch", *args]
        return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)

    yield run
    run("serve", "--stop")  # never leave a server behind


def query(root: Path, *args: str) -> tuple[int, bool, list[dict[str, object]], str]:
    """(exit code, torch imported, hits, stderr) of `tpsearch query ARGS --json`."""
    out = subprocess.run(
        [sys.executable, "-c", QUERY, *args], cwd=root, capture_output=True, text=True, timeout=300
    )
    first, _, rest = out.stdout.partition("\n")
    code, torch = first.split()
    return int(code), torch == "True", json.loads(rest) if rest.strip() else [], out.stderr


def server_of(folder: Path) -> dict[str, Any] | None:
    """What `tpsearch status` shows of the server (it asks the same way)."""
    return ask(folder, {"op": "ping"}, timeout=30)


def test_query_uses_the_warm_server_and_never_a_stale_index(
    tiny_collection: Path,
    tpsearch: Callable[..., subprocess.CompletedProcess[str]],
    tiny_model: Callable[[str], Path],
) -> None:
    root = tiny_collection.parent
    assert server_of(tiny_collection) is None
    started = tpsearch("serve", "--idle", "5")
    assert started.returncode == 0 and "model loaded" in started.stdout, started.stderr
    mode = stat.S_IMODE(os.stat(tiny_collection / "serve.sock").st_mode)
    assert mode == 0o600  # the owner's only

    code, torch, hits, _ = query(root, "refused connections firewall")
    assert code == 0 and hits[0]["path"] == "docs/guide.md"
    assert not torch  # the server embedded the query
    server = server_of(tiny_collection)
    assert server is not None and server["calls"] == 1 and server["encoder_loaded"]

    guide = root / "docs" / "guide.md"
    edit(guide, guide.read_text() + "\n## Airships\n\nThe zeppelin docks at the mast.\n")
    with Collection.locate(root) as col:  # an index run while the server runs
        assert col.index().updated == 1
    code, torch, hits, _ = query(root, "zeppelin mast")
    assert code == 0 and not torch and hits[0]["path"] == "docs/guide.md"
    assert "zeppelin" in str(hits[0]["snippet"])

    code, torch, hits, _ = query(root, "zeppelin mast", "--no-server", "--mode", "lexical")
    assert code == 0 and hits[0]["path"] == "docs/guide.md"
    code, _, _, err = query(root, "zeppelin", "--device", "cpu")  # other options than the server's
    assert code == 0 and "running server was not used" in err
    assert server_of(tiny_collection)["calls"] == 2  # type: ignore[index]
    status = tpsearch("status")
    assert "tpsearch serve, pid" in status.stdout and "2 queries answered" in status.stdout

    stopped = tpsearch("serve", "--stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert server_of(tiny_collection) is None and not (tiny_collection / "serve.sock").exists()


def test_the_server_stops_when_idle(tmp_path: Path) -> None:
    Collection.open(tmp_path / ".tpsearch", write=True).close()  # empty: nothing to load
    command = [sys.executable, "-m", "tpsearch", "serve", "--foreground", "--idle", "0.02"]
    server = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert server.returncode == 0, server.stderr  # stopped by itself after 1.2 s
    assert not (tmp_path / ".tpsearch" / "serve.sock").exists()


def _served(root: Path, indexed_by: Callable[[], Any], served_by: Callable[[], Any]) -> Any:
    """A corpus under `root` indexed with one encoder, and a warm `Service` (as `tpsearch
    serve` runs) whose encoder factory makes another."""
    from tests.corpus import write_corpus
    from tpsearch.server.service import Service

    write_corpus(root)
    with Collection.locate(root, create=True) as col:
        col.index([root], encoder_factory=lambda s: indexed_by())
        folder = col.folder
    return Service(folder, {}, kind="serve", encoder_factory=lambda s: served_by())


def _warm_query(service: Any, mode: str = "hybrid") -> dict[str, Any]:
    from tpsearch import __version__
    from tpsearch.server.warm import handle

    request = {"op": "query", "version": __version__, "overrides": {}}
    answer, _ = handle(service, {**request, "args": {"text": "install", "k": 2, "mode": mode}})
    return answer


def test_the_server_takes_a_collection_an_older_version_fingerprinted_differently(
    tmp_path: Path,
) -> None:
    """An older tpsearch named a local model's vectors without the weights' hash; the encoder
    still lists that name (`former_fingerprints`), and the server must pass it on."""
    from tests.fakes import HashingEncoder
    from tpsearch.engine.encoder import fingerprint_of

    class Old(HashingEncoder):
        @property
        def settings(self) -> dict[str, object]:
            return {**super().settings, "revision": None}

    class New(HashingEncoder):
        @property
        def settings(self) -> dict[str, object]:
            return {**super().settings, "revision": "sha256:abc"}

        @property
        def former_fingerprints(self) -> tuple[str, ...]:
            return (fingerprint_of({**super().settings, "revision": None}),)

    root = tmp_path / "root"
    service = _served(root, Old, New)
    try:
        answer = _warm_query(service, "semantic")
        assert answer.get("error") is None and answer["used"] == "semantic" and answer["hits"]
        (root / "new.md").write_text("# New\n\nfresh words here\n", encoding="utf-8")
        assert service.reindex()["embedded"] == 1  # the MCP reindex accepts it too
    finally:
        service.close()


def test_weights_changed_in_place_then_reembedded_are_loaded_again_by_the_server(
    tmp_path: Path,
) -> None:
    from tests.fakes import HashingEncoder

    weights = tmp_path / "weights"
    weights.write_text("v1", encoding="utf-8")

    class Local(HashingEncoder):  # its fingerprint follows the weights on disk, as a folder's
        def __init__(self) -> None:
            super().__init__()
            self.revision = weights.read_text(encoding="utf-8")

        @property
        def settings(self) -> dict[str, object]:
            return {**super().settings, "revision": self.revision}

    service = _served(tmp_path / "root", Local, Local)
    folder = service.folder
    try:
        assert _warm_query(service).get("error") is None
        weights.write_text("v2", encoding="utf-8")  # replaced in place, then re-embedded
        with Collection.open(folder, write=True) as col:
            col.index(encoder_factory=lambda s: Local(), reembed=True)
        answer = _warm_query(service)
        assert answer.get("error") is None, answer["error"]
        assert answer["used"] == "hybrid" and answer["hits"]
    finally:
        service.close()


def _listen(path: Path, reply: bytes) -> tuple[Any, Any]:
    """A Unix socket at `path` that answers every client with `reply` (and records it)."""
    import socket
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen(4)
    heard: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                heard.append(connection.makefile("rb").readline())
                connection.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return listener, heard


def test_a_socket_that_is_not_our_server_is_never_asked(tmp_path: Path) -> None:
    """A shared `.tpsearch/` may hold a link to a socket someone else listens on, or a socket
    that answers garbage: the query is not sent there, and nothing breaks."""
    folder = tmp_path / ".tpsearch"
    folder.mkdir()
    elsewhere = tmp_path / "rogue.sock"
    listener, heard = _listen(elsewhere, b'{"used": "lexical", "hits": []}\n')
    try:
        (folder / "serve.sock").symlink_to(elsewhere)
        assert ask(folder, {"op": "query", "text": "my private words"}, timeout=5) is None
        assert heard == []  # the link was not followed
    finally:
        listener.close()
    (folder / "serve.sock").unlink()
    listener, heard = _listen(folder / "serve.sock", b"HTTP/1.1 400 Bad Request\r\n")
    try:
        assert ask(folder, {"op": "ping"}, timeout=5) is None  # not JSON: no server
    finally:
        listener.close()


def test_malformed_requests_get_an_error_and_the_server_goes_on(tmp_path: Path) -> None:
    import socket

    from tests.fakes import HashingEncoder
    from tpsearch import __version__
    from tpsearch.server.warm import _answer

    service = _served(tmp_path / "root", HashingEncoder, HashingEncoder)
    request = {"op": "query", "version": __version__, "overrides": {}}
    lines = [
        json.dumps({**request, "args": {"text": "install", "k": float("inf")}}).encode(),
        b"[" * 100_000,
    ]
    try:
        for line in lines:
            ours, theirs = socket.socketpair()
            with theirs:
                theirs.sendall(line + b"\n")
                assert _answer(service, ours) is False  # no crash, no stop
                reply = theirs.makefile("rb").readline()
            assert reply == b"" or b"malformed" in reply
        assert _warm_query(service).get("hits")  # and it still answers
    finally:
        service.close()
