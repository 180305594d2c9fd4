"""The compressed vector index for large collections: IVF-PQ, then exact re-ranking.

Above `VectorPolicy.compress_min` vectors a flat index would hold every vector twice in RAM
(SQLite has them on disk already): 10M x 896 float32 is 36 GB. IVF-PQ (Jégou et al., "Product
quantization for nearest neighbor search", TPAMI 2011) keeps one byte per 8 dimensions
(112 bytes for 896 dims, 1/32 of float32) in inverted lists; its distances are approximate, so
a search asks it for a shortlist of `rerank` candidates and scores those again exactly, from
the vectors SQLite holds. Recall then depends on whether the true top 10 reach the shortlist,
not on the quantization error of their scores.

Building streams from SQLite: train on a sample, add block by block, so building needs the
sample and one block in memory, never all vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Fetch = Callable[[np.ndarray], np.ndarray]  # chunk ids -> their exact vectors, in that order

ADD_BLOCK = 65_536  # vectors read from SQLite and added at a time
TRAIN_PER_CELL = 40  # k-means training points per IVF cell (FAISS warns below 39)


def pq_subvectors(dim: int) -> int:
    """Sub-quantizers for `dim`: about one byte per 8 dimensions (the largest divisor of dim
    not above dim / 8)."""
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


def train_ivfpq(sample: np.ndarray, dim: int, nlist: int) -> Any:
    """An empty IVF-PQ index (inner product) trained on `sample`."""
    import faiss

    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(
        quantizer, dim, nlist, pq_subvectors(dim), 8, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.niter = 10
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def sample_ids(ids: np.ndarray, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ids, size=min(len(ids), size), replace=False))


def add_in_blocks(index: Any, ids: np.ndarray, fetch: Fetch) -> None:
    for start in range(0, len(ids), ADD_BLOCK):
        block = ids[start : start + ADD_BLOCK]
        index.add_with_ids(np.ascontiguousarray(fetch(block)), block.astype(np.int64))


def rerank(
    queries: np.ndarray, candidates: np.ndarray, k: int, fetch: Fetch
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k best of each row's candidate ids (-1: none), scored exactly."""
    scores = np.zeros((len(queries), k), dtype=np.float32)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    wanted = np.unique(candidates[candidates >= 0])
    if not len(wanted):
        return scores, out
    vectors = fetch(wanted)
    for row, (query, ids) in enumerate(zip(queries, candidates, strict=True)):
        ids = ids[ids >= 0]
        exact = vectors[np.searchsorted(wanted, ids)] @ query
        best = np.argsort(-exact, kind="stable")[:k]
        scores[row, : len(best)] = exact[best]
        out[row, : len(best)] = ids[best]
    return scores, out


def exact_top_ids(
    ids: np.ndarray, fetch: Fetch, queries: np.ndarray, k: int, block: int = ADD_BLOCK
) -> np.ndarray:
    """Ids of the exact top k of each query over every id, reading vectors block by block."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(ids), block):
        part = ids[start : start + block]
        scores = queries @ fetch(part).T
        scores = np.concatenate([best_scores, scores], axis=1)
        both = np.concatenate([best_ids, np.broadcast_to(part, (len(queries), len(part)))], 1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_ids = np.take_along_axis(both, keep, axis=1)
    return best_ids
