"""`tpsearch eval retrieval`: judged queries against the current collection, per search mode."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpsearch.cli.app import stderr, stdout
from tpsearch.cli.engine import eval_app
from tpsearch.cli.options import DeviceOpt, IndexDirOpt, JsonOpt, model_overrides


@eval_app.command("retrieval")
def eval_retrieval(
    queries: Annotated[
        Path,
        typer.Argument(help="Judged queries: query<TAB>relevant path[<TAB>path ...] per line."),
    ],
    mode: Annotated[str, typer.Option(help="lexical, semantic, hybrid, or all of them.")] = "all",
    root: Annotated[
        Path | None,
        typer.Option(
            help="Folder the judged paths are relative to (default: the file's '# root:' "
            "line, else the file's folder).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
    index_dir: IndexDirOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Recall@1/5/10, MRR@10 and nDCG@10 of the files each search mode ranks for QUERIES."""
    from tpsearch.cli.render.collection import render_notice
    from tpsearch.cli.render.engine import progress_bar
    from tpsearch.cli.render.retrieval import (
        render_retrieval,
        retrieval_json,
        retrieval_warnings,
    )
    from tpsearch.collection import Collection
    from tpsearch.collection.retrieval_eval import evaluate_retrieval, parse_modes, read_judged

    modes = parse_modes(mode)
    judged = read_judged(queries)
    cwd = Path.cwd()
    with Collection.locate(cwd, index_dir) as collection, progress_bar(stderr, "querying") as bar:
        report = evaluate_retrieval(
            collection,
            judged,
            modes,
            root=root,
            overrides=model_overrides({"device": device}),
            progress=bar,
        )
    for warning in retrieval_warnings(report):
        render_notice(stderr, f"warning: {warning}")
    if as_json:
        typer.echo(retrieval_json(report))
    else:
        render_retrieval(stdout, report, cwd)
