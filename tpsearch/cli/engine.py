"""`tpsearch inspect`, `embed`, `eval sts` and `calibrate`: the embedding engine itself."""

from __future__ import annotations

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
    tp_start: TpStartOpt = None,
    tp_end: TpEndOpt = None,
    exit_layer: ExitOpt = None,
    pooling: PoolingOpt = None,
    pst_init: PstInitOpt = None,
    max_length: MaxLengthOpt = None,
    trust_remote_code: TrustCodeOpt = None,
) -> None:
    """Spearman x100 on FILE, with Token Prepending and without it (same template and exit)."""
    from tpsearch.cli.render.engine import progress_bar, render_sts
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
    from tpsearch.cli.render.engine import progress_bar, render_calibration
    from tpsearch.engine.calibration import CalibrationStore
    from tpsearch.engine.evaluation import calibrate as run_calibration
    from tpsearch.engine.evaluation import read_pairs, shipped_sts_dev

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
