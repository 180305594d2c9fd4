"""Live use: `tpsearch watch` keeps the collection current as files change; `tpsearch tui`
opens the search screen, as `tpsearch query -i` does."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from tpsearch.cli.app import app, stderr
from tpsearch.cli.options import DeviceOpt, IndexDirOpt, ModelOpt, model_overrides


@app.command("watch")
def watch_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files or folders to watch, indexed first and remembered as by `tpsearch "
            "index PATH` (default: the ones indexed before).",
            show_default=False,
        ),
    ] = None,
    index_dir: IndexDirOpt = None,
    debounce: Annotated[
        int,
        typer.Option(help="Milliseconds a burst of changes is gathered, at most, per batch."),
    ] = 1000,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass of the model.")] = 32,
    model: ModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Keep the collection current: re-index what changes, in debounced batches, until Ctrl-C.

    Queries, status and dedupe work meanwhile; `tpsearch index` waits for a batch to finish.
    """
    from tpsearch.cli.render.watch import WatchLine
    from tpsearch.collection import Collection
    from tpsearch.collection.indexing import check_arguments
    from tpsearch.collection.watching import Watcher

    check_arguments(paths, batch_size)
    stop = threading.Event()

    def first_ctrl_c(signum: int, frame: FrameType | None) -> None:
        stop.set()  # the batch in progress is finished and committed, then the watch ends
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second one interrupts
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = signal.signal(signal.SIGINT, first_ctrl_c)
    previous_term = signal.signal(signal.SIGTERM, first_ctrl_c)  # a service manager's stop
    overrides = model_overrides({"model": model, "device": device})
    try:
        with (
            Collection.locate(Path.cwd(), index_dir, create=True) as collection,
            WatchLine(stderr) as line,
        ):
            watcher = Watcher(
                collection,
                paths,
                on_state=line.show,
                stop=stop,
                overrides=overrides,
                batch_size=batch_size,
                debounce_ms=debounce,
            )
            watcher.run()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


@app.command("tui")
def tui_command(
    text: Annotated[
        str | None, typer.Argument(help="The first query (optional).", show_default=False)
    ] = None,
    mode: Annotated[str, typer.Option(help="hybrid, semantic or lexical (Ctrl-T changes it).")] = (
        "hybrid"
    ),
    path: Annotated[
        str | None, typer.Option(help="Only files matching this pattern (Ctrl-F changes it).")
    ] = None,
    index_dir: IndexDirOpt = None,
    device: DeviceOpt = None,
) -> None:
    """The interactive search screen, as `tpsearch query -i`."""
    from tpsearch.cli.collections import search_screen

    search_screen(Path.cwd(), index_dir, text or "", mode, path, 20, device)
