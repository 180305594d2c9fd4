"""What the analysis functions take: text items and the embeddings of some of them.

An item is whatever is being compared: a whole file (`--level file`) or one chunk of a file
(`--level chunk`). Vectors travel separately, keyed by item id, because at 100k chunks a
matrix is the only sane shape for them and because some items may not be embedded yet.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WORD = re.compile(r"\w+")

# Rows further than this from unit length were not L2-normalised: cosine would be wrong.
_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class TextItem:
    """One unit to compare: a whole file, or one chunk of a file with its line range."""

    id: int  # stable id from the store (file id or chunk id); orders everything for determinism
    path: str  # as shown to the user, relative to the collection root
    text: str
    size: int  # bytes that removing this item would free: the file size, or the chunk's UTF-8 bytes
    mtime: float  # modification time of the file the item comes from (seconds since the epoch)
    start_line: int = 1  # 1-based, inclusive
    end_line: int | None = None  # inclusive; None: to the end of the file (a whole file)
    # SHA-256 of the item's exact bytes when known (whole files): what "identical" means
    # when whitespace counts, since `text` may be rebuilt from stored chunks.
    digest: str | None = None

    def identity(self, whitespace: bool) -> str:
        """What exact matching compares: the text (whitespace runs collapsed when `whitespace`
        is True), or the digest of the exact bytes when whitespace counts and it is known."""
        if whitespace:
            return normalise_whitespace(self.text)
        return f"sha256:{self.digest}" if self.digest else self.text

    @property
    def location(self) -> str:
        """`path` for a whole file, `path:start-end` for a chunk."""
        if self.end_line is None:
            return self.path
        return f"{self.path}:{self.start_line}-{self.end_line}"


@dataclass(frozen=True, eq=False)
class Embeddings:
    """Unit-length vectors of some items, row `r` belonging to item `ids[r]`."""

    ids: np.ndarray  # (m,) int64 item ids, unique
    vectors: np.ndarray  # (m, d) float32, rows of unit length (cosine = inner product)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError(f"vectors {vectors.shape} do not match {len(ids)} ids: need (m, d)")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("embedding ids must be unique")
        if len(vectors):
            norms = np.linalg.norm(vectors, axis=1)
            if np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
                raise ValueError("embedding rows must be L2-normalised (unit length)")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "vectors", vectors)

    @classmethod
    def empty(cls, dim: int = 0) -> Embeddings:
        return cls(np.empty(0, dtype=np.int64), np.empty((0, dim), dtype=np.float32))

    def rows_for(self, item_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row of each item id, or -1 where that item has no vector (pending)."""
        wanted = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        if len(self.ids) == 0:
            return np.full(len(wanted), -1, dtype=np.int64)
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, wanted), 0, len(sorted_ids) - 1)
        return np.where(sorted_ids[pos] == wanted, order[pos], -1)

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """`vectors[rows]`, without copying when `rows` is every row in order (the usual
        case, and 358 MB at 100k x 896)."""
        if len(rows) == len(self.vectors) and np.array_equal(rows, np.arange(len(rows))):
            return self.vectors
        return self.vectors[rows]


def pool_by_owner(embeddings: Embeddings, owner_of: np.ndarray) -> Embeddings:
    """File vectors from chunk vectors: the mean of each file's chunks, L2-normalised again.

    `owner_of[r]` is the file id of chunk row `r`. The mean is the usual document vector
    built from passage vectors; pass only the chunks of files that are fully embedded, or a
    file is judged by part of its text.
    """
    owner_of = np.asarray(owner_of, dtype=np.int64).reshape(-1)
    if len(owner_of) != len(embeddings.ids):
        raise ValueError("owner_of needs one file id per embedding row")
    owners, inverse = np.unique(owner_of, return_inverse=True)
    sums = np.zeros((len(owners), embeddings.vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, embeddings.vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    has_direction = norms[:, 0] > 1e-12  # chunks that cancel out leave no direction to compare
    pooled = (sums[has_direction] / norms[has_direction]).astype(np.float32)
    return Embeddings(owners[has_direction], pooled)


def normalise_whitespace(text: str) -> str:
    """Runs of whitespace (spaces, tabs, newlines) as one space, ends stripped."""
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Lower-cased words, the unit that lexical similarity and labels count."""
    return WORD.findall(text.lower())


def has_words(text: str, count: int) -> bool:
    """Whether `text` has at least `count` words (stops counting there)."""
    return sum(1 for _ in itertools.islice(WORD.finditer(text), count)) >= count


def vector_key(row: np.ndarray) -> bytes:
    """A digest of one vector's exact bytes: identical vectors, identical keys."""
    return hashlib.blake2b(np.ascontiguousarray(row).data, digest_size=16).digest()
