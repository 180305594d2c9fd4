"""Phase 2 of `tpsearch index`: embed pending chunks while the scan is still going.

A worker thread reads chunks without a vector through its own (read-only) connection, loads
the model the first time it finds one, and encodes them in groups of similar lengths (read a
window of several groups at a time: less padding); the calling thread, which
also commits the scan, commits each group of vectors in one transaction. So the model loads
and encodes while files are still being read and chunked (the forward pass releases the GIL),
and every write still happens on one connection, in one thread. A crash loses at most the
groups encoded but not yet committed; they are still pending for the next run.

Errors in the worker (the model cannot load, the encoder fails) do not stop the scan: it is
committed in full, then the error is raised.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from tpsearch.collection.chunking import embedding_text
from tpsearch.collection.store import Store
from tpsearch.collection.vector_settings import check_same_vectors, storable
from tpsearch.engine.settings import EncoderSettings
from tpsearch.errors import EncodingError, ModelLoadError, TpsearchError, TruncationWarning

if TYPE_CHECKING:
    from tpsearch.collection.facade import Collection, EncoderFactory
    from tpsearch.collection.indexing import IndexSummary, Progress
    from tpsearch.engine.encoder import Encoder

POLL_SECONDS = 0.05  # how often an idle worker looks for newly committed chunks


# Pending chunks are read this many groups at a time and regrouped by length: batches of
# similar lengths waste less on padding (fastapi-docs, tokens padded beyond a global sort: 9%
# for groups in file order, 2.5% for windows of 4 groups, 0.5% for 16), while a group stays
# the unit of a transaction and of a Ctrl-C's wait.
WINDOW_GROUPS = 16
# While the scan goes on, the worker waits up to this long for a full window before it encodes
# a partial one: a quick scan is then encoded in full windows (the first file's chunks alone
# were a badly padded group), a slow one still overlaps with encoding.
PATIENCE_SECONDS = 2.0


def encode_groups(
    encoder: Encoder,
    groups: Sequence[list[str]],
    batch_size: int,
    stop: threading.Event,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray, int, float]]:
    """(position, vectors, truncated, seconds) for each group of texts, as each is ready;
    `progress` hears how many texts were encoded (per batch when the encoder says, else per
    group).

    An encoder with its own `encode_groups` (a pool of workers, as `tpsearch.distributed`'s)
    encodes them side by side, in any order (seconds: wall time since the previous group);
    any other encodes them one by one. Either stops between groups once `stop` is set.
    """
    pooled = getattr(encoder, "encode_groups", None)
    if pooled is not None:
        started = time.perf_counter()
        for position, vectors, truncated in pooled(groups, batch_size, stop):
            now = time.perf_counter()
            if progress is not None:
                progress(len(groups[position]))
            yield position, vectors, truncated, now - started
            started = now
        return
    for position, texts in enumerate(groups):
        if stop.is_set():
            return
        started = time.perf_counter()
        vectors = encode_counted(encoder, texts, batch_size, progress)
        stats = getattr(encoder, "last_stats", None)  # the TP encoder's, optional
        yield position, vectors, getattr(stats, "truncated", 0), time.perf_counter() - started


def encode_counted(
    encoder: Encoder,
    texts: Sequence[str],
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """`encoder.encode`, with `progress` told of each batch when the encoder takes such a
    callback, else of all the texts once it is done."""
    if progress is not None and reports_batches(encoder):
        return encoder.encode(texts, batch_size, progress=progress)  # type: ignore[call-arg]
    vectors = encoder.encode(texts, batch_size)
    if progress is not None:
        progress(len(texts))
    return vectors


def by_length(rows: Sequence[tuple[int, str, str]], size: int) -> list[list[tuple[int, str, str]]]:
    """(id, heading, text) rows in groups of `size`, longest first."""
    ordered = sorted(rows, key=lambda row: len(row[1]) + len(row[2]), reverse=True)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


class Embedder:
    """`with Embedder(...) as e:` runs the worker; call `commit_ready` often, then `finish`."""

    def __init__(
        self,
        col: Collection,
        settings: EncoderSettings,
        factory: EncoderFactory,
        batch_size: int,
        summary: IndexSummary,
        progress: Progress,
        after_commit: Callable[[], None] = lambda: None,  # after each group of vectors
    ) -> None:
        self.col, self.settings, self.factory = col, settings, factory
        self.batch_size = batch_size
        self.group = 8 * batch_size  # texts per encode call, vectors per transaction
        self.summary, self.progress = summary, progress
        self.results: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=4)
        self.scan_done = threading.Event()
        self.wake = threading.Event()  # set by the committer after each file: look again
        self.stop = threading.Event()
        self.adopted = threading.Event()  # the encoder's fingerprint suits the stored vectors
        self.worker = threading.Thread(target=self._work, name="tpsearch-embed", daemon=True)
        self.encoder: Encoder | None = None
        self.error: BaseException | None = None
        self.total: int | None = None  # chunks to embed, known once the scan is committed
        self.first_new = col.store.next_chunk_id()  # chunks from here on come from this run
        # Texts encoded so far (written by the worker only, after each batch when the encoder
        # reports batches, else after each group), and how many the progress bar shows: the
        # bar moves per batch, not per committed group, so a slow machine sees a rate soon.
        self.encoded = 0
        self.shown = 0
        self.after_commit = after_commit
        # The encoder warns of truncated texts on each call; a run reports them once, at the end.
        self.quiet_truncation = warnings.catch_warnings()

    def __enter__(self) -> Embedder:
        self.quiet_truncation.__enter__()
        warnings.filterwarnings("ignore", category=TruncationWarning)
        self.worker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On Ctrl-C or an error: the worker ends after its current group, or once its model
        # has loaded (a load cannot be cut short). Waiting for it is not needed for safety: it
        # only reads, through its own connection, and nothing it sends is committed any more.
        # After an error (a full disk) it is waited for all the same: a process that exits
        # while a thread is inside torch can die in a native abort (exit 134) instead of
        # giving its one-line message. Ctrl-C waits 5 s at most.
        self.stop.set()
        self.worker.join(timeout=5 if exc_type is KeyboardInterrupt else None)
        self.quiet_truncation.__exit__(exc_type, exc, tb)

    # --- the worker thread: reads and encodes, never writes ----------------------------------

    def _work(self) -> None:
        """Chunks committed by this run first, as they come; older pending ones once the scan
        is over, since it may yet replace them (changed files, --reembed re-chunking)."""
        reader = Store.open(self.col.store.path)
        try:
            encoder = None
            last, upto, older_left = self.first_new - 1, None, True
            window = self.group * WINDOW_GROUPS
            fill_until = 0.0  # until then, the scan may fill the first window (monotonic)
            while not self.stop.is_set():
                done = self.scan_done.is_set()  # before reading: nothing committed is missed
                if (
                    not done
                    and time.monotonic() < fill_until
                    and reader.pending_count(last, window, upto) < window
                ):
                    self.scan_done.wait(POLL_SECONDS)
                    continue
                rows = reader.pending(last, window, upto)
                if not rows:
                    if not done:
                        self.wake.wait(POLL_SECONDS)
                        self.wake.clear()
                        continue
                    if not older_left:
                        break
                    last, upto, older_left = 0, self.first_new - 1, False
                    continue
                if encoder is None:
                    fill_until = time.monotonic() + PATIENCE_SECONDS  # loading counts
                    self._put("loading", f"loading {self.settings.model}")
                    encoder = self.col.encoder(
                        self.settings, self.factory, phase=lambda step: self._put("phase", step)
                    )
                    self._put("loaded", encoder)
                    # Nothing is encoded before the committer has checked the fingerprint.
                    while not (self.adopted.is_set() or self.stop.is_set()):
                        self.adopted.wait(POLL_SECONDS)
                    if self.stop.is_set():  # Ctrl-C or an error while it loaded: encode nothing
                        break
                    window *= max(1, int(getattr(encoder, "parallel", 1)))  # a pool: per worker
                    continue  # read again: the scan went on while the model loaded
                groups = by_length(rows, self.group)
                texts = [[embedding_text(heading, text) for _, heading, text in g] for g in groups]
                for position, vectors, truncated, seconds in encode_groups(
                    encoder, texts, self.batch_size, self.stop, self._count
                ):
                    ids = [row[0] for row in groups[position]]
                    self._put("vectors", (ids, vectors, truncated, seconds))
                if self.stop.is_set():
                    break
                last = rows[-1][0]
        except BaseException as error:  # reported to, and raised in, the calling thread
            self._put("error", error)
        finally:
            reader.close()

    def _count(self, encoded: int) -> None:
        """Texts encoded so far (the worker thread counts, the progress line reads)."""
        self.encoded += encoded

    def _put(self, kind: str, payload: Any) -> None:
        while True:  # a bounded queue: the worker waits while the committer is behind
            try:
                self.results.put((kind, payload), timeout=POLL_SECONDS)
                return
            except queue.Full:
                if self.stop.is_set():
                    return

    # --- the calling thread: commits ---------------------------------------------------------

    def commit_ready(self) -> None:
        """Commit whatever the worker has finished, without waiting."""
        self.wake.set()
        self._drain(block=False)

    def finish(self) -> None:
        """The scan is committed: embed what is left, then raise any error of the worker."""
        self.scan_done.set()
        self.wake.set()
        self.total = self.summary.embedded + self.col.store.counts()["pending"]
        if self.encoder is not None:
            self.progress.start("embed", self.total)  # now the bar knows its length
        self._drain(block=True)
        if self.encoder is not None:
            self.progress.finish("embed")
        if self.summary.truncated:
            limit = self.settings.max_length
            self.summary.notices.append(
                f"{self.summary.truncated} of {self.summary.embedded} chunks were longer than "
                f"the model's max length ({limit} tokens) and were embedded from their first "
                f"{limit} tokens only (keyword search still sees all of them): raise --max-length "
                "and run `tpsearch index --reembed` to embed them whole"
            )
        if isinstance(self.error, ModelLoadError):
            pending = self.col.store.counts()["pending"]
            problem, _, fix = str(self.error).partition("\n")
            again = f"{fix}, then run" if fix else "run"
            raise ModelLoadError(
                f"{problem} (scan saved: {pending} chunks wait; queries use keywords only)\n"
                f"{again} `tpsearch index` again"
            ) from self.error
        if self.error is not None:
            raise self.error

    def _drain(self, block: bool) -> None:
        """Handle the worker's messages; with `block`, until it has ended and all are read."""
        while True:
            self._show_encoded()
            try:
                kind, payload = self.results.get(timeout=POLL_SECONDS if block else 0)
            except queue.Empty:
                if not block or (not self.worker.is_alive() and self.results.empty()):
                    return
                continue
            if self.error is not None:
                continue  # after an error nothing more is committed
            if kind == "loading":
                self.progress.start("load", None)
                self._note(payload)
            elif kind == "phase":
                self._note(payload)
            elif kind == "loaded":
                self.progress.finish("load")
                self._adopt(payload)
            elif kind == "vectors":
                self._commit(*payload)
            elif kind == "error":
                self._fail(payload)

    def _note(self, step: str) -> None:
        note = getattr(self.progress, "note", None)  # optional: older Progress objects lack it
        if note is not None:
            note("load", step)

    def _show_encoded(self) -> None:
        """Move the bar to the texts encoded so far (the worker counts, this thread draws)."""
        encoded = self.encoded
        if self.encoder is not None and self.error is None and encoded > self.shown:
            self.progress.advance("embed", encoded - self.shown)
            self.shown = encoded

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self.stop.set()

    def _adopt(self, encoder: Encoder) -> None:
        """Record the encoder with the vectors, or refuse one that would mix vectors."""
        store = self.col.store
        try:
            if store.counts()["embedded"]:
                check_same_vectors(store.get_meta("fingerprint"), encoder)
        except TpsearchError as error:
            self._fail(error)
            return
        resolved = getattr(encoder, "resolved_settings", None)
        settings = resolved if isinstance(resolved, EncoderSettings) else self.settings
        store.set_meta(
            fingerprint=encoder.fingerprint,
            model_id=encoder.model_id,
            dim=encoder.dim,
            encoder=dict(encoder.settings),
            encoder_settings=storable(settings),
        )
        self.encoder = encoder
        self.adopted.set()
        self.progress.start("embed", self.total)

    def _commit(self, ids: list[int], vectors: np.ndarray, truncated: int, seconds: float) -> None:
        assert self.encoder is not None
        try:
            check_vectors(vectors, len(ids), self.encoder.dim, ids)
        except EncodingError as error:
            self._fail(error)
            return
        added = self.col.store.add_vectors(ids, vectors)
        self.summary.embedded += added
        self.summary.truncated += truncated if added else 0
        self.summary.encode_seconds += seconds
        self._show_encoded()
        self.after_commit()


def reports_batches(encoder: Encoder) -> bool:
    """Whether `encoder.encode` takes a `progress` callback, called after each batch."""
    try:
        return "progress" in inspect.signature(encoder.encode).parameters
    except (TypeError, ValueError):
        return False


def check_vectors(vectors: np.ndarray, count: int, dim: int, ids: list[int]) -> None:
    if vectors.shape != (count, dim):
        raise EncodingError(
            f"the encoder returned an array of shape {vectors.shape} for {count} texts, not "
            f"({count}, {dim}); nothing from this group was stored"
        )
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        shown = ", ".join(str(i) for i in np.asarray(ids)[bad][:5])
        raise EncodingError(
            f"the encoder returned non-finite vectors for chunks {shown}: try another "
            "precision (fp32 or bf16); nothing from this group was stored"
        )
