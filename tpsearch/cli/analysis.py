"""`tpsearch dedupe` and `cluster`: duplicates and topics, from what a collection stores."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from tpsearch.cli.app import app, stderr, stdout
from tpsearch.cli.options import ClusterLevelOpt, IndexDirOpt, LevelOpt
from tpsearch.errors import ConfigError


@app.command("dedupe")
def dedupe_command(
    level: LevelOpt = "file",
    method: Annotated[str, typer.Option(help="exact, lexical, semantic or all.")] = "all",
    threshold: Annotated[
        float | None,
        typer.Option(help="Threshold of the one --method chosen (lexical or semantic)."),
    ] = None,
    lexical_threshold: Annotated[
        float | None, typer.Option(help="Word-shingle Jaccard, 0-1 (default 0.8).")
    ] = None,
    semantic_threshold: Annotated[
        float | None, typer.Option(help="Cosine in the centred space, 0-1 (default 0.95).")
    ] = None,
    ignore_whitespace: Annotated[
        bool,
        typer.Option(help="Exact: reflowed copies count as identical (--no-...: bytes must be)."),
    ] = True,
    keep: Annotated[
        str, typer.Option(help="Suggested keeper: oldest, newest or shortest-path.")
    ] = "oldest",
    min_words: Annotated[int, typer.Option(help="Leave out items with fewer words.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Groups as one JSON object.")] = False,
    index_dir: IndexDirOpt = None,
) -> None:
    """Find exact, near (lexical) and semantic duplicates. Never changes a file."""
    from tpsearch.analysis import DedupeSettings
    from tpsearch.cli.render.duplicates import duplicates_as_dict, duplicates_renderable
    from tpsearch.collection import Collection

    lexical, semantic = dedupe_thresholds(method, threshold, lexical_threshold, semantic_threshold)
    settings = DedupeSettings(
        method=method,  # type: ignore[arg-type]  # validated by DedupeSettings
        whitespace=ignore_whitespace,
        keep=keep,  # type: ignore[arg-type]
        min_words=min_words,
        lexical_threshold=lexical,
        semantic_threshold=semantic,
    )
    with Collection.locate(Path.cwd(), index_dir) as collection:
        report = collection.dedupe(level, settings)  # type: ignore[arg-type]
        show = shown_from_here(collection.root)
    if as_json:
        typer.echo(json.dumps(duplicates_as_dict(report, show), indent=2))
    else:
        stdout.print(duplicates_renderable(report, level, show=show))  # type: ignore[arg-type]


def shown_from_here(root: Path) -> Callable[[str], str]:
    """A stored path as this folder sees it: relative when below it, else absolute (as query)."""
    from tpsearch.collection.sources import where

    cwd = Path.cwd()
    return lambda rel: where(root, rel, cwd)[1]


def dedupe_thresholds(
    method: str, threshold: float | None, lexical: float | None, semantic: float | None
) -> tuple[float, float]:
    """(lexical, semantic): --threshold belongs to the one method chosen, else the defaults."""
    from tpsearch.analysis import DedupeSettings

    if threshold is not None:
        if method not in ("lexical", "semantic"):
            raise ConfigError(
                f"--threshold needs --method lexical or semantic (not {method!r}); with "
                "--method all use --lexical-threshold and --semantic-threshold"
            )
        if method == "lexical":
            lexical = threshold
        else:
            semantic = threshold
    defaults = DedupeSettings()
    return (
        defaults.lexical_threshold if lexical is None else lexical,
        defaults.semantic_threshold if semantic is None else semantic,
    )


@app.command("cluster")
def cluster_command(
    k: Annotated[
        str, typer.Option("-k", help="Number of clusters, or auto (by silhouette, 2-20).")
    ] = "auto",
    level: ClusterLevelOpt = "file",
    plot: Annotated[
        Path | None, typer.Option(help="Also draw a 2-D map of the collection to FILE.png.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same collection: same clusters.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Clusters as one JSON object.")] = False,
    index_dir: IndexDirOpt = None,
) -> None:
    """Group the collection into topics with keyword labels and representative members."""
    from tpsearch.analysis import ClusterSettings, parse_k
    from tpsearch.cli.render.cluster_map import check_plot_path, plot_cluster_map
    from tpsearch.cli.render.clusters import clusters_as_dict, clusters_renderable
    from tpsearch.collection import Collection

    settings = ClusterSettings(k=parse_k(k), seed=seed)
    if plot is not None:
        check_plot_path(plot)  # before the work, not after it
    with Collection.locate(Path.cwd(), index_dir) as collection:
        outcome = collection.cluster(level, settings, with_map=plot is not None)  # type: ignore[arg-type]
        show = shown_from_here(collection.root)
    if plot is not None and outcome.projection is not None:
        plot_cluster_map(outcome.projection, outcome.report, plot)
    if as_json:
        typer.echo(json.dumps(clusters_as_dict(outcome.report, outcome.items, show), indent=2))
    else:
        stdout.print(clusters_renderable(outcome.report, show))
    if plot is not None:
        stderr.print(f"map written to {plot}", markup=False)
