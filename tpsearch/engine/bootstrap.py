"""Spearman's rank correlation and a paired bootstrap for the difference of two of them.

On a few hundred sentence pairs a Spearman correlation moves by several points from one
sample to the next, so "TP scored 2 points higher" means little by itself. The paired
bootstrap (Efron & Tibshirani 1993, ch. 13; as in Koehn 2004 for MT metrics) resamples the
pairs with replacement, scores both methods on the *same* resample, and takes the percentile
interval of the difference: when it excludes zero, the difference is unlikely to be noise.

Pure numpy: arrays in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
CONFIDENCE = 0.95
_CHUNK = 250  # resamples ranked at once: (chunk, N) arrays stay small


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank); NaN when either is constant."""
    return float(_row_spearman(np.asarray(x, np.float64)[None], np.asarray(y, np.float64)[None])[0])


@dataclass(frozen=True)
class PairedDifference:
    """Spearman x100 of method A minus method B on the same pairs, with a bootstrap interval."""

    difference: float  # on all the pairs, x100
    low: float  # the interval's ends, x100 (percentile bootstrap)
    high: float
    confidence: float  # 0.95
    resamples: int
    seed: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def verdict(self) -> str:
        """'better', 'worse' or 'no clear difference' (A compared with B)."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no clear difference"

    def describe(self) -> str:
        """'+3.0 [+0.9, +5.2]' in points of Spearman x100."""
        return f"{self.difference:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"

    def as_dict(self) -> dict[str, object]:
        return {
            "difference": _rounded(self.difference),
            "low": _rounded(self.low),
            "high": _rounded(self.high),
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "excludes_zero": self.excludes_zero,
            "verdict": self.verdict,
        }


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    gold: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> PairedDifference:
    """100 x (Spearman(a, gold) - Spearman(b, gold)) and its percentile bootstrap interval.

    `a` and `b` (e.g. two methods' cosine similarities) and `gold` hold one value per pair
    (N,). Each resample draws N pairs with replacement and recomputes both correlations on it;
    resamples where a correlation is undefined (all values equal) are left out. The same seed
    draws the same resamples, so intervals of several methods against one baseline compare.
    """
    return paired_bootstraps([a], b, gold, resamples, seed, confidence)[0]


def paired_bootstraps(
    candidates: Sequence[np.ndarray],
    b: np.ndarray,
    gold: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> list[PairedDifference]:
    """`paired_bootstrap` of each candidate against one baseline `b`, on the same resamples
    (the ranks of the gold scores and of the baseline are computed once per resample)."""
    gold, b = np.asarray(gold, dtype=np.float64), np.asarray(b, dtype=np.float64)
    values = [np.asarray(a, dtype=np.float64) for a in candidates]
    if gold.ndim != 1 or any(v.shape != gold.shape for v in (b, *values)):
        raise ValueError(f"one value per pair expected: {len(gold)} gold scores")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError("at least one resample and a confidence between 0 and 1 are needed")
    rng = np.random.default_rng(seed)
    differences: list[list[np.ndarray]] = [[] for _ in values]
    for start in range(0, resamples, _CHUNK):
        draws = rng.integers(0, len(gold), size=(min(_CHUNK, resamples - start), len(gold)))
        gold_ranks = _row_ranks(gold[draws])
        plain = _rank_correlation(_row_ranks(b[draws]), gold_ranks)
        for found, a in zip(differences, values, strict=True):
            found.append(100.0 * (_rank_correlation(_row_ranks(a[draws]), gold_ranks) - plain))
    baseline = spearman(b, gold)
    results = []
    for found, a in zip(differences, values, strict=True):
        spread = np.concatenate(found)
        spread = spread[np.isfinite(spread)]
        low = high = math.nan
        if spread.size:
            tail = 100.0 * (1 - confidence) / 2
            low, high = (float(v) for v in np.percentile(spread, [tail, 100.0 - tail]))
        observed = 100.0 * (spearman(a, gold) - baseline)
        results.append(PairedDifference(observed, low, high, confidence, resamples, seed))
    return results


def _row_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _rank_correlation(_row_ranks(x), _row_ranks(y))


def _rank_correlation(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ranks (R, N) with the same row of the other; NaN
    where a row is constant."""
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    denominator = np.sqrt(np.einsum("rn,rn->r", rx, rx) * np.einsum("rn,rn->r", ry, ry))
    numerator = np.einsum("rn,rn->r", rx, ry)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _row_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of each row (R, N), ties sharing their average rank."""
    rows, n = values.shape
    order = np.argsort(values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    position = np.broadcast_to(np.arange(n), (rows, n))
    starts_run = np.ones((rows, n), dtype=bool)  # first of a run of equal values
    starts_run[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends_run = np.ones((rows, n), dtype=bool)
    ends_run[:, :-1] = starts_run[:, 1:]
    run_start = np.maximum.accumulate(np.where(starts_run, position, 0), axis=1)
    run_end = np.minimum.accumulate(np.where(ends_run, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((rows, n), dtype=np.float64)
    np.put_along_axis(ranks, order, (run_start + run_end) / 2.0 + 1.0, axis=1)
    return ranks


def _rounded(value: float) -> float | None:
    """JSON has no NaN: an undefined value is null."""
    return None if math.isnan(value) else round(value, 3)
