"""The one interface everything above the model depends on.

Indexing, querying, dedupe and clustering only ever call `encode(texts)`, and record
`model_id` and `fingerprint` next to the vectors so that vectors from different settings are
never mixed. Tests that are not about the model use a small deterministic encoder with the same
shape; the real one is `tpsearch.token_prepending.TPEncoder`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    @property
    def model_id(self) -> str:
        """The model the vectors come from (hub id or local path)."""
        ...

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    @property
    def fingerprint(self) -> str:
        """A short hash of every setting that changes the vectors."""
        ...

    @property
    def settings(self) -> Mapping[str, object]:
        """The settings behind `fingerprint`, readable by people (shown by `tpsearch status`)."""
        ...

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length."""
        ...


def fingerprint_of(settings: Mapping[str, object]) -> str:
    """A stable 16-hex-digit hash of JSON-able settings (key order does not matter)."""
    blob = json.dumps(dict(settings), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)
