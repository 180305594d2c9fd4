"""The `tpsearch` command: parse options, call one library function, render the result.

No file walking, SQL or torch here. Library errors (`TpsearchError`) are caught in one place,
`TpsearchGroup.invoke`, and printed as one red line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import contextlib
import inspect as _inspect
import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import TyperException

from tpsearch import __version__
from tpsearch.config import EncoderSettings
from tpsearch.errors import ConfigError, TpsearchError, TpsearchWarning

if TYPE_CHECKING:
    from tpsearch.indexing import IndexSummary
    from tpsearch.token_prepending import TPEncoder

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


class TpsearchGroup(TyperGroup):
    """The one error boundary: expected errors become one red line and an exit code; Ctrl-C
    exits 130; anything else is a bug and keeps its traceback, with exit code 2 (never 1,
    which `query` uses for "no results")."""

    def invoke(self, ctx: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("always", TpsearchWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except TpsearchError as error:
                _error_line(str(error))
                raise SystemExit(error.exit_code) from None
            except KeyboardInterrupt:
                _error_line("interrupted")
                raise SystemExit(130) from None
            except (typer.Exit, typer.Abort, TyperException):
                raise  # exit codes and usage errors: Typer reports them
            except Exception:
                traceback.print_exc(file=sys.stderr)
                _error_line(
                    "unexpected error, a bug in tpsearch: please report it (traceback above)"
                )
                raise SystemExit(2) from None


def _error_line(message: str) -> None:
    stderr.print(Text(f"tpsearch: {message}", style="red"), soft_wrap=True, highlight=False)


def _show_warning(message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
    if issubclass(category, TpsearchWarning):
        stderr.print(Text(f"tpsearch: warning: {message}", style="yellow"), soft_wrap=True)
    else:
        stderr.print(Text(f"{category.__name__}: {message}", style="dim"), soft_wrap=True)


app = typer.Typer(
    cls=TpsearchGroup,
    help="Local semantic search with Token Prepending embeddings from a decoder LLM.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        stdout.print(f"tpsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Local semantic search with Token Prepending embeddings from a decoder LLM."""


# Model options shared by every command that embeds text. Each defaults to None ("not given"),
# so that settings stored in a collection, or the defaults, apply unless a flag or env var says.
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", envvar="TPSEARCH_MODEL", help="Hub id or local model directory."),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(envvar="TPSEARCH_PRECISION", help="4bit (default), 8bit, bf16, fp16 or fp32."),
]
DeviceOpt = Annotated[
    str | None, typer.Option(envvar="TPSEARCH_DEVICE", help="auto (default), cpu, cuda, cuda:1.")
]
TemplateOpt = Annotated[
    str | None,
    typer.Option(help="prompteol, pcot, knowledge, or your own text with {text} and <PST>."),
]
TpOpt = Annotated[
    bool | None,
    typer.Option("--tp/--no-tp", help="Token Prepending on, or the plain prompt baseline."),
]
TpStartOpt = Annotated[int | None, typer.Option(help="First 0-based layer fed a <PST> copy.")]
TpEndOpt = Annotated[int | None, typer.Option(help="One past the last layer fed a copy.")]
ExitOpt = Annotated[
    int | None,
    typer.Option("--exit-layer", help="hidden_states index of the embedding (-1: final norm)."),
]
PoolingOpt = Annotated[str | None, typer.Option(help="last (the paper) or mean over the text.")]
PstInitOpt = Annotated[
    str | None, typer.Option(help="<PST> input vector: zeros, mean, random or token:<text>.")
]
MaxLengthOpt = Annotated[int | None, typer.Option(help="Max tokens per prompt (longer: cut).")]
TrustCodeOpt = Annotated[
    bool | None,
    typer.Option("--trust-remote-code", help="Allow code shipped with a hub model to run."),
]


