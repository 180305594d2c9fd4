"""The corrected vector space: a collection's vectors minus their mean, unit length again.

Raw hidden states of decoder LLMs are anisotropic: every vector shares one large common
direction, so unrelated passages score 0.85-0.95 cosine and no fixed threshold can tell a
copy from a neighbour (Ethayarajh, 2019; Su et al., 2021, "Whitening sentence
representations"). Subtracting the collection's mean vector removes that shared direction:
in the centred space two unrelated chunks score about 0 (median -0.09 on the FastAPI docs
with SmolLM2-135M, -0.02 with Gemma 3 270M), and a cosine means the same on both models
(README "How scores read"; figures in benchmarks/search_quality.py).

Whitening (the mean plus a PCA scaling) was measured too and not kept: on the FastAPI docs
it moved file retrieval by less than its noise (MRR@10 0.50 -> 0.53 with eigenvalue power
-1/4, 0.43 with full whitening) and lowered the similarity of planted near-copies more than
that of distinct pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SPACE_KIND = "centred"
_TINY = 1e-12


@dataclass(frozen=True)
class VectorSpace:
    """Centring on `mean`: the correction applied to stored vectors and queries alike."""

    mean: np.ndarray  # (d,) float32: mean of the collection's unit chunk vectors
    fitted_on: int  # how many vectors the mean was taken over

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, d) unit vectors -> (n, d) unit vectors of the centred space.

        A vector equal to the mean has no direction left; it stays as it was (a collection
        of one vector, or many identical ones), so every row keeps unit length.
        """
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        centred = vectors - self.mean
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        flat = norms[:, 0] <= _TINY
        out = centred / np.where(flat[:, None], 1.0, norms)
        out[flat] = vectors[flat]
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": SPACE_KIND,
            "fitted_on": self.fitted_on,
            "mean": [float(x) for x in self.mean],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VectorSpace | None:
        """The space stored by `to_dict`; None when it is of another kind or malformed."""
        if not isinstance(data, dict) or data.get("kind") != SPACE_KIND:
            return None
        try:
            mean = np.asarray(data["mean"], dtype=np.float32).reshape(-1)
            fitted_on = int(data["fitted_on"])
        except (KeyError, TypeError, ValueError):
            return None
        if not len(mean) or not np.isfinite(mean).all():
            return None
        return cls(mean, fitted_on)


def fit_space(vectors: np.ndarray) -> VectorSpace:
    """The centred space of (n, d) unit vectors (n >= 1)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or not len(vectors):
        raise ValueError("a vector space is fitted on at least one (n, d) vector")
    mean = vectors.astype(np.float64).mean(axis=0).astype(np.float32)
    return VectorSpace(mean, len(vectors))
