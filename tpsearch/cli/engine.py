"""`tpsearch inspect`, `embed`, `eval sts` and `calibrate`: the embedding engine itself."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from tpsearch.cli.app import app, stderr, stdout
from tpsearch.cli.options import (
    BatchOpt,
    DeviceOpt,
    ExitOpt,
    JsonOpt,
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
    encoder_settings,
    load_encoder,
)
from tpsearch.errors import ConfigError


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
    from tpsearch.cli.render.engine import render_prompt_view
    from tpsearch.engine.token_prepending import describe_settings, load_prompt_builder

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
    from tpsearch.cli.render.engine import render_vectors

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
    tp: TpOpt = None,
    tp_start: TpStartOpt = None,
    tp_end: TpEndOpt = None,
    exit_layer: ExitOpt = None,
    pooling: PoolingOpt = None,
    pst_init: PstInitOpt = None,
    max_length: MaxLengthOpt = None,
    trust_remote_code: TrustCodeOpt = None,
) -> None:
    """Spearman x100 on FILE with Token Prepending and with the plain prompt (same exit).

    Gives a 95% paired-bootstrap interval for "TP minus plain prompt" (same template).

    --no-tp scores the plain prompt only.
    """
    from tpsearch.cli.render.engine import progress_bar
    from tpsearch.cli.render.evaluation import render_sts
    from tpsearch.engine.evaluation import evaluate_sts, read_pairs

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
    templates: Annotated[
        str | None,
        typer.Option(help="Templates to sweep, e.g. prompteol,pcot,knowledge (default: one)."),
    ] = None,
    tp_starts: Annotated[
        str | None, typer.Option(help="TP start layers to sweep, e.g. 0-2 (default: one).")
    ] = None,
    tp_ends: Annotated[
        str | None, typer.Option(help="TP end layers to sweep, e.g. 2-10 or 3,5,7.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write the full grid as a heat map to FILE.png.")
    ] = None,
    save: Annotated[bool, typer.Option(help="Save the chosen setting for this model.")] = True,
    batch_size: BatchOpt = 32,
    as_json: JsonOpt = False,
    model: ModelOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    template: TemplateOpt = None,
    tp: TpOpt = None,
    tp_start: TpStartOpt = None,
    pooling: PoolingOpt = None,
    pst_init: PstInitOpt = None,
    max_length: MaxLengthOpt = None,
    trust_remote_code: TrustCodeOpt = None,
) -> None:
    """Sweep TP layers and the exit layer on a dev set; save the best setting for this model.

    TP is saved only when its 95% paired-bootstrap interval over the best plain prompt is > 0.

    Otherwise the plain prompt at its best exit layer is saved.

    --no-tp sweeps the plain prompt's exit layer only.
    """
    from tpsearch.cli.render.engine import progress_bar
    from tpsearch.cli.render.evaluation import render_calibration
    from tpsearch.cli.render.heatmap import check_plot_path, plot_calibration
    from tpsearch.engine.calibration import CalibrationStore
    from tpsearch.engine.evaluation import calibrate as run_calibration
    from tpsearch.engine.evaluation import read_pairs, shipped_sts_dev

    options = {**locals(), "tp_start": None}  # the sweep sets tp_start per pass
    if plot is not None:
        check_plot_path(plot)  # before the sweep, not after it
    _not_both("template", template, templates)
    _not_both("tp-start", tp_start, tp_starts)
    swept_templates = parse_names(templates) or ([template] if template is not None else None)
    starts = parse_layers(tp_starts) or ([tp_start] if tp_start is not None else None)
    source = data or shipped_sts_dev()
    dev = read_pairs(source).sample(pairs)
    settings = encoder_settings(options)
    with warnings.catch_warnings():
        # "not used with mean pooling: run tpsearch calibrate --pooling mean" is this run.
        warnings.filterwarnings("ignore", message="the calibration of .* pooling")
        encoder = load_encoder(settings)
        with progress_bar(stderr, "calibrating") as progress:
            result = run_calibration(
                encoder,
                dev,
                parse_layers(tp_ends),
                batch_size,
                progress,
                tp_starts=starts,
                templates=swept_templates,
            )
    saved = None
    if save and settings.calibration_file is not None:
        CalibrationStore(settings.calibration_file).put(
            result.record(encoder.model_id, settings.pooling, str(source))
        )
        saved = str(settings.calibration_file)
    if plot is not None:
        plot_calibration(result, plot, f"{encoder.model_id}, {Path(source).name}")
    render_calibration(
        stdout, result, as_json, saved_to=saved, model=encoder.model_id, pooling=settings.pooling
    )
    if plot is not None:
        stderr.print(f"heat map written to {plot}", soft_wrap=True, highlight=False, markup=False)


def _not_both(name: str, one: object, many: object) -> None:
    """--template X or --templates X,Y (and --tp-start or --tp-starts), never both."""
    if one is not None and many is not None:
        raise ConfigError(f"pass --{name} or --{name}s, not both (--{name}s takes a list)")


def parse_names(spec: str | None) -> list[str] | None:
    """'prompteol,pcot' as a list of names."""
    if spec is None:
        return None
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"invalid template list {spec!r}: write e.g. prompteol,pcot,knowledge")
    return names


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
