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