def encoder_overrides(
    model: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    template: str | None = None,
    tp: bool | None = None,
    tp_start: int | None = None,
    tp_end: int | None = None,
    exit_layer: int | None = None,
    pooling: str | None = None,
    pst_init: str | None = None,
    max_length: int | None = None,
    trust_remote_code: bool | None = None,
) -> dict[str, Any]:
    """The model options a user gave, for `EncoderSettings.with_overrides`."""
    return {k: v for k, v in locals().items() if v is not None}


# --- collections: index, query, status ------------------------------------------------------

IndexDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--index",
        envvar="TPSEARCH_INDEX",
        help="The collection folder (default: the nearest .tpsearch/ here or above).",
        show_default=False,
    ),
]


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
    from tpsearch.collection import Collection
    from tpsearch.indexing import IndexSummary, ScanOverrides, check_arguments
    from tpsearch.render import RichProgress, render_notice
    from tpsearch.sources import DEFAULT_MAX_FILE_BYTES, parse_size

    overrides = model_overrides(locals())
    limit = parse_size(max_file_size) if max_file_size else None
    if reset_filters:  # what is not given now goes back to the default
        scan = ScanOverrides(include or [], exclude or [], limit or DEFAULT_MAX_FILE_BYTES)
    else:  # what is not given now keeps its remembered value
        scan = ScanOverrides(include or None, exclude or None, limit)
    check_arguments(paths, batch_size)  # before a collection is created: a typo costs nothing
    progress = RichProgress(stderr) if not quiet and stderr.is_terminal else None
    with Collection.locate(Path.cwd(), index_dir, create=True) as collection:
        try:
            with progress or contextlib.nullcontext():
                summary = collection.index(
                    paths,
                    include=scan.include,
                    exclude=scan.exclude,
                    max_file_bytes=scan.max_file_bytes,
                    overrides=overrides,
                    reembed=reembed,
                    progress=progress,
                    batch_size=batch_size,
                    forget=forget or (),
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


def _report(summary: IndexSummary, verbose: bool, line: bool) -> None:
    from tpsearch.render import render_notice, render_summary

    for notice in summary.notices:
        render_notice(stderr, notice)
    render_summary(stdout, summary, verbose, line)


@app.command("query")
def query_command(
    text: Annotated[str, typer.Argument(help="What to look for, in your own words.")],
    k: Annotated[int, typer.Option("-k", "--top", help="How many results.")] = 10,
    mode: Annotated[
        str, typer.Option(help="hybrid (keywords and vectors, fused), semantic or lexical.")
    ] = "hybrid",
    path: Annotated[
        str | None,
        typer.Option(help="Only files matching this gitignore-style pattern, e.g. 'docs/*.md'."),
    ] = None,
    min_score: Annotated[
        float | None, typer.Option(help="Drop results scoring below this (the mode's score).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Results as one JSON array.")] = False,
    as_jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line.")] = False,
    files: Annotated[
        bool, typer.Option("--files", help="Only the matching files, best first, once each.")
    ] = False,
    index_dir: IndexDirOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Search the collection. Exit status as grep: 0 results, 1 none, 2 error."""
    from tpsearch.collection import Collection
    from tpsearch.render import hits_json, render_hits, render_notice

    if as_json and as_jsonl:
        raise ConfigError("choose one of --json and --jsonl")
    cwd = Path.cwd()
    with Collection.locate(cwd, index_dir) as collection:
        result = collection.query(
            text,
            k=k,
            mode=mode,
            path=path,
            min_score=min_score,
            files=files,
            overrides=encoder_overrides(device=device),
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

    Exit status: 0, or 1 when --check finds a problem, 2 on an error.
    """
    from tpsearch.collection import Collection
    from tpsearch.render import render_status, status_json

    with Collection.locate(Path.cwd(), index_dir) as collection:
        status = collection.status(check=check)
    if as_json:
        typer.echo(status_json(status))
    else:
        render_status(stdout, status)
    raise typer.Exit(1 if status.problems else 0)


# --- analysis: dedupe, cluster ------------------------------------------------------------

LevelOpt = Annotated[
    str, typer.Option(help="file: compare whole files; chunk: repeated passages across files.")
]


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
        float | None, typer.Option(help="Embedding cosine, 0-1 (default 0.95).")
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
    from tpsearch.collection import Collection
    from tpsearch.render_analysis import duplicates_as_dict, duplicates_renderable

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
    if as_json:
        typer.echo(json.dumps(duplicates_as_dict(report), indent=2))
    else:
        stdout.print(duplicates_renderable(report, level))  # type: ignore[arg-type]


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
    level: LevelOpt = "file",
    plot: Annotated[
        Path | None, typer.Option(help="Also draw a 2-D map of the collection to FILE.png.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same collection: same clusters.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Clusters as one JSON object.")] = False,
    index_dir: IndexDirOpt = None,
) -> None:
    """Group the collection into topics with keyword labels and representative members."""
    from tpsearch.analysis import ClusterSettings, parse_k
    from tpsearch.cluster_map import plot_cluster_map
    from tpsearch.collection import Collection
    from tpsearch.render_analysis import clusters_as_dict, clusters_renderable

    settings = ClusterSettings(k=parse_k(k), seed=seed)
    with Collection.locate(Path.cwd(), index_dir) as collection:
        outcome = collection.cluster(level, settings, with_map=plot is not None)  # type: ignore[arg-type]
    if plot is not None and outcome.projection is not None:
        plot_cluster_map(outcome.projection, outcome.report, plot)
    if as_json:
        typer.echo(json.dumps(clusters_as_dict(outcome.report), indent=2))
    else:
        stdout.print(clusters_renderable(outcome.report))
    if plot is not None:
        stderr.print(f"map written to {plot}")


def cache_dir() -> Path:
    """Where tpsearch keeps what it can rebuild, such as quantized models (TPSEARCH_CACHE)."""
    explicit = os.environ.get("TPSEARCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tpsearch"


def config_dir() -> Path:
    """Where tpsearch keeps per-user state such as calibrations (TPSEARCH_HOME overrides)."""
    home = os.environ.get("TPSEARCH_HOME")
    return Path(home).expanduser() if home else Path(typer.get_app_dir("tpsearch"))


def model_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The model options a command was given (flags or env), and where calibrations live."""
    names = _inspect.signature(encoder_overrides).parameters
    given = encoder_overrides(**{name: options.get(name) for name in names})
    return {
        **given,
        "calibration_file": config_dir() / "calibrations.json",
        "model_cache": cache_dir() / "models",
    }


def encoder_settings(options: dict[str, Any]) -> EncoderSettings:
    """Defaults < saved calibration < environment < flags, from a command's model options."""
    return EncoderSettings().with_overrides(**model_overrides(options))


def load_encoder(settings: EncoderSettings) -> TPEncoder:
    from tpsearch.token_prepending import TPEncoder

    with stderr.status(f"loading {settings.model} ({settings.precision})"):
        return TPEncoder(settings)


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Texts per forward pass.")]


@app.command()
def inspect(
    text: Annotated[str, typer.Argument(help="The text to show the model input for.")],
    as_json: JsonOpt = False,
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
    """Show the exact model input for TEXT: tokens, the <PST> slot, the pooled token.

    Reads the tokenizer and config only: no weights are loaded.
    """
    from tpsearch.render_engine import render_prompt_view
    from tpsearch.token_prepending import describe_settings, load_prompt_builder

    settings = encoder_settings(locals())
    prompts = load_prompt_builder(settings)
    shown = describe_settings(settings, prompts.tp, prompts.model_id, settings.precision)
    render_prompt_view(stdout, prompts.explain(text), shown, as_json)


@app.command()
def embed(
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts to embed; none: one text per stdin line.")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="jsonl ({text, vector} per line) or json (array).")
    ] = "jsonl",
    batch_size: BatchOpt = 32,
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
    """Embed texts and print the vectors (L2-normalised float32) as JSON."""
    from tpsearch.render_engine import render_vectors

    if output_format not in ("jsonl", "json"):
        raise ConfigError(f"invalid format {output_format!r}: choose 'jsonl' or 'json'")
    lines = texts if texts else [line.rstrip("\n") for line in typer.get_text_stream("stdin")]
    encoder = load_encoder(encoder_settings(locals()))
    render_vectors(stdout, lines, encoder.encode(lines, batch_size), output_format)


eval_app = typer.Typer(help="Evaluate embeddings on labelled data.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("sts")
def eval_sts(
    file: Annotated[Path, typer.Argument(help="STS-Benchmark, SICK or s1<TAB>s2<TAB>score.")],
    pairs: Annotated[int, typer.Option(help="Score a seeded sample of N pairs (0: all).")] = 0,
    batch_size: BatchOpt = 32,
    as_json: JsonOpt = False,
    model: ModelOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    template: TemplateOpt = None,
    tp_start: TpStartOpt = None,
    tp_end: TpEndOpt = None,
    exit_layer: ExitOpt = None,
    pooling: PoolingOpt = None,
    pst_init: PstInitOpt = None,
    max_length: MaxLengthOpt = None,
    trust_remote_code: TrustCodeOpt = None,
) -> None:
    """Spearman x100 on FILE, with Token Prepending and without it (same template and exit)."""
    from tpsearch.evaluation import evaluate_sts, read_pairs
    from tpsearch.render_engine import progress_bar, render_sts

    data = read_pairs(file).sample(pairs)
    encoder = load_encoder(encoder_settings(locals()))
    with progress_bar(stderr, "embedding") as progress:
        result = evaluate_sts(encoder, data, batch_size, progress)
    render_sts(stdout, result, as_json)


@app.command()
def calibrate(
    data: Annotated[
        Path | None, typer.Option(help="Dev set (default: the shipped STS-Benchmark dev).")
    ] = None,
    pairs: Annotated[int, typer.Option(help="Use a seeded sample of N pairs (0: all).")] = 500,
    tp_ends: Annotated[
        str | None, typer.Option(help="TP end layers to sweep, e.g. 2-10 or 3,5,7.")
    ] = None,
    save: Annotated[bool, typer.Option(help="Save the best setting for this model.")] = True,
    batch_size: BatchOpt = 32,
    as_json: JsonOpt = False,
    model: ModelOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    template: TemplateOpt = None,
    tp_start: TpStartOpt = None,
    pooling: PoolingOpt = None,
    pst_init: PstInitOpt = None,
    max_length: MaxLengthOpt = None,
    trust_remote_code: TrustCodeOpt = None,
) -> None:
    """Sweep the TP end layer and the exit layer on a dev set; save the best for this model."""
    from tpsearch.calibration import CalibrationStore
    from tpsearch.evaluation import calibrate as run_calibration
    from tpsearch.evaluation import read_pairs, shipped_sts_dev
    from tpsearch.render_engine import progress_bar, render_calibration

    source = data or shipped_sts_dev()
    dev = read_pairs(source).sample(pairs)
    settings = encoder_settings(locals())
    encoder = load_encoder(settings)
    with progress_bar(stderr, "calibrating") as progress:
        result = run_calibration(encoder, dev, parse_layers(tp_ends), batch_size, progress)
    saved = None
    if save and settings.calibration_file is not None:
        CalibrationStore(settings.calibration_file).put(result.record(encoder, str(source)))
        saved = str(settings.calibration_file)
    render_calibration(stdout, result, saved, as_json)


def parse_layers(spec: str | None) -> list[int] | None:
    """'2-10' or '3,5,7' (or a mix) as a list of layer numbers."""
    if not spec:
        return None
    layers: list[int] = []
    try:
        for part in spec.split(","):
            low, _, high = part.strip().partition("-")
            layers.extend(range(int(low), int(high or low) + 1))
    except ValueError as error:
        raise ConfigError(f"invalid layer list {spec!r}: write e.g. 2-10 or 3,5,7") from error
    return layers


def main() -> None:
    app()
