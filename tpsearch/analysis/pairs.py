"""Similar pairs of rows, the evidence duplicate groups are built from.

Each finder takes plain sequences or arrays and returns `Pairs` over row positions: exact
(a hash of the content), and semantic (cosine of embeddings through FAISS range search).
The lexical finder lives in `lexical.py`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tpsearch.analysis._threads import threads_for
from tpsearch.analysis.items import normalise_whitespace, vector_key

# Cosines come out of float32 arithmetic: identical unit vectors can score 0.99999994.
_FLOAT_SLACK = 1e-6


class TooManyPairs(Exception):
    """A threshold so low that nearly everything pairs with everything: stopped early, before
    the pairs fill the memory."""


class PairBudget:
    """Counts pairs as a finder produces them; past `limit` (None: no limit) it stops it."""

    def __init__(self, limit: int | None) -> None:
        self.limit, self.used = limit, 0

    def take(self, count: int) -> None:
        self.used += count
        if self.limit is not None and self.used > self.limit:
            raise TooManyPairs(f"more than {self.limit} pairs")


@dataclass(frozen=True, eq=False)
class Pairs:
    """Pairs of rows, each once, with `left < right`, sorted, and their similarity."""

    left: np.ndarray  # (p,) int64
    right: np.ndarray  # (p,) int64
    similarity: np.ndarray  # (p,) float32

    @classmethod
    def of(cls, a: np.ndarray, b: np.ndarray, similarity: np.ndarray | float) -> Pairs:
        """Canonical pairs from raw ones: ordered, self-pairs dropped, repeats kept once."""
        a = np.asarray(a, dtype=np.int64).reshape(-1)
        b = np.asarray(b, dtype=np.int64).reshape(-1)
        sim = np.broadcast_to(np.asarray(similarity, dtype=np.float32), a.shape)
        keep = a != b
        left, right, sim = np.minimum(a, b)[keep], np.maximum(a, b)[keep], sim[keep]
        # Highest similarity first within each pair, so np.unique keeps it.
        order = np.lexsort((-sim, right, left))
        left, right, sim = left[order], right[order], sim[order]
        first = np.ones(len(left), dtype=bool)
        first[1:] = (left[1:] != left[:-1]) | (right[1:] != right[:-1])
        return cls(left[first], right[first], sim[first])

    @classmethod
    def empty(cls) -> Pairs:
        return cls.of(np.empty(0), np.empty(0), np.empty(0))

    @classmethod
    def concat(cls, parts: Sequence[Pairs]) -> Pairs:
        if not parts:
            return cls.empty()
        return cls.of(
            np.concatenate([p.left for p in parts]),
            np.concatenate([p.right for p in parts]),
            np.concatenate([p.similarity for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.left)

    def through(self, rows: np.ndarray) -> Pairs:
        """The same pairs with positions mapped through `rows` (a subset back to the whole)."""
        rows = np.asarray(rows, dtype=np.int64)
        return Pairs.of(rows[self.left], rows[self.right], self.similarity)


def exact_pairs(texts: Sequence[str], *, whitespace: bool = True) -> Pairs:
    """Rows with identical content (SHA-256), optionally after `normalise_whitespace`.

    Each set of identical rows is linked as a star from its first row: enough to connect
    them, and linear in the set size where all pairs would be quadratic.
    """
    first_row: dict[bytes, int] = {}
    left: list[int] = []
    right: list[int] = []
    for row, text in enumerate(texts):
        content = normalise_whitespace(text) if whitespace else text
        digest = hashlib.sha256(content.encode("utf-8", "surrogatepass")).digest()
        first = first_row.setdefault(digest, row)
        if first != row:
            left.append(first)
            right.append(row)
    return Pairs.of(np.array(left), np.array(right), 1.0)


def semantic_pairs(
    vectors: np.ndarray,
    threshold: float,
    *,
    nprobe: int = 4,
    exact_up_to: int = 5000,
    seed: int = 0,
    max_pairs: int | None = None,
) -> Pairs:
    """Rows whose unit vectors have cosine >= `threshold`, by FAISS range search.

    TooManyPairs when more than `max_pairs` pairs come up.

    Up to `exact_up_to` rows every pair is compared (flat index, exact). Beyond that the
    rows are split into `nlist` cells by spherical k-means (an IVF layout) and each row is
    compared with the rows of its `nprobe` nearest cells. Near-duplicates sit so close
    together that they share a cell, or a neighbouring one: on 100k isotropic synthetic
    vectors (the hardest case for cells) nprobe=2 already found 99.5% of planted pairs with
    cosine 0.95-0.995, and nprobe=4 found all of them (benchmarks/bench_analysis.py).

    The search runs cell by cell (all queries probing a cell against its members) rather
    than query by query as `IndexIVFFlat.range_search` does: every distance then comes from
    a BLAS matrix product (100k x 896, nprobe 4, shared 2-core machine: 9 s against 48 s
    for `IndexIVFFlat.range_search` with the same cells). `nlist = sqrt(nprobe n)`
    balances the two costs, assigning rows to cells (n nlist) and scanning them
    (n nprobe n / nlist).

    Identical vectors (the same boilerplate passage in many files) are searched once and
    linked to their first copy, so they cannot blow up into all-pairs results.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    representative, distinct = _distinct_rows(x)
    copies = np.flatnonzero(representative != np.arange(len(x)))
    identical = Pairs.of(representative[copies], copies, 1.0)
    if len(distinct) < 2:
        return identical
    searched = x if len(distinct) == len(x) else x[distinct]  # no copy in the usual case
    budget = PairBudget(max_pairs)
    if len(distinct) <= exact_up_to:
        found = _flat_pairs(searched, threshold, budget)
    else:
        found = _cell_pairs(searched, threshold, budget, nprobe=nprobe, seed=seed)
    return Pairs.concat([identical, found.through(distinct)])


