"""The FAISS index of one open collection, kept between calls.

SQLite holds every vector; `vectors-N.faiss` (N: the epoch, bumped by --reembed) is a cache of
them that `tpsearch index` saves. A writer brings the index in step with SQLite by id (adding,
removing, rebuilding or retraining when its kind no longer suits the size) and saves it, at the
end of a run and from time to time during a long one. A reader never builds or trains: it
searches the saved index without the ids SQLite no longer has, plus an exact search over the
vectors SQLite has and the file lacks (added since the save, by a writer still running or one
that died). So a query costs about the same whatever a writer is doing.

Before a file is saved, SQLite's state is made durable (a FULL-synchronous commit puts the WAL,
with every earlier commit, on disk). So even a power cut cannot leave a saved file holding a
chunk id that the database lost and could hand out again for another chunk.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tpsearch.collection.store import Store
from tpsearch.collection.vector_index import VectorIndex, VectorPolicy, sync

# During a run, save at most this often, and spend at most a tenth of the time saving.
SAVE_EVERY_SECONDS = 60.0
SAVE_TIME_SHARE = 0.1


def _stamp(path: Path) -> tuple[str, int, int] | None:
    """Which file, and which version of it (mtime, size); None when there is none."""
    try:
        info = path.stat()
    except OSError:
        return None
    return path.name, info.st_mtime_ns, info.st_size


def _file_record(stamp: tuple[str, int, int] | None, held: np.ndarray) -> dict[str, list[Any]]:
    """What `saved_in_step` compares: the file's stamp and the digest of the ids it holds."""
    top = int(held.max()) if len(held) else 0
    return {"stamp": list(stamp or ()), "holds": [len(held), top]}


@dataclass(frozen=True)
class _Unsaved:
    """What a reader adds to, and takes from, the index it loaded."""

    version: tuple[int, int]  # the database version it was computed at
    index: VectorIndex | None  # the index it was computed for
    ids: np.ndarray  # vectors in SQLite, not in the index
    vectors: np.ndarray
    removed: np.ndarray  # ids in the index, gone from SQLite


