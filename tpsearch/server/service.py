"""One collection, served: the calls of the MCP tools and of the warm server, as JSON records.

`Service` keeps one read-only `Collection` open (its vector index stays in memory) and one
encoder per settings, loaded on the first semantic search and kept. Every read call must come
from the one thread that owns the service (SQLite connections belong to a thread); `reindex`
may run in any other thread: it opens its own writing `Collection` and shares the loaded
encoder. Nothing here goes stale: each call reads the database's current state, reloads the
vector index when a writer saved a new one, and loads new weights when the stored settings
changed (`tpsearch index --reembed`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tpsearch import __version__
from tpsearch.collection import Collection, EncoderFactory, default_encoder_factory
from tpsearch.collection.embedding import encode_counted
from tpsearch.engine.encoder import Encoder, fingerprint_of
from tpsearch.errors import WriterBusy

if TYPE_CHECKING:
    from tpsearch.collection.search import QueryResult
    from tpsearch.engine.settings import EncoderSettings


class _LockedEncoder:
    """An encoder shared by the reading thread and a reindex: one forward pass at a time."""

    def __init__(self, encoder: Encoder) -> None:
        self.inner = encoder
        self.lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def settings(self) -> Mapping[str, object]:
        return self.inner.settings

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        with self.lock:
            return encode_counted(self.inner, texts, batch_size, progress)

    def __getattr__(self, name: str) -> Any:
        """The rest of what the encoder offers (former fingerprints an older collection was
        made with, its resolved settings, last_stats), as the encoder itself gives it."""
        if name in ("inner", "lock"):  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class SharedEncoders:
    """An encoder factory that loads each settings' encoder once and hands out the same one."""

    def __init__(self, factory: EncoderFactory) -> None:
        self.factory = factory
        self.loaded: dict[str, _LockedEncoder] = {}
        self.lock = threading.Lock()

    def __call__(self, settings: EncoderSettings) -> Encoder:
        key = fingerprint_of(settings.to_dict())
        with self.lock:
            if key not in self.loaded:
                self.loaded = {key: _LockedEncoder(self.factory(settings))}  # keep one model
            return self.loaded[key]

    def forget(self) -> None:
        """Load again on the next call (the weights on disk changed: `Collection.encoder`)."""
        with self.lock:
            self.loaded = {}


def result_record(result: QueryResult) -> dict[str, Any]:
    return {
        "query": result.text,
        "mode": result.mode,
        "used": result.used,
        "hits": [hit.to_dict() for hit in result.hits],
        "notices": result.notices,
    }


class Service:
    """The tools of one collection folder; `overrides` are the command's model options."""

    def __init__(
        self,
        folder: Path,
        overrides: Mapping[str, Any],
        kind: str,
        encoder_factory: EncoderFactory | None = None,
    ) -> None:
        self.folder = folder
        self.overrides = dict(overrides)
        self.kind = kind  # "mcp" or "serve", for status
        self.encoders = SharedEncoders(encoder_factory or default_encoder_factory)
        self.started = time.time()
        self.calls = 0
        self._reader: Collection | None = None
        self._reindexing = threading.Lock()

    @property
    def collection(self) -> Collection:
        if self._reader is None:
            self._reader = Collection.open(self.folder)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def describe(self) -> dict[str, Any]:
        """Who is serving: shown in `status` as "server"."""
        return {
            "kind": self.kind,
            "pid": os.getpid(),
            "version": __version__,
            "since": self.started,
            "calls": self.calls,
            "encoder_loaded": bool(self.encoders.loaded),
        }

    # --- the tools ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        path: str | None = None,
        min_score: float | None = None,
        files: bool = False,
    ) -> dict[str, Any]:
        self.calls += 1
        result = self.collection.query(
            query,
            k=k,
            mode=mode,
            path=path,
            min_score=min_score,
            files=files,
            overrides=self.overrides,
            encoder_factory=self.encoders,
        )
        return result_record(result)

    def get(
        self, path: str, start_line: int | None = None, end_line: int | None = None
    ) -> dict[str, Any]:
        self.calls += 1
        text = self.collection.read(path, start_line, end_line)
        return {
            "path": text.path,
            "start_line": text.start_line,
            "end_line": text.end_line,
            "total_lines": text.total_lines,
            "text": text.text,
        }

    def similar(
        self, path: str | None = None, chunk_id: int | None = None, k: int = 10
    ) -> dict[str, Any]:
        self.calls += 1
        return result_record(self.collection.similar(chunk_id=chunk_id, path=path, k=k))

    def status(self) -> dict[str, Any]:
        self.calls += 1
        return {**self.collection.status().to_dict(), "server": self.describe()}

    def reindex(self) -> dict[str, Any]:
        """An incremental index run; "busy" at once if one runs (here or in another process)."""
        if not self._reindexing.acquire(blocking=False):
            message = "busy: a reindex started by this server is still running; try again later"
            return {"status": "busy", "message": message}
        try:
            with Collection.open(self.folder, write=True) as writer:
                summary = writer.index(overrides=self.overrides, encoder_factory=self.encoders)
        except WriterBusy as error:
            return {"status": "busy", "message": f"busy: {error}"}
        finally:
            self._reindexing.release()
        return {"status": "done", **summary.to_dict()}
