"""Recall@10 of the approximate (IVF) vector index against exact search, at 1M vectors.

    python benchmarks/ann_recall.py                    # 1M x 896: ~8 GB of memory, minutes
    python benchmarks/ann_recall.py --n 200000 --dim 128
    python benchmarks/ann_recall.py --compressed      # IVF-PQ + exact re-ranking, as above 1M

With --compressed the index is built as a collection above `compress_min` builds it
(`VectorIndex.build_compressed`: IVF-PQ trained on a sample, filled block by block, nprobe tuned
on the re-ranked results), and each search re-scores its shortlist with the exact vectors (read
here from memory; a collection reads them from SQLite). Memory is the index's serialized size,
against the flat index (n x dim float32 + ids). Targets: recall@10 >= 0.95, memory <= 0.15.

Builds the index exactly as a collection does (`VectorIndex.build`: IVF above 100k vectors,
nprobe tuned on leave-one-out queries), then searches held-out queries and compares with the
exact top 10 (blockwise brute force). Synthetic vectors, shaped like text embeddings: a
direction all of them share (unrelated texts still have cosine ~0.3), overlapping clusters in
a low-dimensional subspace, a little noise in every direction; the geometry does not depend on
the dimension. (Uniform random vectors have no neighbours worth the name: every method looks
bad on them and none of it means anything; well-separated clusters make every method look
perfect.) Queries come in two kinds: from the data distribution, and "off" (twice as far from
any centre), like queries unlike any document. Target: recall@10 >= 0.95.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tpsearch.collection.vector_index import (  # noqa: E402
    VectorIndex,
    VectorPolicy,
    exact_neighbours,
    recall_at,
)


def synthetic(
    n: int, dim: int, centres: np.ndarray, basis: np.ndarray, spread: float, seed: int
) -> np.ndarray:
    """n unit vectors: a direction all share, plus a cluster centre and a `spread` around it,
    both in the low-dimensional subspace, plus noise of norm 0.1 in every direction. The
    geometry (norms, overlaps) does not depend on `dim`."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    intrinsic = basis.shape[0]
    shared = basis[0] * 0.6  # anisotropy: unrelated texts still have cosine ~0.3
    for start in range(0, n, 100_000):  # in blocks: no second full-size temporary
        size = min(100_000, n - start)
        local = rng.standard_normal((size, intrinsic)).astype(np.float32) @ basis
        noise = rng.standard_normal((size, dim)).astype(np.float32)
        block = (
            shared
            + centres[rng.integers(0, len(centres), size)]
            + spread / np.sqrt(intrinsic) * local
            + 0.1 / np.sqrt(dim) * noise
        )
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=896)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--intrinsic", type=int, default=48, help="dimension of the subspace")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--compressed", action="store_true", help="IVF-PQ + exact re-ranking")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((args.dim, args.intrinsic)))[0].T.astype(np.float32)
    centres = rng.standard_normal((args.clusters, args.intrinsic)).astype(np.float32) @ basis
    centres *= 0.8 / np.sqrt(args.intrinsic)  # overlapping clusters in the same subspace

    started = time.perf_counter()
    vectors = synthetic(args.n, args.dim, centres, basis, spread=0.4, seed=1)
    ids = np.arange(1, args.n + 1, dtype=np.int64)
    generate_s = time.perf_counter() - started
    started = time.perf_counter()

    def fetch(wanted: np.ndarray) -> np.ndarray:  # ids -> exact vectors, as SQLite gives them
        return vectors[wanted - 1]

    if args.compressed:
        index = VectorIndex.build_compressed(ids, fetch, args.dim, VectorPolicy())
    else:
        index = VectorIndex.build(ids, vectors, args.dim)
    exact = fetch if args.compressed else None
    build_s = time.perf_counter() - started
    print(f"{args.n} x {args.dim} vectors ({args.clusters} clusters, subspace {args.intrinsic}) "
          f"generated in {generate_s:.0f} s; {index.kind} index, nlist {index.nlist}, "
          f"nprobe {index.nprobe} (tuned), built in {build_s:.0f} s")  # fmt: skip

    for name, spread in (("in-distribution", 0.4), ("off-distribution", 0.8)):
        queries = synthetic(args.queries, args.dim, centres, basis, spread=spread, seed=2)
        truth = ids[exact_neighbours(vectors, queries, 10)]
        found = index.search(queries, 10, fetch=exact)[1]
        times = []
        for query in queries[:200]:
            started = time.perf_counter()
            index.search(query[None, :], 10, fetch=exact)
            times.append((time.perf_counter() - started) * 1000)
        p50 = float(np.percentile(times, 50))
        print(f"{name:<17} recall@10 {recall_at(found, truth):.4f}   search p50 {p50:.2f} ms")
    import faiss

    held = faiss.serialize_index(index.index).nbytes
    flat = args.n * (args.dim * 4 + 8)
    print(f"memory: {index.kind} index {held / 2**20:.0f} MiB, flat {flat / 2**20:.0f} MiB "
          f"({held / flat:.3f} of flat)")  # fmt: skip
    print("target: recall@10 >= 0.95" + (", memory <= 0.15 of flat" if args.compressed else ""))


if __name__ == "__main__":
    main()
