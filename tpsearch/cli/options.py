"""Options and settings shared by the commands: model flags, folders, encoder loading."""

from __future__ import annotations

import inspect as _inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tpsearch.engine.settings import (
    DEFAULT_MODEL,
    DEFAULT_TEMPLATE,
    MEASURED_PRESETS,
    EncoderSettings,
)

if TYPE_CHECKING:
    from tpsearch.engine.token_prepending import TPEncoder

from tpsearch.cli.app import stderr


def _measured_defaults() -> str:
    """The layer settings a default run uses, from the presets themselves (so help stays true)."""
    seen: dict[str, str] = {}
    for pattern, preset in MEASURED_PRESETS:
        if preset.name not in seen.values():
            how = "plain prompt" if not preset.tp else f"TP [{preset.tp_start}, {preset.tp_end})"
            seen[f"{pattern}: {how}, exit {preset.exit_layer}"] = preset.name
    return "; ".join(seen)


LAYER_DEFAULTS = (
    f"Default: per model ({_measured_defaults()}; other models: a saved calibration or a "
    "published preset, else the plain prompt at exit -2)."
)

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        envvar="TPSEARCH_MODEL",
        help="Hub id, local model directory, .gguf file, or packaged model (tpsearch models). "
        f"Default: {DEFAULT_MODEL}, or the model a collection was indexed with.",
    ),
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
    typer.Option(
        help="prompteol, pcot, knowledge, or your own text with {text} and <PST>. "
        f"Default: the model's preset, else {DEFAULT_TEMPLATE}."
    ),
]
TpOpt = Annotated[
    bool | None,
    typer.Option(
        "--tp/--no-tp",
        help="Token Prepending on (with --tp-start/--tp-end), or the plain prompt baseline. "
        + LAYER_DEFAULTS,
    ),
]
TpStartOpt = Annotated[int | None, typer.Option(help="First 0-based layer fed a <PST> copy.")]
TpEndOpt = Annotated[int | None, typer.Option(help="One past the last layer fed a copy.")]
ExitOpt = Annotated[
    int | None,
    typer.Option(
        "--exit-layer",
        help="hidden_states index of the embedding (-1: final norm). Default: per model, as --tp.",
    ),
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


LevelOpt = Annotated[  # dedupe's --level
    str, typer.Option(help="file: compare whole files; chunk: repeated passages across files.")
]
ClusterLevelOpt = Annotated[
    str,
    typer.Option("--level", help="file: topics of whole files; chunk: topics of passages."),
]


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
    from rich.text import Text

    from tpsearch.engine.token_prepending import TPEncoder

    with stderr.status(Text(f"loading {settings.model} ({settings.precision})")) as status:

        def phase(message: str) -> None:  # slow one-time steps, e.g. converting a GGUF
            stderr.print(
                f"tpsearch: {message}", style="dim", highlight=False, soft_wrap=True, markup=False
            )
            status.update(Text(message))

        return TPEncoder(settings, phase=phase)


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Texts per forward pass.")]
