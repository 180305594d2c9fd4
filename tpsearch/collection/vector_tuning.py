"""Ground truth and nprobe tuning for the IVF indexes (`vector_index.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tpsearch.collection.vector_compression import Fetch, exact_top_ids, sample_ids

if TYPE_CHECKING:
    from tpsearch.collection.vector_index import VectorIndex, VectorPolicy


def exact_neighbours(
    vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 65536
) -> np.ndarray:
    """Row positions of the exact top-k by inner product (ground truth for recall).

    Block by block, so that a million vectors are not copied into a second index.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), block):
        scores = queries @ vectors[start : start + block].T
        rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        scores = np.concatenate([best_scores, scores], axis=1)
        rows = np.concatenate([best_rows, rows], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_rows = np.take_along_axis(rows, keep, axis=1)
    return best_rows


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true top-k found, over queries."""
    pairs = zip(found, truth, strict=True)
    hits = sum(len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in pairs)
    return hits / truth.size


def tune_nprobe(
    index: VectorIndex, ids: np.ndarray, vectors: np.ndarray, policy: VectorPolicy
) -> int:
    """The smallest nprobe (doubling from a floor) whose recall@10 reaches the target, times
    the margin.

    The queries are stored vectors left out of their own results (leave-one-out): points from
    the collection's own distribution. Real queries (short questions) often lie farther from
    every document cluster, where IVF needs more cells; the margin pays for that.
    """
    k = min(10, len(vectors) - 1)
    rng = np.random.default_rng(policy.seed)
    rows = rng.choice(len(vectors), size=min(len(vectors), policy.tuning_queries), replace=False)
    queries, own = vectors[rows], np.asarray(ids)[rows]
    truth = _without_own(np.asarray(ids)[exact_neighbours(vectors, queries, k + 1)], own, k)
    nprobe = max(1, index.nlist // policy.min_probe_fraction)  # a floor for unlike queries
    while True:
        index.index.nprobe = nprobe
        found = _without_own(index.index.search(queries, k + 1)[1], own, k)
        if nprobe >= index.nlist or recall_at(found, truth) >= policy.tuned_recall:
            return min(index.nlist, nprobe * policy.probe_margin)
        nprobe *= 2


def tune_nprobe_reranked(
    index: VectorIndex, ids: np.ndarray, fetch: Fetch, policy: VectorPolicy
) -> int:
    """`tune_nprobe` for IVF-PQ: recall is that of the re-ranked shortlist, the ground truth
    exact search over every vector (read block by block)."""
    k = min(10, len(ids) - 1)
    own = sample_ids(ids, policy.tuning_queries, policy.seed + 1)
    queries = fetch(own)
    truth = _without_own(exact_top_ids(ids, fetch, queries, k + 1), own, k)
    nprobe = max(1, index.nlist // policy.min_probe_fraction)
    while True:
        index.index.nprobe = nprobe
        found = index.search(queries, k + 1, fetch=fetch, rerank_size=policy.rerank)[1]
        if (
            nprobe >= index.nlist
            or recall_at(_without_own(found, own, k), truth) >= policy.tuned_recall
        ):
            return min(index.nlist, nprobe * policy.probe_margin)
        nprobe *= 2


def _without_own(found: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Each row's first k ids other than the query's own (-1 padded)."""
    out = np.full((len(found), k), -1, dtype=np.int64)
    for row, (ids, skip) in enumerate(zip(found, own, strict=True)):
        kept = ids[ids != skip][:k]
        out[row, : len(kept)] = kept
    return out
