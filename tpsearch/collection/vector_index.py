"""The FAISS index over chunk vectors: a cache of what SQLite holds, rebuilt or topped up at will.

Exact inner-product search up to `exact_max` vectors; above that an IVF index (inverted lists
over k-means cells) whose `nprobe` is tuned when it is built, on queries drawn from the data,
until its recall@10 against exact search reaches `tuned_recall`, then doubled as a margin for
queries unlike the documents. Above `compress_min` vectors the IVF lists hold product-quantized
codes instead of the vectors (IVF-PQ, `vector_compression.py`): a search takes a shortlist from
it and scores the shortlist exactly with the vectors SQLite holds. Every index kind takes chunk
ids as FAISS ids and supports removal, so a re-run adds and removes vectors without a rebuild.
Saving writes a temporary file and renames it over the old one: a reader, or a crash, sees the
old file or the new one, never half of one.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tpsearch.collection.vector_compression import (
    TRAIN_PER_CELL,
    Fetch,
    add_in_blocks,
    rerank,
    sample_ids,
    train_ivfpq,
)
from tpsearch.collection.vector_tuning import (
    exact_neighbours,
    recall_at,
    tune_nprobe,
    tune_nprobe_reranked,
)
from tpsearch.errors import CollectionError, first_line

if TYPE_CHECKING:
    from tpsearch.collection.store import Store

IndexKind = Literal["exact", "ivf", "ivfpq"]
__all__ = ["VectorIndex", "VectorPolicy", "exact_neighbours", "ideal_nlist", "recall_at", "sync"]
FEW_QUERIES = 8  # searches of up to this many queries run on one thread


@dataclass(frozen=True)
class VectorPolicy:
    """When to go approximate, and how good approximate must be."""

    exact_max: int = 100_000  # exact search stays well under 50 ms up to about here on a CPU
    compress_min: int = 1_000_000  # above: IVF-PQ + exact re-ranking (flat IVF: 3.6 GB at 896-d)
    rerank: int = 200  # IVF-PQ shortlist scored exactly (at least 10 x k)
    tuned_recall: float = 0.97  # IVF nprobe target on sample queries (a margin above 0.95)
    tuning_queries: int = 100
    min_probe_fraction: int = 32  # always probe at least 1/32 of the cells
    probe_margin: int = 2  # then probe this many times more: real queries are not documents
    seed: int = 0


class VectorIndex:
    """A FAISS index whose ids are chunk ids."""

    def __init__(self, index: Any, kind: IndexKind) -> None:
        self.index = index
        self.kind = kind

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist) if self.kind != "exact" else 0

    @property
    def nprobe(self) -> int:
        return int(self.index.nprobe) if self.kind != "exact" else 0

    def describe(self) -> dict[str, Any]:
        """Kind and size, for `tpsearch status`."""
        return {
            "kind": self.kind,
            "vectors": self.ntotal,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
        }

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        import faiss

        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "exact")

    @classmethod
    def build(
        cls, ids: np.ndarray, vectors: np.ndarray, dim: int, policy: VectorPolicy | None = None
    ) -> VectorIndex:
        """The index kind that suits len(ids) vectors, holding them."""
        policy = policy or VectorPolicy()
        if len(ids) <= policy.exact_max:
            built = cls.empty(dim)
        else:
            built = cls._trained_ivf(vectors, dim, policy)
        built.add(ids, vectors)
        if built.kind == "ivf":
            built.index.nprobe = tune_nprobe(built, ids, vectors, policy)
        return built

    @classmethod
    def build_compressed(
        cls, ids: np.ndarray, fetch: Fetch, dim: int, policy: VectorPolicy | None = None
    ) -> VectorIndex:
        """IVF-PQ over `ids`, reading their vectors through `fetch` a block at a time."""
        policy = policy or VectorPolicy()
        nlist = ideal_nlist(len(ids))
        sample = fetch(sample_ids(ids, TRAIN_PER_CELL * nlist, policy.seed))
        built = cls(train_ivfpq(sample, dim, nlist), "ivfpq")
        del sample
        add_in_blocks(built.index, ids, fetch)
        built.index.nprobe = tune_nprobe_reranked(built, ids, fetch, policy)
        return built

    @classmethod
    def _trained_ivf(cls, vectors: np.ndarray, dim: int, policy: VectorPolicy) -> VectorIndex:
        import faiss

        nlist = ideal_nlist(len(vectors))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
        rng = np.random.default_rng(policy.seed)
        sample = rng.choice(len(vectors), size=min(len(vectors), 64 * nlist), replace=False)
        index.train(np.ascontiguousarray(vectors[np.sort(sample)]))
        return cls(index, "ivf")

    def suits(self, n: int, policy: VectorPolicy | None = None) -> bool:
        """Whether this index kind (and IVF cell count) is still right for n vectors."""
        policy = policy or VectorPolicy()
        if self.kind == "exact":
            return n <= policy.exact_max
        if self.kind == "ivf" and n > policy.compress_min:
            return False
        if self.kind == "ivfpq" and n <= policy.compress_min // 2:
            return False
        return n > policy.exact_max // 2 and self.nlist / 2 <= ideal_nlist(n) <= self.nlist * 2

    def ids(self) -> np.ndarray:
        """The chunk ids held, sorted."""
        import faiss

        if self.kind == "exact":
            return np.sort(faiss.vector_to_array(self.index.id_map).astype(np.int64))
        lists = self.index.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(self.nlist)
            if lists.list_size(i)
        ]
        return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        excluded: np.ndarray | None = None,
        fetch: Fetch | None = None,
        rerank_size: int = VectorPolicy.rerank,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (len(queries), k); ids -1 where fewer than k were found.

        IVF-PQ with `fetch` (ids -> exact vectors): a shortlist of max(rerank_size, 10k)
        candidates is scored exactly; without it, the scores are the approximate ones.

        Only ids in `allowed` (when given) and not in `excluded` are returned. A filter
        empties IVF cells, so a filtered IVF search probes more of them: as many more as
        the filter keeps fewer vectors, all of them when that is half or more (then the
        result is exact; the cost stays low, as distances are computed for allowed ids only),
        and all of them again when fewer than k were found.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.ntotal == 0 or (allowed is not None and not len(allowed)):
            empty = np.full((len(queries), k), -1, dtype=np.int64)
            return np.zeros((len(queries), k), dtype=np.float32), empty
        if self.kind == "ivfpq" and fetch is not None:
            shortlist = self.search(queries, max(rerank_size, 10 * k), allowed, excluded)[1]
            return rerank(queries, shortlist, k, fetch)
        selector = _selector(allowed, excluded)
        if selector is None:
            return self._search(queries, k, None)
        nprobe = None
        if self.kind != "exact" and allowed is not None:
            share = min(1.0, len(allowed) / self.ntotal)
            nprobe = math.ceil(self.nprobe / share)
            nprobe = self.nlist if nprobe >= self.nlist // 2 else nprobe
        scores, ids = self._search(queries, k, selector, nprobe)
        if nprobe is not None and nprobe < self.nlist and (ids < 0).any():
            scores, ids = self._search(queries, k, selector, self.nlist)
        return scores, ids

    def _search(
        self, queries: np.ndarray, k: int, selector: Any, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params: Any = None
        if selector is not None:
            ivf = self.kind != "exact"
            params = faiss.SearchParametersIVF() if ivf else faiss.SearchParameters()
            params.sel = selector
            if nprobe is not None:
                params.nprobe = nprobe
        if len(queries) > FEW_QUERIES:
            return self.index.search(queries, k, params=params)
        # A few queries scan at most exact_max vectors, or a few IVF cells: waking OpenMP
        # threads costs more than it saves (5x more on a busy 2-core machine). The setting
        # is per calling thread in OpenMP, so other threads keep theirs.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)

    def save(self, path: Path) -> None:
        """Write atomically: a temporary file, flushed, then renamed over `path`."""
        import faiss

        temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            # Through Python's file, not FAISS's own: FAISS only prints a failed close (a full
            # disk) and leaves a cut-short file; here every failed write raises.
            with open(temporary, "wb") as handle:
                writer = faiss.PyCallbackIOWriter(handle.write)  # type: ignore[attr-defined]
                faiss.write_index(self.index, writer)
                del writer
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except (OSError, RuntimeError) as error:
            raise CollectionError(
                f"cannot write the vector index {path} ({first_line(error)}): is the disk "
                "full? The vectors are safe in SQLite; free some space and run "
                "`tpsearch index` again"
            ) from None
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_folder(path.parent)

    @classmethod
    def load(cls, path: Path) -> VectorIndex | None:
        """The index saved at `path`; None when it is missing or unreadable (then rebuild)."""
        import faiss

        if not path.is_file():
            return None
        try:
            index = faiss.read_index(str(path))
        except (RuntimeError, MemoryError):
            return None
        if isinstance(index, faiss.IndexIDMap2):
            return cls(index, "exact")
        if isinstance(index, faiss.IndexIVFFlat):
            return cls(index, "ivf")
        if isinstance(index, faiss.IndexIVFPQ):
            return cls(index, "ivfpq")
        return None


def _selector(allowed: np.ndarray | None, excluded: np.ndarray | None) -> Any:
    """A FAISS id selector: in `allowed` (if given) and not in `excluded` (if any); None for
    no filter. FAISS keeps no reference to the selectors it combines: they are kept on the
    outer one."""
    import faiss

    parts: list[Any] = []
    if allowed is not None:
        parts.append(faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)))
    if excluded is not None and len(excluded):
        inner = faiss.IDSelectorBatch(np.asarray(excluded, dtype=np.int64))
        outer: Any = faiss.IDSelectorNot(inner)
        outer.referenced = inner
        parts.append(outer)
    if len(parts) < 2:
        return parts[0] if parts else None
    both: Any = faiss.IDSelectorAnd(parts[0], parts[1])
    both.referenced = parts
    return both


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable; some platforms cannot open folders, which is fine."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def ideal_nlist(n: int) -> int:
    """IVF cells for n vectors: about sqrt(n), each cell holding about sqrt(n) vectors."""
    return max(16, min(65536, 2 ** round(math.log2(max(1.0, math.sqrt(n))))))


def sync(
    index: VectorIndex | None,
    store: Store,
    dim: int,
    policy: VectorPolicy | None = None,
) -> tuple[VectorIndex, bool]:
    """Bring `index` in step with the vectors in SQLite: (index, whether anything changed).

    Ids are compared, not trusted: vectors of chunks gone from SQLite are removed, vectors
    missing from the index are added. A missing index, one of another dimension, or one whose
    kind no longer suits the collection's size is rebuilt from SQLite.
    """
    policy = policy or VectorPolicy()
    wanted = store.vector_ids()
    if index is None or index.dim != dim or not index.suits(len(wanted), policy):
        if len(wanted) > policy.compress_min:  # never all vectors in memory at once
            fetch = functools.partial(store.vectors_for, dim=dim)
            return VectorIndex.build_compressed(wanted, fetch, dim, policy), True
        ids, vectors = store.all_vectors(dim)
        return VectorIndex.build(ids, vectors, dim, policy), True
    held = index.ids()
    if np.array_equal(held, wanted):
        return index, False
    index.remove(np.setdiff1d(held, wanted, assume_unique=True))
    missing = np.setdiff1d(wanted, held, assume_unique=True)
    index.add(missing, store.vectors_for(missing, dim))
    return index, True
