"""`tpsearch mcp`: the collection as Model Context Protocol tools, with the official SDK (FastMCP).

Five tools: search, get, similar, status, reindex. Reads run one at a time on one thread that
owns the open collection (SQLite connections belong to a thread), so the event loop stays free;
a reindex runs on a thread of its own and a second one answers "busy" at once. Expected errors
come back as tool errors carrying the CLI's one-line message; the server keeps running.
Over HTTP it listens on 127.0.0.1 only and checks Host and Origin (DNS-rebinding protection).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ContentBlock
from pydantic import Field

from tpsearch.errors import TpsearchError
from tpsearch.server.service import Service

T = TypeVar("T")
INSTRUCTIONS = (
    "Search a local collection of documents and code indexed by tpsearch. Start with `search` "
    "(hybrid keyword + semantic ranking); read more of a hit with `get(path, start_line, "
    "end_line)`; find related passages with `similar`. Paths are relative to the collection root."
)


class _Server(FastMCP):
    """FastMCP, with tpsearch's own error messages unwrapped (no "Error executing tool")."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any]
    ) -> Sequence[ContentBlock] | dict[str, Any]:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as error:
            if isinstance(error.__cause__, TpsearchError):
                raise ToolError(str(error.__cause__)) from None
            raise


def build_server(service: Service, host: str = "127.0.0.1", port: int = 8000) -> FastMCP:
    reader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tpsearch")

    async def on_reader(call: Callable[[], T]) -> T:
        return await asyncio.wrap_future(reader.submit(call))

    server = _Server(
        "tpsearch", instructions=INSTRUCTIONS, host=host, port=port, log_level="WARNING"
    )

    @server.tool()
    async def search(
        query: Annotated[
            str, Field(description="What to look for, in natural language or keywords.")
        ],
        k: Annotated[int, Field(description="How many results.", ge=1, le=200)] = 10,
        mode: Annotated[
            Literal["hybrid", "semantic", "lexical"],
            Field(
                description="hybrid: keywords and meaning fused (best default); semantic: meaning "
                "only; lexical: exact words only (BM25, fastest, never loads the model)."
            ),
        ] = "hybrid",
        path: Annotated[
            str | None,
            Field(
                description="Only files matching this gitignore-style pattern, e.g. 'docs/*.md'."
            ),
        ] = None,
        min_score: Annotated[
            float | None, Field(description="Drop hits scoring below this (the mode's score).")
        ] = None,
    ) -> dict[str, Any]:
        """Search the collection. Returns hits, best first, each with path, start_line, end_line,
        heading, score, snippet and chunk_id; `used` says which ranking ran and `notices` say
        why it differs from `mode` (e.g. no vectors yet). Read a hit in full with `get`."""
        return await on_reader(lambda: service.search(query, k, mode, path, min_score))

    @server.tool()
    async def get(
        path: Annotated[
            str, Field(description="A file of the collection, as search hits name it.")
        ],
        start_line: Annotated[
            int | None, Field(description="First line to return (1-based).", ge=1)
        ] = None,
        end_line: Annotated[
            int | None, Field(description="Last line to return (inclusive).", ge=1)
        ] = None,
    ) -> dict[str, Any]:
        """The current text of an indexed file, or of lines start_line..end_line of it, with
        total_lines. Only files in the collection can be read; other paths are refused."""
        return await on_reader(lambda: service.get(path, start_line, end_line))

    @server.tool()
    async def similar(
        path: Annotated[
            str | None, Field(description="A file of the collection: passages like it.")
        ] = None,
        chunk_id: Annotated[
            int | None, Field(description="A chunk_id from a search hit: passages like it.")
        ] = None,
        k: Annotated[int, Field(description="How many passages.", ge=1, le=200)] = 10,
    ) -> dict[str, Any]:
        """Passages nearest in meaning to a passage (chunk_id) or a whole file (path), other
        than itself; give exactly one of them. Uses the stored vectors (fast, no model)."""
        return await on_reader(lambda: service.similar(path, chunk_id, k))

    @server.tool()
    async def status() -> dict[str, Any]:
        """What the collection holds (files, chunks, pending vectors, model, last index run)
        and the server's state, as `tpsearch status --json` says."""
        return await on_reader(service.status)

    @server.tool()
    async def reindex() -> dict[str, Any]:
        """Bring the collection up to date with its files (only changed files are read and
        embedded) and return the run's summary. Answers status "busy" at once if an index
        run is already going on."""
        return await anyio.to_thread.run_sync(service.reindex)

    return server


def serve_mcp(
    service: Service, http: bool = False, port: int = 8000, token: str | None = None
) -> None:
    """Serve until the client closes stdin (stdio) or the process is stopped (HTTP). Over
    HTTP every request must carry `Authorization: Bearer TOKEN`: 127.0.0.1 is reachable by
    every user and program of the machine, and the tools read the collection's files."""
    server = build_server(service, port=port)
    if not http:
        server.run("stdio")
        return
    import uvicorn

    assert token, "HTTP needs a token"
    app = BearerToken(server.streamable_http_app(), token)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


class BearerToken:
    """ASGI middleware: HTTP requests without the right bearer token get 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = b"tpsearch: send the token `tpsearch mcp --http` names (bearer)\n"
                headers = [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def token_path(home: Path, folder: Path) -> Path:
    """Where the MCP-over-HTTP token of the collection `folder` is kept: in the user's own
    tpsearch folder, never in the collection (a copied `.tpsearch/` would bring its token)."""
    name = hashlib.sha256(os.fsencode(os.path.realpath(folder))).hexdigest()[:16]
    return home / "mcp-tokens" / f"{name}.token"


def http_token(path: Path) -> str:
    """The token kept at `path` (made once, readable by its owner only, so that client
    configurations keep working across restarts)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
        info = path.stat()
        if len(token) >= 32 and (info.st_mode & 0o077) == 0 and info.st_uid == os.getuid():
            return token
    except OSError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    return token
