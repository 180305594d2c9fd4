"""A small deterministic encoder for tests where the model is beside the point.

Bag of words with the hashing trick: texts that share words get similar vectors, identical
texts get identical vectors, and nothing needs a model. It satisfies
`tpsearch.engine.encoder.Encoder`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

import numpy as np

from tpsearch.engine.encoder import fingerprint_of, l2_normalise

WORD = re.compile(r"\w+")


class HashingEncoder:
    def __init__(self, dim: int = 64, model_id: str = "test/hashing") -> None:
        self._dim = dim
        self._model_id = model_id
        self.calls = 0  # encode() calls, so tests can tell whether work was redone
        self.texts_encoded = 0

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def settings(self) -> Mapping[str, object]:
        return {"model": self._model_id, "dim": self._dim, "kind": "hashing bag of words"}

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.settings)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dim
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, bucket] += sign
            if not out[row].any():
                out[row, 0] = 1.0  # empty text: a fixed unit vector, never a zero row
        return l2_normalise(out)


class AnisotropicEncoder(HashingEncoder):
    """The hashing encoder's vectors plus one large direction every text shares, as raw
    decoder-LLM hidden states have: unrelated texts score ~0.9 cosine, as on real models."""

    def __init__(self, dim: int = 64, model_id: str = "test/anisotropic", shared: float = 3.0):
        super().__init__(dim, model_id)
        common = np.random.default_rng(7).standard_normal(dim).astype(np.float32)
        self._common = shared * common / np.linalg.norm(common)

    @property
    def settings(self) -> Mapping[str, object]:
        return {**super().settings, "kind": "hashing bag of words + a shared direction"}

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return l2_normalise(super().encode(texts, batch_size) + self._common)


class VaryingAnisotropicEncoder(AnisotropicEncoder):
    """The shared direction with a weight that varies from text to text (as on real models,
    where it tracks length and position): raw and centred cosines then rank differently."""

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        base = HashingEncoder.encode(self, texts, batch_size)
        weights = np.array(
            [1.5 + 3.0 * hashlib.md5(text.encode()).digest()[0] / 255 for text in texts],
            dtype=np.float32,
        )
        direction = self._common / np.linalg.norm(self._common)
        return l2_normalise(base + weights[:, None] * direction)
