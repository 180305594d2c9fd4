"""Ranking metrics with binary relevance: recall@k, MRR@k and nDCG@k over one ranked list.

Pure functions: a ranking is a sequence of item keys, best first (a key may repeat; only its
first place counts), and `relevant` is the set of keys that answer the query. Every metric is
in [0, 1]; averaged over queries they give the figures of `tpsearch eval retrieval`.

nDCG follows Järvelin & Kekäläinen (2002) with gain 1 for a relevant item and discount
1 / log2(rank + 1); the ideal ranking puts min(|relevant|, k) relevant items first.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass, fields

from tpsearch.errors import DataError

DEPTH = 10  # the cut-off of MRR and nDCG, and the deepest recall


@dataclass(frozen=True)
class RankingScores:
    """The metrics of one query, or their means over several."""

    recall_1: float
    recall_5: float
    recall_10: float
    mrr_10: float
    ndcg_10: float

    def as_dict(self) -> dict[str, float]:
        """Keys as people write them: 'R@1', 'MRR@10', ..."""
        return {label: getattr(self, name) for name, label in METRIC_LABELS.items()}


METRIC_LABELS = {
    "recall_1": "R@1",
    "recall_5": "R@5",
    "recall_10": "R@10",
    "mrr_10": "MRR@10",
    "ndcg_10": "nDCG@10",
}


def _first_places(ranked: Sequence[Hashable], k: int) -> list[Hashable]:
    """The first k distinct keys of a ranking (a later repeat of a key is no new result)."""
    if k < 1:
        raise DataError(f"a metric cut-off must be at least 1, got {k}")
    return list(dict.fromkeys(ranked))[:k]


def _check(relevant: Collection[Hashable]) -> None:
    if not relevant:
        raise DataError("a judged query needs at least one relevant item to be scored")


def recall_at(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """The share of the relevant items found in the first k places."""
    _check(relevant)
    found = sum(1 for key in _first_places(ranked, k) if key in relevant)
    return found / len(relevant)


def reciprocal_rank(
    ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = DEPTH
) -> float:
    """1 / the place of the first relevant item, 0 when none is in the first k."""
    _check(relevant)
    for place, key in enumerate(_first_places(ranked, k), start=1):
        if key in relevant:
            return 1.0 / place
    return 0.0


def ndcg_at(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = DEPTH) -> float:
    """Discounted cumulative gain of the first k places over that of the ideal ranking."""
    _check(relevant)
    gain = sum(
        1.0 / math.log2(place + 1)
        for place, key in enumerate(_first_places(ranked, k), start=1)
        if key in relevant
    )
    ideal = sum(1.0 / math.log2(place + 1) for place in range(1, min(len(relevant), k) + 1))
    return gain / ideal


def first_relevant_place(ranked: Sequence[Hashable], relevant: Collection[Hashable]) -> int | None:
    """The 1-based place of the first relevant item, or None when there is none."""
    for place, key in enumerate(dict.fromkeys(ranked), start=1):
        if key in relevant:
            return place
    return None


def score_ranking(ranked: Sequence[Hashable], relevant: Collection[Hashable]) -> RankingScores:
    """Every metric of one query."""
    return RankingScores(
        recall_1=recall_at(ranked, relevant, 1),
        recall_5=recall_at(ranked, relevant, 5),
        recall_10=recall_at(ranked, relevant, DEPTH),
        mrr_10=reciprocal_rank(ranked, relevant, DEPTH),
        ndcg_10=ndcg_at(ranked, relevant, DEPTH),
    )


def mean_scores(scores: Sequence[RankingScores]) -> RankingScores:
    """The mean of each metric over queries (each query weighs the same)."""
    if not scores:
        raise DataError("no query to average: the judged file has no usable query")
    names = [f.name for f in fields(RankingScores)]
    return RankingScores(
        **{name: sum(getattr(s, name) for s in scores) / len(scores) for name in names}
    )
