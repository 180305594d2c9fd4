"""`tpsearch index`: scan and chunk what changed, embed what is pending, refresh the vectors.

Three phases, each safe to kill at any moment:

1. Scan (`scanning.py`). Changed files are read, chunked and committed one transaction per
   file, gone ones removed, so lexical search works as soon as it ends, whatever the model does.
2. Embed (`embedding.py`), overlapping the scan. Chunks without a vector are pending; only if
   some are is the model loaded; vectors are committed in groups, so a crash loses at most
   the groups being encoded.
3. Vectors. The FAISS file is compared with SQLite by id, topped up or rebuilt, and saved to a
   temporary file that is renamed over the old one.

After a crash, SQLite holds complete files and complete vectors only; the next run finds the
changed files changed and the pending chunks pending, and finishes the work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tpsearch.collection.chunking import ChunkSettings
from tpsearch.collection.embedding import Embedder
from tpsearch.collection.locking import WriterLock
from tpsearch.collection.scanning import forget_sources, now, scan_sources
from tpsearch.collection.sources import (
    ScanSettings,
    Skip,
    check_name,
    check_patterns,
    iter_sources,
    relative_to_root,
)
from tpsearch.collection.vector_settings import storable
from tpsearch.collection.vector_space import refresh_space
from tpsearch.engine.settings import EncoderSettings
from tpsearch.errors import CollectionError, ConfigError, TpsearchError

if TYPE_CHECKING:
    from tpsearch.collection.facade import Collection, EncoderFactory

Phase = Literal["scan", "load", "embed", "vectors"]


class Progress(Protocol):
    """Where the library reports progress; the CLI draws Rich bars on stderr.

    `start` may come again for a phase already started, with its total once that is known.
    All calls come from the thread that called `Collection.index`.
    """

    def start(self, phase: Phase, total: int | None) -> None: ...
    def advance(self, phase: Phase, amount: int = 1) -> None: ...
    def finish(self, phase: Phase) -> None: ...

    # Optional (looked up with getattr): a step within a phase, e.g. "converting smollm2-135m
    # from GGUF to bfloat16 (once)" while the model loads.
    # def note(self, phase: Phase, message: str) -> None: ...


class NullProgress:
    def start(self, phase: Phase, total: int | None) -> None:
        pass

    def advance(self, phase: Phase, amount: int = 1) -> None:
        pass

    def finish(self, phase: Phase) -> None:
        pass

    def note(self, phase: Phase, message: str) -> None:
        pass


@dataclass(frozen=True)
class ScanOverrides:
    """Scan settings given for this run; None keeps the collection's stored value."""

    include: Sequence[str] | None = None
    exclude: Sequence[str] | None = None
    max_file_bytes: int | None = None

    def __post_init__(self) -> None:
        check_patterns(self.include or (), "include")
        check_patterns(self.exclude or (), "exclude")

    @property
    def complete(self) -> bool:
        """Whether every setting is given, so that the stored ones do not matter."""
        return None not in (self.include, self.exclude, self.max_file_bytes)

    def apply(self, stored: ScanSettings) -> ScanSettings:
        return ScanSettings(
            tuple(self.include) if self.include is not None else stored.include,
            tuple(self.exclude) if self.exclude is not None else stored.exclude,
            self.max_file_bytes if self.max_file_bytes is not None else stored.max_file_bytes,
        )