def _distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row the first row with the same bytes, and the rows that come first."""
    first_row: dict[bytes, int] = {}
    representative = np.empty(len(x), dtype=np.int64)
    for row in range(len(x)):
        representative[row] = first_row.setdefault(vector_key(x[row]), row)
    return representative, np.flatnonzero(representative == np.arange(len(x)))


def _flat_pairs(x: np.ndarray, threshold: float, budget: PairBudget, batch: int = 4096) -> Pairs:
    """All pairs above the threshold, exactly (n^2 d work: for small n)."""
    parts = []
    for start in range(0, len(x), batch):
        rows = np.arange(start, min(start + batch, len(x)))
        parts.append(_range_search(x, x[rows], rows, threshold))
        budget.take(len(parts[-1]))
    return Pairs.concat(parts)


def _cell_pairs(
    x: np.ndarray, threshold: float, budget: PairBudget, *, nprobe: int, seed: int
) -> Pairs:
    import faiss

    n, dim = x.shape
    nlist = max(1, min(n, round(math.sqrt(nprobe * n))))
    nprobe = min(nprobe, nlist)
    # The cells only route the search (every candidate is scored exactly), so a quick
    # k-means on a sample is enough: 32 points per cell, 10 iterations.
    kmeans = faiss.Kmeans(
        dim,
        nlist,
        niter=10,
        seed=seed,
        spherical=True,
        min_points_per_centroid=1,
        max_points_per_centroid=32,
    )
    kmeans.train(x)
    _, probes = kmeans.index.search(x, nprobe)  # (n, nprobe) nearest cells, nearest first
    home = probes[:, 0]
    parts = []
    with threads_for(nprobe * n / nlist * n / nlist * dim):  # a typical cell's work
        for members, queries in _cells(home, probes, nlist):
            parts.append(_range_search(x[members], x[queries], queries, threshold, members))
            budget.take(len(parts[-1]))
    return Pairs.concat(parts)


def _cells(
    home: np.ndarray, probes: np.ndarray, nlist: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each non-empty cell: its member rows, and the rows that probe it."""
    by_home = np.argsort(home, kind="stable")
    home_bounds = np.searchsorted(home[by_home], np.arange(nlist + 1))
    probed_cell = probes.reshape(-1)
    probing_row = np.repeat(np.arange(len(probes)), probes.shape[1])
    by_cell = np.argsort(probed_cell, kind="stable")
    probe_bounds = np.searchsorted(probed_cell[by_cell], np.arange(nlist + 1))
    for cell in range(nlist):
        members = by_home[home_bounds[cell] : home_bounds[cell + 1]]
        if len(members):
            yield members, probing_row[by_cell[probe_bounds[cell] : probe_bounds[cell + 1]]]


def _range_search(
    base: np.ndarray,
    queries: np.ndarray,
    query_rows: np.ndarray,
    threshold: float,
    base_rows: np.ndarray | None = None,
) -> Pairs:
    """Pairs (query row, base row) with inner product >= threshold, via IndexFlatIP."""
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    lims, sims, hits = index.range_search(np.ascontiguousarray(queries), threshold - _FLOAT_SLACK)
    bounds = np.asarray(lims, dtype=np.int64)  # faiss returns them as uint64
    counts = bounds[1:] - bounds[:-1]
    rows = np.repeat(np.asarray(query_rows, dtype=np.int64), counts)
    found = hits if base_rows is None else np.asarray(base_rows, dtype=np.int64)[hits]
    return Pairs.of(rows, found, np.minimum(sims, 1.0))