class VectorCache:
    """The vector index of one collection folder, loaded once and reloaded when it changes."""

    def __init__(self, folder: Path, store: Store, policy: VectorPolicy | None = None) -> None:
        self.folder, self.store = folder, store
        self.policy = policy or VectorPolicy()
        self._index: VectorIndex | None = None
        self._stamp: tuple[str, int, int] | None = None  # the file it was loaded from
        self._held: np.ndarray | None = None  # the ids it holds, sorted
        self._unsaved_changes = False  # writers: it differs from that file
        self._synced: tuple[int, int] | None = None  # writers: database version at the last sync
        self._unsaved: _Unsaved | None = None  # readers
        self._saved_at = time.monotonic()
        self._save_seconds = 0.0

    def epoch(self) -> int:
        """Bumped by --reembed, so that each generation of vectors has its own FAISS file."""
        return int(self.store.get_meta("vectors_epoch", 1))

    def path(self, epoch: int | None = None) -> Path:
        return self.folder / f"vectors-{self.epoch() if epoch is None else epoch}.faiss"

    def _load(self) -> None:
        """Load the saved file again whenever it changed on disk (a writer saved a newer one,
        or it was damaged); a writer's unsaved index stays, as its file does not change."""
        path = self.path()
        stamp = _stamp(path)
        if stamp != self._stamp:  # a file that cannot be read loads as None, once
            self._set(VectorIndex.load(path) if self._wrote_one() else None, changed=False)
            self._stamp = stamp

    def _wrote_one(self) -> bool:
        """Whether this database ever saved a vector file (`save` records it before writing).
        A file left beside a new database (tpsearch.db deleted to start again) holds another
        database's chunk ids, which the new one numbers from 1 again: never use it."""
        return self.store.get_meta("vector_index") is not None

    def _set(self, index: VectorIndex | None, changed: bool) -> None:
        self._index, self._held = index, None
        self._unsaved_changes, self._synced, self._unsaved = changed, None, None

    def _held_ids(self) -> np.ndarray:
        if self._held is None:
            self._held = self._index.ids() if self._index is not None else np.zeros(0, np.int64)
        return self._held

    # --- writers -----------------------------------------------------------------------------

    def in_step(self, dim: int) -> VectorIndex:
        """The index in step with SQLite, topped up or rebuilt in memory (call inside a
        snapshot). Writers only: it may train a new IVF index."""
        self._load()
        version = self.store.version()
        if self._index is None or version != self._synced:  # else nothing changed
            index, changed = sync(self._index, self.store, dim, self.policy)
            if index is not self._index or changed:
                self._set(index, changed=self._unsaved_changes or changed)
            self._synced = version
        assert self._index is not None
        return self._index

    def save(self) -> None:
        """Write the index if the file on disk differs from it (writers only; call right after
        `in_step`), and record what the file holds for `saved_in_step`."""
        path = self.path()
        index = self._index
        if index is None:
            return
        if self._unsaved_changes or _stamp(path) != self._stamp or not path.exists():
            started = time.monotonic()
            self.store.set_meta_durably(vector_index=index.describe())  # first: see docstring
            index.save(path)
            self._stamp, self._unsaved_changes = _stamp(path), False
            self._saved_at = time.monotonic()
            self._save_seconds = self._saved_at - started
        record = _file_record(self._stamp, self._held_ids())
        if self.store.get_meta("vector_file") != record:
            self.store.set_meta(vector_file=record)

    def saved_in_step(self) -> bool:
        """Whether the saved file is known to hold exactly the vectors SQLite holds, without
        loading it: the file is the one last saved (same name, mtime, size), and the stored
        vectors have the digest they had then (see `Store.vector_digest`)."""
        record = self.store.get_meta("vector_file")
        stamp = _stamp(self.path())
        if record is None or stamp is None:
            return False
        return bool(record == {"stamp": list(stamp), "holds": self.store.vector_digest()})

    def save_if_due(self) -> None:
        """Save during a long run, so that readers have little to add to the saved index:
        at most every SAVE_EVERY_SECONDS, and at most SAVE_TIME_SHARE of the time."""
        waited = time.monotonic() - self._saved_at
        dim = self.store.get_meta("dim")
        if dim is None or waited < max(SAVE_EVERY_SECONDS, self._save_seconds / SAVE_TIME_SHARE):
            return
        with self.store.snapshot():
            self.in_step(dim)
        self.save()

    def forget(self) -> None:
        """Drop the index from memory (its vectors are gone: --reembed)."""
        self._set(None, changed=False)
        self._stamp = None

    # --- readers -----------------------------------------------------------------------------

    def search(
        self, query: np.ndarray, k: int, dim: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the k best chunks, best first; only `allowed` ids when given.

        Call inside a snapshot. Never builds or trains an index: vectors the saved file lacks
        are searched exactly, ids it holds that SQLite dropped are left out.
        """
        self._load()
        index = self._index if self._index is not None and self._index.dim == dim else None
        unsaved = self._unsaved_vectors(index, dim)
        found: list[tuple[int, float]] = []
        if index is not None and index.ntotal:
            exact = functools.partial(self.store.vectors_for, dim=dim)  # IVF-PQ re-ranks
            scores, ids = index.search(
                query[None, :], k, allowed, unsaved.removed, exact, self.policy.rerank
            )
            found += [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
        ids, vectors = unsaved.ids, unsaved.vectors
        if allowed is not None:
            keep = np.isin(ids, allowed)
            ids, vectors = ids[keep], vectors[keep]
        if len(ids):  # exact, as an exact index would
            scores = vectors @ query.astype(np.float32)
            best = np.argsort(-scores, kind="stable")[:k]
            found += [(int(ids[i]), float(scores[i])) for i in best]
        return sorted(found, key=lambda hit: (-hit[1], hit[0]))[:k]

    def _unsaved_vectors(self, index: VectorIndex | None, dim: int) -> _Unsaved:
        version = self.store.version()
        cached = self._unsaved
        if cached is not None and cached.version == version and cached.index is index:
            return cached
        wanted = self.store.vector_ids()
        held = self._held_ids() if index is not None else np.zeros(0, np.int64)
        missing = np.setdiff1d(wanted, held, assume_unique=True)
        removed = np.setdiff1d(held, wanted, assume_unique=True)
        vectors = self.store.vectors_for(missing, dim)
        self._unsaved = _Unsaved(version, index, missing, vectors, removed)
        return self._unsaved