@dataclass
class IndexSummary:
    """What a run did; `line()` is the one-line summary."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    chunks_written: int = 0  # chunks of new and updated files
    embedded: int = 0  # vectors computed by this run
    pending: int = 0  # chunks still without a vector at the end
    truncated: int = 0  # chunks embedded from their first max_length tokens only
    seconds: float = 0.0
    encode_seconds: float = 0.0  # spent in the encoder (model loading not included)
    skips: list[Skip] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def files_line(self) -> str:
        return (
            f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.removed} removed, {self.skipped} skipped"
        )

    def chunks_per_second(self) -> float | None:
        """Encoding throughput of this run; None when it embedded nothing."""
        if not self.embedded or self.encode_seconds <= 0:
            return None
        return self.embedded / self.encode_seconds

    def line(self) -> str:
        rate = self.chunks_per_second()
        speed = f" ({rate:,.1f} chunks/s)" if rate else ""
        extra = [f"{self.embedded} chunks embedded{speed}"] if self.embedded else []
        extra += [f"{self.pending} pending"] if self.pending else []
        return " · ".join([self.files_line(), *extra, f"{self.seconds:.1f} s"])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skips"] = len(self.skips)
        data["line"] = self.line()
        return data


def check_arguments(paths: Sequence[Path] | None, batch_size: int) -> list[Path] | None:
    """The sources a run was given (absolute, de-duplicated; None: the remembered ones).

    Raises ConfigError for a path that does not exist or a batch size below 1: called before
    anything is written (the CLI calls it before it creates a collection), so a typo costs
    nothing.
    """
    if batch_size < 1:
        raise ConfigError(f"the batch size must be at least 1, got {batch_size}")
    if not paths:
        return None
    for path in paths:
        if not path.exists():
            raise ConfigError(f"no such file or folder: {path}")
        check_name(str(path))  # as given: SQLite could not store it
    return list(iter_sources(list(paths)))


def run_index(
    col: Collection,
    paths: list[Path] | None,
    *,
    scan: ScanOverrides,
    overrides: dict[str, Any],
    encoder_factory: EncoderFactory,
    reembed: bool,
    progress: Progress | None,
    batch_size: int,
    forget: list[Path],
    on_busy: Callable[[str], None] | None = None,
) -> IndexSummary:
    given = check_arguments(paths, batch_size)
    progress = progress or NullProgress()
    summary = IndexSummary()
    with WriterLock(col.folder, on_busy=on_busy):  # waits, when told where to say so
        started = time.monotonic()
        store = col.store
        store.wait_for_writers(col.busy_wait_seconds)
        run_id = store.start_run(now())
        status = "failed"
        try:
            scan_settings = scan.apply(_stored_scan_settings(col, scan))
            plan = _plan_sources(col, given, forget)
            settings, chunker = _prepare(  # checked all first
                col, overrides, reembed, summary, encoder_factory, progress
            )
            store.set_meta(sources=plan.remembered, scan=scan_settings.to_dict())
            if plan.forgotten:
                summary.removed += forget_sources(store, plan.forgotten, plan.remembered)
            elif not plan.scan:
                summary.notices.append(
                    "nothing to index: no file or folder is remembered (all were forgotten); "
                    "run `tpsearch index PATH`"
                )
            embedder = Embedder(
                col,
                settings,
                encoder_factory,
                batch_size,
                summary,
                progress,
                after_commit=col.vectors.save_if_due,  # a long run saves as it goes
            )
            with embedder:  # the model loads and encodes while the scan goes on
                scan_sources(
                    col, plan.scan, scan_settings, chunker, summary, progress, embedder.commit_ready
                )
                embedder.finish()
            _save_vectors(col, progress)
            refresh_space(store, summary.embedded)
            status = "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except TpsearchError as error:
            summary.skipped = len(summary.skips)
            error.partial = summary
            raise
        finally:
            summary.seconds = time.monotonic() - started
            summary.pending = store.counts()["pending"]
            store.finish_run(run_id, now(), status, summary.to_dict())
    return summary


def _stored_budget(stored: dict[str, Any]) -> ChunkSettings | None:
    """The chunk size and overlap a collection was built with, cut by this version's rules;
    None if what is stored cannot be read as such."""
    try:
        return ChunkSettings(int(stored["max_tokens"]), int(stored["overlap_tokens"]))
    except (KeyError, TypeError, ValueError, ConfigError):
        return None


def _only_version_differs(stored: dict[str, Any], chunker: ChunkSettings) -> bool:
    return {**stored, "version": chunker.version} == chunker.to_dict()


def _prepare(
    col: Collection,
    overrides: dict[str, Any],
    reembed: bool,
    summary: IndexSummary,
    encoder_factory: EncoderFactory,
    progress: Progress,
) -> tuple[EncoderSettings, ChunkSettings]:
    """Settings for this run; on --reembed, drop every vector (and the FAISS file) first, but
    only once the new encoder has loaded and given a vector: a model that cannot load (a typo
    in --model) leaves every vector in place."""
    store = col.store
    settings = col.wanted_settings(overrides, reembed)
    chunker = ChunkSettings.for_encoder(settings.pooling, settings.max_length)
    stored_chunker = store.get_meta("chunker")
    embedded = store.counts()["embedded"]
    if stored_chunker is not None and embedded and not reembed:
        kept = _stored_budget(stored_chunker)
        if kept is not None and kept.max_tokens != chunker.max_tokens:
            # A collection keeps the chunk size it was built with: a new default never
            # re-embeds a whole collection unasked (nor refuses to index it).
            summary.notices.append(
                f"this collection keeps its {kept.max_tokens}-token chunks; new collections "
                f"use {chunker.max_tokens}, for better semantic search (README: Evaluate and "
                "calibrate); `tpsearch index --reembed` re-cuts and re-embeds every file"
            )
        chunker = kept or chunker
    rechunk = stored_chunker is not None and stored_chunker != chunker.to_dict()
    if rechunk and embedded and not reembed and _only_version_differs(stored_chunker, chunker):
        # Newer cutting rules, same budget: the stored vectors are still those of their chunks'
        # text, so files are re-cut as they change rather than all re-embedded now.
        summary.notices.append(
            f"this version of tpsearch cuts chunks a little differently (chunker version "
            f"{stored_chunker.get('version')} -> {chunker.version}): changed files get the new "
            "cut, and `tpsearch index --reembed` re-cuts and re-embeds every file"
        )
        rechunk = False
    if rechunk and embedded and not reembed:
        raise CollectionError(
            f"this collection was chunked with other settings ({stored_chunker}, now "
            f"{chunker.to_dict()}): run `tpsearch index --reembed` to re-chunk and re-embed"
        )
    clear = reembed and embedded
    if clear:
        _try_encoder(col, settings, encoder_factory, progress)
        col.vectors_path().unlink(missing_ok=True)  # never serve the old vectors again
        col.vectors.forget()
    # One transaction: a crash never leaves the old settings behind with their vectors gone.
    with store.transaction():
        if clear:
            store.clear_vectors()
            store.set_meta(
                vectors_epoch=col.vectors_epoch() + 1,
                fingerprint=None,
                model_id=None,
                dim=None,
                encoder=None,
            )
        if rechunk:
            store.mark_all_for_rechunk()
        store.set_meta(encoder_settings=storable(settings), chunker=chunker.to_dict())
    return settings, chunker


def _try_encoder(
    col: Collection, settings: EncoderSettings, factory: EncoderFactory, progress: Progress
) -> None:
    """Load the encoder (kept for the run) and check it gives one finite vector."""
    from tpsearch.collection.embedding import check_vectors

    progress.start("load", None)
    try:
        encoder = col.encoder(settings, factory)
    except TpsearchError as error:
        raise type(error)(f"{error} (--reembed changed nothing: every vector is kept)") from None
    check_vectors(encoder.encode(["tpsearch"]), 1, encoder.dim, [0])
    progress.finish("load")


def _stored_scan_settings(col: Collection, scan: ScanOverrides) -> ScanSettings:
    if scan.complete:  # e.g. --reset-filters: damaged stored settings can be replaced
        return ScanSettings()
    stored = col.store.get_meta("scan", {})
    return ScanSettings.from_dict(stored)


@dataclass(frozen=True)
class SourcePlan:
    """Which files and folders a run scans, remembers and forgets."""

    scan: list[Path]  # absolute
    remembered: list[str]  # relative to the root, as stored
    forgotten: list[str]


def _plan_sources(col: Collection, given: list[Path] | None, forget: list[Path]) -> SourcePlan:
    """What to scan: the given paths (remembered), else the remembered ones, else (on a first
    run) the root. Forgotten paths must be remembered ones; a run that forgets scans only the
    paths it was given."""
    stored_rels: list[str] | None = col.store.get_meta("sources")
    stored = [col.root / rel for rel in stored_rels or []]
    forgotten = []
    for path in forget:  # relative to the current folder, or as listed (to the root)
        relative = [relative_to_root(Path(os.path.abspath(path)), col.root), path.as_posix()]
        rel = next((r for r in relative if r in (stored_rels or [])), None)
        if rel is None:
            listed = ", ".join(stored_rels or []) or "none"
            raise ConfigError(
                f"{path} is not a remembered file or folder (remembered, relative to "
                f"{col.root}: {listed}): --forget takes one of those"
            )
        forgotten.append(rel)
    stored = [p for p in stored if relative_to_root(p, col.root) not in forgotten]
    scan = stored if stored_rels is not None else [col.root]
    if given or forgotten:
        scan = given or []
    remembered = [relative_to_root(p, col.root) for p in iter_sources([*stored, *scan])]
    return SourcePlan(scan, remembered, forgotten)


def _save_vectors(col: Collection, progress: Progress) -> None:
    """Bring the FAISS file in step with SQLite, save it if it changed, drop stale files."""
    dim = col.store.get_meta("dim")
    if dim is None:
        return
    if not col.vectors.saved_in_step():  # else a run that changed nothing: no file to load
        progress.start("vectors", None)
        with col.store.snapshot():
            col.vectors.in_step(dim)
        col.vectors.save()
    current = col.vectors_path()
    for stale in col.folder.glob("vectors-*.faiss*"):  # older epochs, temp files of dead runs
        if stale != current:
            stale.unlink(missing_ok=True)
    progress.finish("vectors")
