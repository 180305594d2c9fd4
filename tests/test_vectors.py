"""The FAISS cache: exact and approximate search, removal by id, atomic saves, sync by id."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from tpsearch.collection.store import Store
from tpsearch.collection.vector_index import (
    VectorIndex,
    VectorPolicy,
    exact_neighbours,
    recall_at,
    sync,
)


def clustered(n: int, dim: int, seed: int, clusters: int = 100) -> np.ndarray:
    """Unit vectors around random centres: closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    points = centres[rng.integers(0, clusters, n)] + 0.8 * rng.standard_normal((n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_exact_search_finds_the_nearest_and_forgets_removed_ids() -> None:
    vectors = clustered(500, 16, seed=0)
    ids = np.arange(10, 510)
    index = VectorIndex.build(ids, vectors, 16)
    assert index.kind == "exact"
    scores, found = index.search(vectors[:3], 5)
    assert found[:, 0].tolist() == [10, 11, 12]
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
    index.remove(np.array([10]))
    assert 10 not in index.search(vectors[:1], 5)[1][0]
    assert index.ids().tolist() == list(range(11, 510))


def test_approximate_index_recall_against_exact_search() -> None:
    dim, n = 32, 20_000
    data = clustered(n + 200, dim, seed=1)
    vectors, queries = data[:n], data[n:]  # held-out queries from the same distribution
    ids = np.arange(1, n + 1)
    index = VectorIndex.build(ids, vectors, dim, VectorPolicy(exact_max=5_000))
    assert index.kind == "ivf" and 1 <= index.nprobe < index.nlist
    truth = ids[exact_neighbours(vectors, queries, 10)]
    assert recall_at(index.search(queries, 10)[1], truth) >= 0.95
    index.remove(ids[:100])  # IVF supports removal too
    assert not set(index.search(vectors[:100], 10)[1].ravel().tolist()) & set(ids[:100].tolist())


@pytest.mark.parametrize("exact_max", [100_000, 1_000])
def test_filtered_search_returns_only_allowed_ids(exact_max: int) -> None:
    vectors = clustered(4_000, 16, seed=2)
    ids = np.arange(4_000)
    index = VectorIndex.build(ids, vectors, 16, VectorPolicy(exact_max=exact_max))
    allowed = np.arange(0, 4_000, 7)
    _, found = index.search(vectors[:5], 10, allowed)
    kept = found[found >= 0]
    assert len(kept) > 0 and set(kept.tolist()) <= set(allowed.tolist())


def test_saves_are_atomic_and_a_corrupt_file_reads_as_missing(tmp_path: Path) -> None:
    path = tmp_path / "vectors-1.faiss"
    index = VectorIndex.build(np.arange(50), clustered(50, 8, seed=3), 8)
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["vectors-1.faiss"]  # no temp file left
    loaded = VectorIndex.load(path)
    assert loaded is not None and loaded.ids().tolist() == list(range(50))
    path.write_bytes(path.read_bytes()[:200])  # truncated, as by a full disk
    assert VectorIndex.load(path) is None
    assert VectorIndex.load(tmp_path / "absent.faiss") is None


def _store_with(tmp_path: Path, vectors: np.ndarray) -> tuple[Store, list[int]]:
    store = Store.open(tmp_path / "tpsearch.db", write=True)
    file = {"size": 1, "mtime_ns": 1, "sha256": "h", "encoding": "utf-8", "format": "text"}
    for row in range(len(vectors)):
        chunk = {"seq": 0, "start_line": 1, "end_line": 1, "start_byte": 0, "end_byte": 1}
        chunk |= {"heading": "", "text": f"t{row}", "tokens": 1}
        store.replace_file({**file, "path": f"f{row}", "indexed_at": "now"}, [chunk])
    ids = [r[0] for r in store.query("SELECT id FROM chunks ORDER BY id")]
    store.add_vectors(ids, vectors)
    return store, ids


def test_sync_follows_sqlite_by_id(tmp_path: Path) -> None:
    vectors = clustered(30, 8, seed=4)
    store, ids = _store_with(tmp_path, vectors)
    index, changed = sync(None, store, 8)
    assert changed and index.ids().tolist() == ids
    assert sync(index, store, 8) == (index, False)
    store.remove_files(["f0", "f1"])
    index, changed = sync(index, store, 8)
    assert changed and index.ids().tolist() == ids[2:]
    other = VectorIndex.build(np.array(ids), np.zeros((30, 4), np.float32), 4)
    rebuilt, changed = sync(other, store, 8)  # another dimension: rebuilt from SQLite
    assert changed and rebuilt.dim == 8 and rebuilt.ids().tolist() == ids[2:]
    store.close()


def test_sync_switches_to_approximate_when_the_collection_grows(tmp_path: Path) -> None:
    store, _ = _store_with(tmp_path, clustered(600, 8, seed=5))
    small = VectorIndex.build(np.zeros(0, np.int64), np.zeros((0, 8), np.float32), 8)
    index, changed = sync(small, store, 8, VectorPolicy(exact_max=500))
    assert changed and index.kind == "ivf" and index.ntotal == 600
    store.close()


def test_filtered_search_on_an_approximate_index_finds_the_true_neighbours() -> None:
    """`query --path` on a large collection: a filter empties most IVF cells, so the search
    must look further (all cells for a small set) to find the true best of the allowed ids."""
    dim, n = 32, 8_000
    data = clustered(n + 50, dim, seed=6)
    vectors, queries = data[:n], data[n:]
    ids = np.arange(1, n + 1)
    index = VectorIndex.build(ids, vectors, dim, VectorPolicy(exact_max=2_000))
    assert index.kind == "ivf"
    rng = np.random.default_rng(0)
    for allowed, wanted in ((np.sort(rng.choice(ids, 40, replace=False)), 1.0), (ids[::3], 0.95)):
        _, found = index.search(queries, 10, allowed)
        truth = allowed[exact_neighbours(vectors[allowed - 1], queries, 10)]
        assert (found >= 0).sum(axis=1).min() == 10  # always k results
        assert recall_at(found, truth) >= wanted, len(allowed)


def test_a_large_collection_gets_a_compressed_index_reranked_exactly(tmp_path: Path) -> None:
    """Above compress_min: IVF-PQ codes in memory (a fraction of the vectors' size), and a
    shortlist re-scored with SQLite's exact vectors, so recall and scores stay exact-like."""
    dim, n = 64, 6_000
    data = clustered(n + 100, dim, seed=7)
    vectors, queries = data[:n], data[n:]
    store, ids_list = _store_with(tmp_path, vectors)
    ids = np.array(ids_list)
    policy = VectorPolicy(exact_max=1_000, compress_min=4_000)
    index, changed = sync(None, store, dim, policy)
    assert changed and index.kind == "ivfpq" and index.ntotal == n
    assert 1 <= index.nprobe <= index.nlist

    exact = functools.partial(store.vectors_for, dim=dim)
    scores, found = index.search(queries, 10, fetch=exact)
    truth = ids[exact_neighbours(vectors, queries, 10)]
    assert recall_at(found, truth) >= 0.95
    best = vectors[np.searchsorted(ids, found[:, 0])]  # scores are exact cosines, not PQ's
    np.testing.assert_allclose(scores[:, 0], np.sum(best * queries, 1), rtol=1e-5)

    path = tmp_path / "vectors-1.faiss"
    index.save(path)
    flat = VectorIndex.build(ids, vectors, dim)  # exact: the vectors themselves
    flat.save(tmp_path / "flat.faiss")
    assert path.stat().st_size <= 0.15 * (tmp_path / "flat.faiss").stat().st_size
    loaded = VectorIndex.load(path)
    assert loaded is not None and loaded.kind == "ivfpq"
    assert loaded.suits(n, policy) and not loaded.suits(1_500, policy)  # shrunk: IVF again

    store.remove_files(["f0", "f1"])  # removal by id works on IVF-PQ too
    index, changed = sync(loaded, store, dim, policy)
    assert changed and index.kind == "ivfpq" and index.ids().tolist() == ids_list[2:]
    store.close()
