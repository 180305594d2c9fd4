"""What a calibration sweep found, and which setting it saves: pure functions over its scores.

The sweep (`evaluation.calibrate`) scores every (template, tp_start, tp_end, exit layer) with
Token Prepending and every (template, exit layer) with the plain prompt. Choosing the maximum
of many noisy scores flatters it, so a TP setting is saved only when the paired bootstrap
interval of "best TP minus best plain prompt" lies above zero; otherwise the plain prompt at
its best exit layer is saved. A user never gets less than the plain prompt measured here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

import numpy as np

from tpsearch.engine.bootstrap import PairedDifference, paired_bootstraps
from tpsearch.engine.calibration import CalibrationRecord
from tpsearch.engine.templates import Template
from tpsearch.errors import DataError

TOP = 10  # settings ranked (each with its interval) in a result
# tp: the best TP setting beat the plain prompt; tp-not-better: its interval reached zero or
# below; no-tp: the user asked for the plain prompt only; no-slot: no template had <PST>.
Outcome = Literal["tp", "tp-not-better", "no-tp", "no-slot"]
TpKey = tuple[int, int, int]  # (template, tp_start, tp_end) indices into a result's axes


@dataclass(frozen=True)
class SweepSetting:
    """One setting of a sweep and its Spearman x100."""

    template: str  # builtin name or template text
    tp: bool
    tp_start: int  # 0 and 0 when tp is False
    tp_end: int
    exit_layer: int  # hidden_states index
    spearman: float
    versus_plain: PairedDifference | None = None  # this minus the best plain-prompt setting

    @property
    def template_name(self) -> str:
        return template_name(self.template)

    @property
    def layers(self) -> str:
        return f"[{self.tp_start}, {self.tp_end})" if self.tp else "no TP"

    def as_dict(self) -> dict[str, object]:
        return {
            "template": self.template,
            "tp": self.tp,
            "tp_start": self.tp_start if self.tp else None,
            "tp_end": self.tp_end if self.tp else None,
            "exit_layer": self.exit_layer,
            "spearman": _rounded(self.spearman),
            "minus_plain": self.versus_plain.as_dict() if self.versus_plain else None,
        }


def template_name(spec: str) -> str:
    """A builtin template's name, or 'custom' for a template text."""
    return Template.resolve(spec).name


@dataclass(frozen=True)
class CalibrationResult:
    """Spearman x100 over the whole grid, the best settings, and the one to save."""

    templates: tuple[str, ...]  # builtin names or template texts
    tp_starts: tuple[int, ...]
    tp_ends: tuple[int, ...]
    exits: tuple[int, ...]  # hidden_states indices 1..L
    grid: np.ndarray  # (templates, tp_starts, tp_ends, exits); NaN: not a valid or swept setting
    baseline: np.ndarray  # (templates, exits): the plain prompt of each template
    num_layers: int
    pairs: int
    sampled_from: int | None  # pairs in the file when `pairs` were a sample of them
    skipped: int
    ranking: tuple[SweepSetting, ...]  # the best TP settings, best first, each vs best_plain
    best_plain: SweepSetting
    chosen: SweepSetting  # what `record` saves
    outcome: Outcome
    passes: int  # forward passes the sweep ran, each yielding every exit layer

    @property
    def best(self) -> SweepSetting | None:
        """The best TP setting, None when TP was not swept."""
        return self.ranking[0] if self.ranking else None

    def record(self, model: str, pooling: str, data: str) -> CalibrationRecord:
        chosen, best = self.chosen, self.best
        versus = best.versus_plain if best else None
        return CalibrationRecord(
            model=model,
            pooling=pooling,
            template=chosen.template,
            tp_start=chosen.tp_start,
            tp_end=chosen.tp_end,
            exit_layer=chosen.exit_layer,
            num_layers=self.num_layers,
            spearman=round(chosen.spearman, 2),
            baseline_spearman=round(self.best_plain.spearman, 2),
            data=data,
            pairs=self.pairs,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            tp=chosen.tp,
            tp_minus_plain=round(versus.difference, 2) if versus else None,
            tp_minus_plain_low=round(versus.low, 2) if versus else None,
            tp_minus_plain_high=round(versus.high, 2) if versus else None,
        )


def summarise_sweep(
    templates: tuple[str, ...],
    tp_starts: tuple[int, ...],
    tp_ends: tuple[int, ...],
    grid: np.ndarray,
    baseline: np.ndarray,
    tp_similarities: Mapping[TpKey, np.ndarray],
    plain_similarities: Mapping[int, np.ndarray],
    gold: np.ndarray,
    *,
    tp_wanted: bool = True,
    sampled_from: int | None = None,
    skipped: int = 0,
    top: int = TOP,
) -> CalibrationResult:
    """Rank the sweep's settings and choose the one to save.

    `grid` and `baseline` are as in `CalibrationResult`; the similarity arrays (exits, pairs)
    hold each pass's cosine similarity per exit layer and pair, which the bootstrap resamples.
    """
    exits = tuple(range(1, baseline.shape[1] + 1))
    if not np.isfinite(baseline).any():
        raise DataError(
            "no setting gave a defined Spearman correlation (every similarity was equal): "
            "check the model and the data"
        )
    t, x = np.unravel_index(np.nanargmax(baseline), baseline.shape)
    plain_scores = plain_similarities[int(t)][x]
    best_plain = SweepSetting(templates[t], False, 0, 0, exits[x], float(baseline[t, x]))

    finite = np.flatnonzero(np.isfinite(grid))
    order = finite[np.argsort(-grid.ravel()[finite], kind="stable")][:top]
    cells = [np.unravel_index(i, grid.shape) for i in order]
    candidates = [tp_similarities[(int(c[0]), int(c[1]), int(c[2]))][c[3]] for c in cells]
    intervals = paired_bootstraps(candidates, plain_scores, gold) if candidates else []
    ranking = tuple(
        SweepSetting(
            templates[c[0]],
            True,
            tp_starts[c[1]],
            tp_ends[c[2]],
            exits[c[3]],
            float(grid[c]),
            interval,
        )
        for c, interval in zip(cells, intervals, strict=True)
    )

    outcome: Outcome
    if not tp_wanted:
        outcome = "no-tp"
    elif not ranking:
        outcome = "no-slot"
    else:
        versus = ranking[0].versus_plain
        outcome = "tp" if versus is not None and versus.low > 0 else "tp-not-better"
    return CalibrationResult(
        templates=templates,
        tp_starts=tp_starts,
        tp_ends=tp_ends,
        exits=exits,
        grid=grid,
        baseline=baseline,
        num_layers=len(exits),
        pairs=len(gold),
        sampled_from=sampled_from,
        skipped=skipped,
        ranking=ranking,
        best_plain=best_plain,
        chosen=ranking[0] if outcome == "tp" else best_plain,
        outcome=outcome,
        passes=len(tp_similarities) + len(plain_similarities),
    )


def _rounded(value: float) -> float | None:
    return None if np.isnan(value) else round(value, 3)
