"""`tpsearch mcp` and `tpsearch serve`: the collection served to other programs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpsearch.cli.app import app, stderr
from tpsearch.cli.options import DeviceOpt, IndexDirOpt, model_overrides
from tpsearch.errors import ConfigError


def _folder(index_dir: Path | None) -> Path:
    from tpsearch.collection import Collection

    with Collection.locate(Path.cwd(), index_dir) as collection:  # fails here if there is none
        return collection.folder


@app.command("mcp")
def mcp_command(
    index_dir: IndexDirOpt = None,
    http: Annotated[
        bool,
        typer.Option(
            "--http",
            help="Serve streamable HTTP on 127.0.0.1 (Host and Origin checked) instead of stdio.",
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --http.")] = 8000,
    device: DeviceOpt = None,
) -> None:
    """Serve the collection to AI agents and editors over the Model Context Protocol (stdio).

    Tools: search, get, similar, status, reindex. The model loads on the first semantic search
    and stays loaded.
    """
    try:
        from tpsearch.server.mcp import serve_mcp
    except ImportError as error:
        raise ConfigError(
            f"the MCP server needs the `mcp` package ({error}): pip install 'mcp>=1.12,<2'"
        ) from None
    from tpsearch.server.service import Service

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    service = Service(_folder(index_dir), model_overrides({"device": device}), kind="mcp")
    if http:
        stderr.print(f"tpsearch: MCP over HTTP at http://127.0.0.1:{port}/mcp", style="dim")
    serve_mcp(service, http=http, port=port)
