"""`tpsearch index`, `query` and `status`: a collection of files, searched."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpsearch.cli.app import app, stderr, stdout
from tpsearch.cli.options import (
    DeviceOpt,
    ExitOpt,
    IndexDirOpt,
    MaxLengthOpt,
    ModelOpt,
    PoolingOpt,
    PrecisionOpt,
    PstInitOpt,
    TemplateOpt,
    TpEndOpt,
    TpOpt,
    TpStartOpt,
    TrustCodeOpt,
    model_overrides,
)
from tpsearch.cli.server import from_server
from tpsearch.errors import ConfigError, TpsearchError

if TYPE_CHECKING:
    from tpsearch.collection.facade import EncoderFactory
    from tpsearch.collection.indexing import IndexSummary
    from tpsearch.engine.encoder import Encoder
    from tpsearch.engine.settings import EncoderSettings


@app.command("index")
def index_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files or folders to index (default: the ones indexed before, else the "
            "folder holding the collection).",
            show_default=False,
        ),
    ] = None,
    index_dir: IndexDirOpt = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            help="Only files matching this gitignore-style pattern, relative to the collection "
            "root like --path of query (repeatable). Remembered: later runs use it until "
            "--include is given again or --reset-filters."
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            help="Also skip files matching this gitignore-style pattern, relative to the "
            "collection root (repeatable). Remembered, as --include."
        ),
    ] = None,
    max_file_size: Annotated[
        str | None,
        typer.Option(help="Skip larger files: 500k, 2M, 1G ... (default 1M). Remembered."),
    ] = None,
    reset_filters: Annotated[
        bool,
        typer.Option(
            "--reset-filters",
            help="Forget the remembered --include, --exclude and --max-file-size; only the ones "
            "given now apply.",
        ),
    ] = False,
    forget: Annotated[
        list[Path] | None,
        typer.Option(
            help="Stop indexing this remembered file or folder and remove its files from the "
            "collection (repeatable); a missing folder's files are kept until then.",
            show_default=False,
        ),
    ] = None,
    reembed: Annotated[
        bool, typer.Option("--reembed", help="Drop every vector and embed all chunks again.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass of the model.")] = 32,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Embed on a Ray cluster: auto (RAY_ADDRESS's cluster, else a local Ray) or "
            'its address (host:6379, ray://host:10001). Needs pip install "tpsearch[ray]".',
            show_default=False,
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(
            help="With --ray: this many CPU workers (default: one per GPU of the cluster, else 2).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List skipped files.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    model: ModelOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    template: TemplateOpt = None,
    tp: TpOpt = None,
    tp_start: TpStartOpt = None,
    tp_end: TpEndOpt = None,
    exit_layer: ExitOpt = None,
    pooling: PoolingOpt = None,
    pst_init: PstInitOpt = None,
    max_length: MaxLengthOpt = None,
    trust_remote_code: TrustCodeOpt = None,
) -> None:
    """Index files: only what changed since the last run is read, chunked and embedded."""
    from tpsearch.cli.render.collection import render_notice
    from tpsearch.cli.render.progress import RichProgress
    from tpsearch.collection import Collection
    from tpsearch.collection.indexing import IndexSummary, ScanOverrides, check_arguments
    from tpsearch.collection.sources import DEFAULT_MAX_FILE_BYTES, parse_size

    overrides = model_overrides(locals())
    limit = parse_size(max_file_size) if max_file_size else None
    if reset_filters:  # what is not given now goes back to the default
        scan = ScanOverrides(include or [], exclude or [], limit or DEFAULT_MAX_FILE_BYTES)
    else:  # what is not given now keeps its remembered value
        scan = ScanOverrides(include or None, exclude or None, limit)
    check_arguments(paths, batch_size)  # before a collection is created: a typo costs nothing
    ray_settings = None
    if ray is not None or ray_workers is not None:
        from tpsearch.distributed import RaySettings

        ray_settings = RaySettings(ray or "auto", ray_workers, 0.0 if ray_workers else None)
    progress = RichProgress(stderr) if not quiet and stderr.is_terminal else None
    with Collection.locate(Path.cwd(), index_dir, create=True) as collection:
        try:
            with progress or contextlib.nullcontext():
                index = collection.index
                if ray_settings is not None:
                    from tpsearch.distributed import index_on_ray

                    index = functools.partial(index_on_ray, collection, ray=ray_settings)
                summary = index(
                    paths,
                    include=scan.include,
                    exclude=scan.exclude,
                    max_file_bytes=scan.max_file_bytes,
                    overrides=overrides,
                    reembed=reembed,
                    progress=progress,
                    batch_size=batch_size,
                    forget=forget or (),
                    on_busy=lambda owner: render_notice(stderr, waiting_line(owner)),
                )
        except KeyboardInterrupt:
            message = "interrupted; the work committed so far is kept: run `tpsearch index` again"
            render_notice(stderr, message)
            raise SystemExit(130) from None
        except TpsearchError as error:  # after the scan (the model cannot load, ...): show
            if isinstance(error.partial, IndexSummary):  # what it found before the error line
                _report(error.partial, verbose, line=False)
            raise
    _report(summary, verbose, line=True)


def waiting_line(owner: str) -> str:
    return (
        f"another tpsearch process is writing this collection ({owner}, `tpsearch watch`?): "
        "waiting for its turn; Ctrl-C gives up"
    )


def _report(summary: IndexSummary, verbose: bool, line: bool) -> None:
    from tpsearch.cli.render.collection import render_notice, render_summary

    for notice in summary.notices:
        render_notice(stderr, notice)
    render_summary(stdout, summary, verbose, line)


@app.command("query")
def query_command(
    text: Annotated[
        str | None,
        typer.Argument(
            help="What to look for, in your own words (with -i: the first query, optional).",
            show_default=False,
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="How many results.")] = 10,
    mode: Annotated[
        str, typer.Option(help="hybrid (keywords and vectors, fused), semantic or lexical.")
    ] = "hybrid",
    path: Annotated[
        str | None,
        typer.Option(help="Only files matching this gitignore-style pattern, e.g. 'docs/*.md'."),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            help="Drop results scoring below this: semantic, centred cosine (0: unrelated); "
            "hybrid 0-1; lexical BM25."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Results as one JSON array.")] = False,
    as_jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line.")] = False,
    files: Annotated[
        bool, typer.Option("--files", help="Only the matching files, best first, once each.")
    ] = False,
    context: Annotated[
        int | None,
        typer.Option(
            "--context",
            "-C",
            help="Show the hit's best line and N lines either side, as in the file (grep -C).",
            metavar="N",
            show_default=False,
        ),
    ] = None,
    index_dir: IndexDirOpt = None,
    device: DeviceOpt = None,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            "-i",
            help="A search screen: results as you type, a preview, keys to change mode, narrow "
            "by path, open in $EDITOR, show similar passages.",
        ),
    ] = False,
    no_server: Annotated[
        bool,
        typer.Option("--no-server", help="Answer in this process even when `tpsearch serve` runs."),
    ] = False,
) -> None:
    """Search the collection. Exit status as grep: 0 results, 1 none, 2 error.

    When `tpsearch serve` runs for the collection (same version and options), it answers:
    the model is already loaded there.
    """
    from tpsearch.cli.render.collection import hits_json, render_hits, render_notice

    if as_json and as_jsonl:
        raise ConfigError("choose one of --json and --jsonl")
    cwd = Path.cwd()
    if interactive:
        search_screen(cwd, index_dir, text or "", mode, path, k, device)
        return
    if text is None:
        raise ConfigError("give a query: `tpsearch query WORDS`, or `tpsearch query -i`")
    overrides = model_overrides({"device": device})
    args = {
        "text": text,
        "k": k,
        "mode": mode,
        "path": path,
        "min_score": min_score,
        "context": context,
    }
    answered = (
        None if no_server else from_server(cwd, index_dir, {**args, "files": files}, overrides)
    )
    if answered is not None:
        result, root = answered
    else:
        from tpsearch.collection import Collection

        with Collection.locate(cwd, index_dir) as collection:
            result = collection.query(
                **args,  # type: ignore[arg-type]
                files=files,
                overrides=overrides,
                encoder_factory=_loading_status() if stderr.is_terminal else None,
            )
            root = collection.root
    for notice in result.notices:
        render_notice(stderr, notice)
    if as_json or as_jsonl:
        if result.hits or as_json:
            typer.echo(hits_json(result, root, cwd, lines=as_jsonl))
    else:
        render_hits(stdout, result, root, cwd, files)
    raise typer.Exit(0 if result.hits else 1)


def search_screen(
    cwd: Path,
    index_dir: Path | None,
    text: str,
    mode: str,
    path: str | None,
    k: int,
    device: str | None,
) -> None:
    import os

    from tpsearch.collection import Collection
    from tpsearch.tui import SearchApp, editor_command

    with Collection.locate(cwd, index_dir) as collection:
        SearchApp(
            collection,
            text=text,
            mode=mode,
            path=path,
            k=max(k, 20),
            editor=editor_command(os.environ),
            overrides=model_overrides({"device": device}),
        ).run()


def _loading_status() -> EncoderFactory:
    """The default encoder factory under a transient "loading model..." line on stderr: a
    semantic query spends seconds loading the model before it can say anything."""
    from tpsearch.collection import facade

    def load(settings: EncoderSettings) -> Encoder:
        from rich.text import Text

        # Text, not markup: a model name stored with a shared collection could style the
        # terminal ("[link=...]") or break the line ("[/b]").
        with stderr.status(Text(f"loading model {settings.model}...")) as status:
            return facade.default_encoder_factory(
                settings, phase=lambda step: status.update(Text(step))
            )

    return load


@app.command("status")
def status_command(
    index_dir: IndexDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="As one JSON object.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Also verify every invariant (reads everything; the full-text part takes the "
            "write lock for a moment). Exit status 1 when it finds a problem.",
        ),
    ] = False,
) -> None:
    """What the collection holds: files, chunks, pending vectors, skips, model, sizes.

    Exit status: 0, or 1 when --check finds a problem (a damaged database file included),
    2 on an error.
    """
    from tpsearch.cli.render.collection import render_status, status_json
    from tpsearch.collection import Collection
    from tpsearch.collection.db_errors import DamagedDatabase
    from tpsearch.server.client import ask

    try:
        with Collection.locate(Path.cwd(), index_dir) as collection:
            status = collection.status(check=check)
    except DamagedDatabase as error:
        if not check:
            raise
        error.exit_code = 1  # what --check looks for, found
        raise
    server = ask(status.folder, {"op": "ping"}, timeout=5)
    if as_json:
        typer.echo(status_json(status, server))
    else:
        render_status(stdout, status, server)
    raise typer.Exit(1 if status.problems else 0)


# --- analysis: dedupe, cluster ------------------------------------------------------------
