"""STS evaluation and layer calibration: Spearman x100 of cosine similarity against gold scores.

`evaluate_sts` scores one setting with Token Prepending and the plain prompt of the same
template at the same exit layer, with a paired bootstrap interval for the difference.
`calibrate` sweeps templates, TP start and end layers; each (template, tp_start, tp_end) is one
forward pass that yields every exit layer at once, plus one plain-prompt pass per template.
Reading the data is `sts_data`, the statistics `bootstrap`, choosing what to save `sweep`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tpsearch.engine.bootstrap import PairedDifference, paired_bootstrap, spearman
from tpsearch.engine.sts_data import PairFormat, SentencePairs, read_pairs, shipped_sts_dev
from tpsearch.engine.sweep import CalibrationResult, SweepSetting, TpKey, summarise_sweep
from tpsearch.errors import ConfigError, DataError

if TYPE_CHECKING:
    from tpsearch.engine.token_prepending import TPEncoder

__all__ = [
    "CalibrationResult",
    "PairFormat",
    "SentencePairs",
    "StsResult",
    "SweepSetting",
    "calibrate",
    "default_tp_ends",
    "evaluate_sts",
    "pair_spearmans",
    "read_pairs",
    "shipped_sts_dev",
    "spearman",
]

Progress = Callable[[int, int], None]  # (texts done, texts in all) across every pass


def pair_similarities(
    vectors: dict[int, np.ndarray], index: dict[str, int], pairs: SentencePairs
) -> dict[int, np.ndarray]:
    """Cosine similarity of each pair (unit vectors: a dot product) per exit layer: (N,) each."""
    a = np.array([index[s] for s in pairs.first])
    b = np.array([index[s] for s in pairs.second])
    return {layer: np.einsum("nd,nd->n", v[a], v[b]) for layer, v in vectors.items()}


def pair_spearmans(
    vectors: dict[int, np.ndarray], index: dict[str, int], pairs: SentencePairs
) -> dict[int, float]:
    """Spearman x100 of cosine similarity per exit layer."""
    similarities = pair_similarities(vectors, index, pairs)
    return {layer: 100.0 * spearman(s, pairs.scores) for layer, s in similarities.items()}


def _require_scorable(pairs: SentencePairs) -> None:
    """A rank correlation needs at least 3 pairs whose gold scores are not all equal."""
    if len(pairs) < 3 or np.ptp(pairs.scores) == 0:
        raise DataError(
            f"{pairs.source}: {len(pairs)} pairs with {len(set(pairs.scores.tolist()))} distinct "
            "gold scores: Spearman needs at least 3 pairs and 2 different scores"
        )


def _unique_sentences(pairs: SentencePairs) -> tuple[list[str], dict[str, int]]:
    sentences = list(dict.fromkeys(pairs.first + pairs.second))
    return sentences, {s: i for i, s in enumerate(sentences)}


def _offset(
    progress: Progress | None, done: int, passes: int, sentences: Sequence[str]
) -> Callable[[int], None] | None:
    """Adapt a (done, total) progress callback to pass number `done` of `passes`."""
    if progress is None:
        return None
    total = passes * len(sentences)
    state = {"done": done * len(sentences)}

    def step(count: int) -> None:
        state["done"] += count
        progress(state["done"], total)

    return step


@dataclass(frozen=True)
class StsResult:
    """Spearman x100 with Token Prepending and for the same template without it."""

    pairs: int
    sampled_from: int | None  # pairs in the file when `pairs` were a sample of them
    skipped: int
    tp: float | None  # None when TP was not scored (see tp_note)
    baseline: float  # the plain prompt: same template, same exit layer
    tp_settings: str | None
    baseline_settings: str
    tp_minus_plain: PairedDifference | None  # with a 95% paired bootstrap interval
    tp_note: str | None = None  # why TP was not scored


def evaluate_sts(
    encoder: TPEncoder, pairs: SentencePairs, batch_size: int = 32, progress: Progress | None = None
) -> StsResult:
    """Score `pairs` with TP (the encoder's settings) and without (same template and exit).

    With `tp=False` requested (`--no-tp`) only the plain prompt is scored.
    """
    _require_scorable(pairs)
    sentences, index = _unique_sentences(pairs)
    with_tp, note = _tp_variant(encoder)
    baseline = encoder.variant(tp=False)
    runs = [e for e in (with_tp, baseline) if e is not None]
    similarities = []
    for done, variant in enumerate(runs):
        layer = variant.tp.exit_layer
        step = _offset(progress, done, len(runs), sentences)
        vectors = {layer: variant.encode(sentences, batch_size, step)}
        similarities.append(pair_similarities(vectors, index, pairs)[layer])
    scores = [100.0 * spearman(s, pairs.scores) for s in similarities]
    difference = None
    if with_tp is not None:
        difference = paired_bootstrap(similarities[0], similarities[1], pairs.scores)
    return StsResult(
        pairs=len(pairs),
        sampled_from=pairs.sampled_from,
        skipped=pairs.skipped,
        tp=scores[0] if with_tp is not None else None,
        baseline=scores[-1],
        tp_settings=_describe(with_tp) if with_tp is not None else None,
        baseline_settings=_describe(baseline),
        tp_minus_plain=difference,
        tp_note=note,
    )


def _tp_variant(encoder: TPEncoder) -> tuple[TPEncoder | None, str | None]:
    """The encoder with TP on, or None and why not."""
    if not encoder.requested.tp:
        return None, "--no-tp: the plain prompt only"
    if not encoder.tp.template.has_pst:
        return None, "the template has no <PST> slot: the plain prompt only"
    if encoder.tp.tp:
        return encoder, None
    return None, (
        f"the settings ({encoder.tp.source}) chose the plain prompt: pass --tp-start and "
        "--tp-end to score TP too"
    )


def _describe(encoder: TPEncoder) -> str:
    tp = encoder.tp
    layers = f"TP layers [{tp.tp_start}, {tp.tp_end})" if tp.tp else "no TP"
    return f"{tp.template.name}, {layers}, exit {tp.exit_layer}/{tp.num_layers}"


def default_tp_ends(tp_start: int, num_layers: int) -> tuple[int, ...]:
    """TP end layers worth sweeping: the paper's best were 3-8 of 28-42 layers; go to 40%."""
    top = max(tp_start + 1, round(0.4 * num_layers))
    return tuple(range(tp_start + 1, min(top, num_layers) + 1))


def calibrate(
    encoder: TPEncoder,
    pairs: SentencePairs,
    tp_ends: Sequence[int] | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    *,
    tp_starts: Sequence[int] | None = None,
    templates: Sequence[str] | None = None,
) -> CalibrationResult:
    """Sweep templates x TP start x TP end (one pass each, every exit layer at once), plus a
    plain-prompt pass per template, and choose the setting to save (see `sweep`).

    Defaults: the encoder's template and tp_start, TP end layers up to 40% of the depth. With
    `tp=False` requested only the plain prompt's exit layer is swept.
    """
    _require_scorable(pairs)
    num_layers = encoder.tp.num_layers
    specs = _template_specs(encoder, templates)
    tp_wanted = encoder.requested.tp
    with_slot = [t for t, spec in enumerate(specs) if _has_pst(spec)] if tp_wanted else []
    if tp_wanted and not with_slot:
        raise ConfigError(
            "calibration sweeps Token Prepending, but no template has a <PST> slot: use a "
            "builtin template, put <PST> before {text}, or pass --no-tp to sweep the plain prompt"
        )
    starts = tuple(sorted(set(tp_starts))) if tp_starts else (_default_start(encoder),)
    ends = tuple(sorted(set(tp_ends))) if tp_ends else default_tp_ends(starts[0], num_layers)
    if tp_wanted:
        _check_layers(starts, ends, num_layers)
    exits = tuple(range(1, num_layers + 1))

    tp_passes: list[TpKey] = [
        (t, s, e)
        for t in with_slot
        for s, start in enumerate(starts)
        for e, end in enumerate(ends)
        if end > start
    ]
    sentences, index = _unique_sentences(pairs)
    passes = len(tp_passes) + len(specs)
    grid = np.full((len(specs), len(starts), len(ends), len(exits)), np.nan)
    tp_similarities: dict[TpKey, np.ndarray] = {}
    for done, (t, s, e) in enumerate(tp_passes):
        variant = encoder.variant(
            template=specs[t], tp=True, tp_start=starts[s], tp_end=ends[e], exit_layer=-1
        )
        step = _offset(progress, done, passes, sentences)
        similarities = _all_layers(variant, sentences, index, pairs, batch_size, step)
        tp_similarities[(t, s, e)] = similarities
        for x, layer in enumerate(exits):
            if layer >= ends[e]:  # a copy feeds only layers that run before the exit
                grid[t, s, e, x] = 100.0 * spearman(similarities[x], pairs.scores)
    baseline = np.full((len(specs), len(exits)), np.nan)
    plain_similarities: dict[int, np.ndarray] = {}
    for t, spec in enumerate(specs):
        variant = encoder.variant(template=spec, tp=False, exit_layer=-1)
        step = _offset(progress, len(tp_passes) + t, passes, sentences)
        similarities = _all_layers(variant, sentences, index, pairs, batch_size, step)
        plain_similarities[t] = similarities
        baseline[t] = [100.0 * spearman(row, pairs.scores) for row in similarities]
    return summarise_sweep(
        specs,
        starts if tp_wanted else (),
        ends if tp_wanted else (),
        grid if tp_wanted else grid[:, :0, :0],
        baseline,
        tp_similarities,
        plain_similarities,
        pairs.scores,
        tp_wanted=tp_wanted,
        sampled_from=pairs.sampled_from,
        skipped=pairs.skipped,
    )


def _all_layers(
    encoder: TPEncoder,
    sentences: list[str],
    index: dict[str, int],
    pairs: SentencePairs,
    batch_size: int,
    step: Callable[[int], None] | None,
) -> np.ndarray:
    """(exits, pairs) cosine similarities from one pass over the sentences."""
    vectors = encoder.encode_all_layers(sentences, batch_size, step)
    similarities = pair_similarities(vectors, index, pairs)
    return np.stack([similarities[layer] for layer in sorted(similarities)]).astype(np.float32)


def _template_specs(encoder: TPEncoder, templates: Sequence[str] | None) -> tuple[str, ...]:
    """Builtin names or template texts, each once; the encoder's own template by default."""
    from tpsearch.engine.templates import Template

    if not templates:
        current = encoder.tp.template
        return (current.name if current.name != "custom" else current.text,)
    specs: list[str] = []
    for given in templates:
        template = Template.resolve(given)  # a ConfigError naming the builtin templates
        spec = template.name if template.name != "custom" else template.text
        if spec not in specs:
            specs.append(spec)
    return tuple(specs)


def _has_pst(spec: str) -> bool:
    from tpsearch.engine.templates import Template

    return Template.resolve(spec).has_pst


def _default_start(encoder: TPEncoder) -> int:
    """The encoder's resolved tp_start; 1 (the paper's) when its settings have TP off."""
    return encoder.tp.tp_start if encoder.tp.tp else 1


def _check_layers(starts: tuple[int, ...], ends: tuple[int, ...], num_layers: int) -> None:
    example = f"e.g. --tp-starts 0-2 --tp-ends 2-{max(2, math.ceil(0.4 * num_layers))}"
    if starts[0] < 0 or starts[-1] >= num_layers:
        raise ConfigError(
            f"TP start layers must lie in 0..{num_layers - 1} (0-based layers of this "
            f"{num_layers}-layer model): pass {example}"
        )
    if ends[0] < 1 or ends[-1] > num_layers:
        raise ConfigError(
            f"TP end layers must lie in 1..{num_layers} (one past the last layer fed a copy, "
            f"within the model's {num_layers} layers): pass {example}"
        )
    stranded = [start for start in starts if not any(end > start for end in ends)]
    if stranded:
        raise ConfigError(
            f"no TP end layer lies after tp_start {stranded[0]}: every tp_start needs a larger "
            f"tp_end (TP layers are [tp_start, tp_end)); pass {example}"
        )
