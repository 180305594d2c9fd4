"""`tpsearch mcp` as a real subprocess, driven by the MCP SDK's own clients."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.corpus import edit


def params(folder: Path, *extra: str) -> StdioServerParameters:
    command = [sys.executable, "-m", "tpsearch", "mcp", "--index", str(folder), *extra]
    return StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))


async def call(session: ClientSession, tool: str, **arguments: Any) -> tuple[bool, Any]:
    """(is_error, structured result or the error text)."""
    result = await session.call_tool(tool, arguments)
    if result.isError:
        return True, result.content[0].text  # type: ignore[union-attr]
    return False, result.structuredContent


def test_mcp_tools_over_stdio(tiny_collection: Path, tmp_path: Path) -> None:
    async def session_run() -> None:
        async with stdio_client(params(tiny_collection)) as streams, ClientSession(*streams) as s:
            await s.initialize()
            tools = {tool.name: tool for tool in (await s.list_tools()).tools}
            assert set(tools) == {"search", "get", "similar", "status", "reindex"}
            assert set(tools["search"].inputSchema["properties"]) >= {"query", "k", "mode", "path"}
            assert tools["search"].description and "get" in tools["search"].description

            error, found = await call(s, "search", query="firewall port", mode="lexical")
            assert not error and found["used"] == "lexical"
            (first, *_) = found["hits"]
            assert first["path"] == "docs/guide.md" and "firewall" in first["snippet"]
            assert {"start_line", "end_line", "heading", "score", "chunk_id"} <= set(first)
            _, status = await call(s, "status")
            assert status["chunks"] > 0 and status["server"]["encoder_loaded"] is False

            error, found = await call(s, "search", query="refused connections", mode="semantic")
            assert not error and found["used"] == "semantic" and found["hits"]
            _, status = await call(s, "status")
            assert status["server"]["encoder_loaded"] is True  # loaded once, and kept

            error, part = await call(s, "get", path="docs/guide.md", start_line=3, end_line=5)
            lines = (tiny_collection.parent / "docs" / "guide.md").read_text().splitlines()
            assert not error and part["text"].splitlines() == lines[2:5]
            assert part["total_lines"] == len(lines)

            chunk = first["chunk_id"]
            error, near = await call(s, "similar", chunk_id=chunk, k=3)
            assert not error and near["hits"] and chunk not in {h["chunk_id"] for h in near["hits"]}

            escapes = [
                str(tmp_path / "secret.txt"),  # an absolute path elsewhere
                "../secret.txt",  # up and out
                "docs/../../secret.txt",  # in, then out
                "docs/escape.md",  # a symlink pointing out
                "docs/.draft.md",  # inside, but not indexed
                "/etc/passwd",
            ]
            for path in escapes:
                error, message = await call(s, "get", path=path)
                assert error and message.startswith("refused"), (path, message)
                assert "swordfish" not in message

            error, message = await call(s, "search", query="x", mode="fuzzy")
            assert error  # the schema refuses it; the server carries on
            error, message = await call(s, "similar")
            assert error and message == "give either a chunk_id or a path"  # the CLI's words
            error, found = await call(s, "search", query="billing module", mode="lexical")
            assert not error and found["hits"][0]["path"] == "docs/notes.txt"

    anyio.run(session_run)


def test_reindex_finds_new_text_and_two_clients_share_the_collection(tiny_collection: Path) -> None:
    guide = tiny_collection.parent / "docs" / "guide.md"

    async def session_run() -> None:
        async with (
            stdio_client(params(tiny_collection)) as one,
            ClientSession(*one) as first,
            stdio_client(params(tiny_collection)) as two,
            ClientSession(*two) as second,
        ):
            await first.initialize()
            await second.initialize()
            _, found = await call(first, "search", query="zeppelin", mode="lexical")
            assert found["hits"] == []
            edit(guide, guide.read_text() + "\n## Airships\n\nThe zeppelin docks at the mast.\n")
            error, summary = await call(first, "reindex")
            assert not error and summary["status"] == "done" and summary["updated"] == 1
            for session, mode in ((first, "hybrid"), (second, "lexical")):  # nothing stale
                _, found = await call(session, "search", query="zeppelin mast", mode=mode)
                assert found["hits"][0]["path"] == "docs/guide.md"
                assert "zeppelin" in found["hits"][0]["snippet"]

    anyio.run(session_run)


def test_a_malformed_message_does_not_kill_the_server(tiny_collection: Path) -> None:
    command = [sys.executable, "-m", "tpsearch", "mcp", "--index", str(tiny_collection)]
    server = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        hello = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"},
            },
        }
        server.stdin.write(b"{this is not json\n" + json.dumps(hello).encode() + b"\n")
        server.stdin.flush()
        answers = [json.loads(server.stdout.readline()) for _ in range(2)]
        assert any(a.get("id") == 1 and "result" in a for a in answers), answers
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_http_needs_the_token_and_refuses_a_foreign_origin(tiny_collection: Path) -> None:
    import httpx

    port = _free_port()
    command = [sys.executable, "-m", "tpsearch", "mcp", "--index", str(tiny_collection), "--http"]
    server = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/mcp"
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    plain = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    try:
        for _ in range(200):
            try:
                anonymous = httpx.post(url, json=body, headers=plain, timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        # Any user or program of the machine reaches 127.0.0.1: without the token, nothing.
        assert anonymous.status_code == 401
        (token_file,) = (Path(os.environ["TPSEARCH_HOME"]) / "mcp-tokens").iterdir()
        assert not (tiny_collection / "mcp-http.token").exists()  # never in the collection
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text(encoding="utf-8").strip()
        headers = {**plain, "Authorization": f"Bearer {token}"}
        wrong = httpx.post(
            url, json=body, headers={**plain, "Authorization": "Bearer guess"}, timeout=5
        )
        assert wrong.status_code == 401
        local = httpx.post(url, json=body, headers=headers, timeout=5)
        assert local.status_code not in (401, 403)  # our own origin, with the token
        foreign = httpx.post(
            url, json=body, headers={**headers, "Origin": "http://evil.example"}, timeout=5
        )
        assert foreign.status_code == 403
        rebound = httpx.post(url, json=body, headers={**headers, "Host": "evil.example"}, timeout=5)
        assert rebound.status_code == 421
    finally:
        server.terminate()
        server.wait()
