"""`tpsearch mcp` and `tpsearch serve`: the collection served to other programs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tpsearch import __version__
from tpsearch.cli.app import app, stderr, stdout
from tpsearch.cli.options import DeviceOpt, IndexDirOpt, model_overrides
from tpsearch.errors import CollectionError, ConfigError, TpsearchError

if TYPE_CHECKING:
    from tpsearch.collection.hits import QueryResult


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
    folder = _folder(index_dir)
    token = None
    if http:
        from tpsearch.cli.options import config_dir
        from tpsearch.server.mcp import http_token, token_path

        where = token_path(config_dir(), folder)
        token = http_token(where)
        stderr.print(
            f"tpsearch: MCP over HTTP at http://127.0.0.1:{port}/mcp; clients send the header "
            f"`Authorization: Bearer TOKEN` with the token in {where} (yours only)",
            style="dim",
            markup=False,
        )
    service = Service(folder, model_overrides({"device": device}), kind="mcp")
    serve_mcp(service, http=http, port=port, token=token)


@app.command("serve")
def serve_command(
    index_dir: IndexDirOpt = None,
    idle: Annotated[
        float, typer.Option(help="Stop after this many minutes without a query.")
    ] = 15.0,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the running server.")] = False,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Serve in this process instead of the background.")
    ] = False,
    device: DeviceOpt = None,
) -> None:
    """Keep the model loaded for a collection, so that `tpsearch query` answers at once.

    Listens on a Unix socket in the collection folder (owner only) until idle for --idle
    minutes; `tpsearch query` uses it by itself, `tpsearch status` shows it.
    """
    from tpsearch.server.client import LOG_NAME, ask

    folder = _folder(index_dir)
    if stop:
        answer = ask(folder, {"op": "stop"}, timeout=30)
        if answer is None:
            stderr.print(f"tpsearch: no server runs for {folder}", style="yellow", markup=False)
            raise typer.Exit(1)
        stdout.print(f"stopped the server for {folder} (pid {answer['stopped']})", markup=False)
        return
    if idle <= 0:
        raise ConfigError(f"--idle must be more than 0 minutes, got {idle}")
    overrides = model_overrides({"device": device})
    if foreground:
        from tpsearch.server.service import Service
        from tpsearch.server.warm import serve_socket

        serve_socket(Service(folder, overrides, kind="serve"), idle * 60)
        return
    running = ask(folder, {"op": "ping"}, timeout=30)
    if running is not None:
        stdout.print(f"a server already runs for {folder} (pid {running['pid']})", markup=False)
        return
    command = [sys.executable, "-m", "tpsearch", "serve", "--foreground", "--index", str(folder)]
    command += ["--idle", str(idle), *(["--device", device] if device else [])]
    log_fd = os.open(folder / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with open(log_fd, "ab") as log:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    while (answer := ask(folder, {"op": "ping"}, timeout=600)) is None:
        if child.poll() is not None:
            lines = (folder / LOG_NAME).read_text(errors="replace").strip().splitlines()
            raise CollectionError(
                f"the server stopped at once: {lines[-1] if lines else 'no message'} "
                f"(log: {folder / LOG_NAME})"
            )
        time.sleep(0.1)
    model = "model loaded" if answer.get("encoder_loaded") else "model loads on the first query"
    stdout.print(
        f"serving {folder} (pid {answer['pid']}, {model}); stops after {idle:g} min idle, "
        "or `tpsearch serve --stop`"
    )


def from_server(
    cwd: Path, index_dir: Path | None, args: dict[str, Any], overrides: dict[str, Any]
) -> tuple[QueryResult, Path] | None:
    """A query answered by a running `tpsearch serve`, or None (none runs, or it refused)."""
    from tpsearch.server.client import ask, find_folder, jsonable

    folder = find_folder(cwd, index_dir)
    if folder is None:
        return None
    request = {"op": "query", "version": __version__, "overrides": jsonable(overrides)}
    answer = ask(folder, {**request, "args": args}, timeout=600)
    if answer is None:
        return None
    if "refused" in answer:
        from tpsearch.cli.render.collection import render_notice

        render_notice(stderr, f"the running server was not used ({answer['refused']})")
        return None
    if "error" in answer:
        error = TpsearchError(answer["error"])
        error.exit_code = int(answer.get("exit_code", 2))
        raise error
    from tpsearch.collection.hits import Hit, QueryResult

    hits = [Hit(**{**h, "highlights": tuple(map(tuple, h["highlights"]))}) for h in answer["hits"]]
    result = QueryResult(args["text"], answer["mode"], answer["used"], hits, answer["notices"])
    return result, folder.parent
