"""Semantic near-duplicates on hand-built vectors whose true pairs are known."""

from __future__ import annotations

import numpy as np
import pytest

from tpsearch.analysis import Embeddings, Pairs, pool_by_owner, semantic_pairs


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def at_cosine(x: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector with exactly `cosine` to the unit vector x."""
    noise = rng.standard_normal(x.shape)
    noise -= (noise @ x) * x
    return unit(cosine * x + np.sqrt(1 - cosine**2) * unit(noise))


def planted(
    n: int, dim: int, cosines: list[float], seed: int = 0
) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """n random unit vectors; the last len(cosines) are copies of the first ones at those
    cosines. Random vectors in 32+ dimensions are nowhere near each other (|cos| < 0.8)."""
    rng = np.random.default_rng(seed)
    x = unit(rng.standard_normal((n, dim)))
    pairs = {}
    for k, cosine in enumerate(cosines):
        copy = n - len(cosines) + k
        x[copy] = at_cosine(x[k], cosine, rng)
        pairs[(k, copy)] = cosine
    return x, pairs


def as_dict(found: Pairs) -> dict[tuple[int, int], float]:
    return {
        (int(a), int(b)): float(s)
        for a, b, s in zip(found.left, found.right, found.similarity, strict=True)
    }


def test_exact_search_finds_the_pairs_above_the_threshold_and_no_others() -> None:
    above = [0.951, 0.96, 0.97, 0.98, 0.99, 0.999]
    below = [0.90, 0.93, 0.945]
    x, pairs = planted(400, 32, above + below)

    found = as_dict(semantic_pairs(x, 0.95))

    expected = {p: c for p, c in pairs.items() if c >= 0.95}
    assert found.keys() == expected.keys()
    for pair, cosine in expected.items():
        assert found[pair] == pytest.approx(cosine, abs=1e-5)


def test_cell_search_at_scale_finds_every_planted_pair() -> None:
    """Past `exact_up_to` rows the search goes through k-means cells, not all pairs."""
    rng = np.random.default_rng(1)
    cosines = list(rng.uniform(0.951, 0.995, 150))
    x, pairs = planted(8000, 48, cosines, seed=1)

    found = as_dict(semantic_pairs(x, 0.95, exact_up_to=1000))

    assert found.keys() == pairs.keys()
    for (a, b), cosine in found.items():
        assert cosine == pytest.approx(float(x[a] @ x[b]), abs=1e-5)


def test_identical_vectors_are_linked_once_each_not_all_pairs() -> None:
    rng = np.random.default_rng(2)
    x = unit(rng.standard_normal((250, 32)))
    x[50:] = x[0]  # 200 copies of one vector: boilerplate in many files
    found = semantic_pairs(x, 1.0)  # threshold 1.0 still matches identical vectors
    assert len(found) == 200  # a star from the first copy, not 200 * 201 / 2 pairs
    assert set(found.left.tolist()) == {0}
    assert np.all(found.similarity == 1.0)


def test_fewer_than_two_vectors_have_no_pairs() -> None:
    assert len(semantic_pairs(np.empty((0, 8), np.float32), 0.9)) == 0
    assert len(semantic_pairs(unit(np.ones((1, 8))), 0.9)) == 0


def test_file_vectors_are_the_normalised_mean_of_their_chunks() -> None:
    rng = np.random.default_rng(3)
    chunks = unit(rng.standard_normal((5, 16)))
    pooled = pool_by_owner(Embeddings(np.arange(5), chunks), np.array([7, 7, 9, 7, 9]))
    assert pooled.ids.tolist() == [7, 9]
    expected = unit(np.stack([chunks[[0, 1, 3]].mean(0), chunks[[2, 4]].mean(0)]))
    np.testing.assert_allclose(pooled.vectors, expected, atol=1e-6)


def test_embeddings_reject_vectors_that_would_give_wrong_cosines() -> None:
    with pytest.raises(ValueError, match="L2-normalised"):
        Embeddings(np.arange(2), np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="unique"):
        Embeddings(np.array([1, 1]), unit(np.ones((2, 4))))
    with pytest.raises(ValueError, match="do not match"):
        Embeddings(np.arange(3), unit(np.ones((2, 4))))
    rows = Embeddings(np.array([10, 30, 20]), unit(np.eye(3))).rows_for([20, 99, 10])
    assert rows.tolist() == [2, -1, 0]  # -1: that item has no vector (pending)
