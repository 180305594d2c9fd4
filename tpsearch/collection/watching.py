"""`tpsearch watch`: keep a collection current while files change.

`watchfiles` (Rust's `notify`: inotify, FSEvents, ReadDirectoryChangesW) reports changes in
debounced sets: a burst such as `git checkout` of 1,000 files arrives as a few sets, not 1,000.
Each set becomes one batch through the ordinary incremental `Collection.index`: the folders
holding the changed paths are walked with the collection's ignore rules and filters, and the
stat signatures and content hashes decide what is read, chunked and embedded, exactly as in
`tpsearch index`. So a batch holds the writer lock only while it writes (queries, `status` and
`dedupe` never wait; a manual `tpsearch index` waits its turn), and a batch killed at any
moment leaves what `tpsearch index` killed there leaves: complete files, complete vectors.

The collection object (and with it the loaded model) lives as long as the watch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tpsearch.collection.sources import IGNORE_FILES, VCS_DIRS, ScanSettings, iter_sources
from tpsearch.collection.walk import unreachable
from tpsearch.errors import ModelLoadError, TpsearchError, first_line

if TYPE_CHECKING:
    from tpsearch.collection.facade import Collection, EncoderFactory
    from tpsearch.collection.indexing import IndexSummary
    from tpsearch.engine.encoder import Encoder
    from tpsearch.engine.settings import EncoderSettings

Phase = Literal["indexing", "watching", "waiting", "stopped"]
DEBOUNCE_MS = 1000  # the longest a burst is gathered before its batch starts
STEP_MS = 100  # a quiet spell this long ends a burst (a single save: indexed ~0.1 s later)
TICK_MS = 200  # with no change, the watch wakes this often (to start, to notice `stop`)
RESTART_PAUSE_S = 0.5  # between one watch and the next, when one must start again


def _targets(sources: list[Path]) -> list[Path]:
    """The folders to watch for these sources (a remembered file: its folder)."""
    return sorted({s if s.is_dir() else s.parent for s in sources if s.exists()})


def _identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of a watched folder: a folder deleted and made again is another one."""
    try:
        info = folder.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


@dataclass(frozen=True)
class WatchState:
    """What a watch is doing, for a status line; sent on every change of phase."""

    phase: Phase
    files: int  # files in the collection
    watched: tuple[str, ...]  # the sources watched, relative to the collection root
    last: IndexSummary | None  # the last batch (the catch-up run at the start counts)
    batches: int  # batches run since the start (not counting the catch-up)
    detail: str = ""  # who holds the writer lock; why the model cannot load; ...

    def line(self) -> str:
        """One line: `watching 12 files in docs · last batch: 1 new, 0 updated ... in 0.4 s`."""
        where = ", ".join(self.watched) or "nothing"
        head = {
            "indexing": f"indexing changes in {where}",
            "watching": f"watching {self.files} file{'' if self.files == 1 else 's'} in {where}",
            "waiting": f"waiting for the writer lock ({self.detail})",
            "stopped": f"stopped; {self.files} files, everything committed",
        }[self.phase]
        parts = [head]
        if self.last is not None:
            parts.append(f"last batch: {_changes(self.last)} in {self.last.seconds:.1f} s")
            if self.last.pending:
                parts.append(f"{self.last.pending} chunks without a vector")
        if self.detail and self.phase != "waiting":
            parts.append(self.detail)
        return " · ".join(parts)


def _changes(summary: IndexSummary) -> str:
    counts = [("new", summary.new), ("updated", summary.updated), ("removed", summary.removed)]
    done = [f"{n} {what}" for what, n in counts if n]
    done += [f"{summary.embedded} chunks embedded"] if summary.embedded else []
    return ", ".join(done) or "nothing changed"


class Watcher:
    """Watches `col`'s sources and indexes each debounced batch of changes until `stop` is set.

    `paths`: what to watch (indexed first and remembered, as `tpsearch index PATH` does);
    None, the collection's remembered sources. `on_state` hears every change of phase.
    """

    def __init__(
        self,
        col: Collection,
        paths: list[Path] | None = None,
        *,
        on_state: Callable[[WatchState], None] | None = None,
        stop: threading.Event | None = None,
        overrides: Mapping[str, Any] | None = None,
        encoder_factory: EncoderFactory | None = None,
        batch_size: int = 32,
        debounce_ms: int = DEBOUNCE_MS,
        step_ms: int = STEP_MS,
    ) -> None:
        self.col = col
        self.paths = paths
        self.on_state = on_state or (lambda state: None)
        self.stop = stop or threading.Event()
        self.overrides = dict(overrides or {})
        self.batch_size = batch_size
        self.debounce_ms, self.step_ms = debounce_ms, step_ms
        self.last: IndexSummary | None = None
        self.batches = 0
        self.detail = ""
        self._factory = encoder_factory
        self._load_error: ModelLoadError | None = None

    def run(self) -> None:
        """Start watching, catch up (one ordinary index run: what changed while nobody
        watched), then index every batch of changes; returns when `stop` is set, after the
        batch in progress is committed.

        The watch starts again, with a catch-up run, when what it watches changes under it:
        the remembered sources change (`tpsearch index PATH` or `--forget` from another
        process), a watched folder is deleted and made again (`rm -rf docs && build`), or
        the watcher itself fails (a file name that is not UTF-8 stops watchfiles)."""
        from tpsearch.collection.indexing import check_arguments

        given = check_arguments(self.paths, self.batch_size)
        if given is None and self.col.store.get_meta("sources") is None:
            self._index(None)  # a new collection: its first run decides what it holds
        watched = given if given is not None else self.sources()
        paths = self.paths
        while not self.stop.is_set():
            targets = _targets(watched)
            if not targets:
                self._index(paths)  # says why there is nothing to watch
                break
            again = self._watch(targets, paths)
            if not again:
                break
            paths, watched = None, self.sources()  # from now on: what the collection remembers
            self.stop.wait(RESTART_PAUSE_S)
        self._tell("stopped")

    def _watch(self, targets: list[Path], paths: list[Path] | None) -> bool:
        """Watch `targets` until `stop` (False) or until the watch must start again (True)."""
        from watchfiles import DefaultFilter, watch

        own = DefaultFilter(ignore_dirs=sorted(VCS_DIRS), ignore_paths=[self.col.folder])
        caught_up = False
        marks = {target: _identity(target) for target in targets}
        sources: list[Path] = []
        try:
            for changes in watch(
                *map(str, targets),
                watch_filter=own,
                debounce=self.debounce_ms,
                step=self.step_ms,
                stop_event=self.stop,
                rust_timeout=TICK_MS,
                yield_on_timeout=True,  # the first tick says the watch has started
                raise_interrupt=True,
            ):
                if not caught_up:  # changes from now on are seen: none can slip between
                    self._index(paths)  # remembers `paths`, as `tpsearch index PATH` does
                    sources, caught_up = self.sources(), True
                    if _targets(sources) != targets:  # changed before the watch began
                        return True
                    self._tell("watching")
                folders = self.folders_to_scan(sources, [Path(path) for _, path in changes])
                if folders:
                    self.batches += 1
                    self._index(folders)
                    self._tell("watching")
                if self.stop.is_set():
                    return False
                moved = any(_identity(target) != mark for target, mark in marks.items())
                if moved or set(self.sources()) != set(sources):  # (runs may reorder them)
                    return True
        except (OSError, RuntimeError) as error:  # watchfiles' own errors are RuntimeErrors
            self.detail = f"the watch restarted ({first_line(error)})"
            return not self.stop.is_set()
        return False

    def sources(self) -> list[Path]:
        """The remembered files and folders (absolute): what the watch watches."""
        return [self.col.root / rel for rel in self.col.store.get_meta("sources", [])]

    def folders_to_scan(self, sources: list[Path], changed: list[Path]) -> list[Path]:
        """The folders a batch walks for `changed` paths: each one's nearest existing folder
        inside its source (a remembered file: the file itself), none for a path the walk
        would never reach (hidden, ignored, excluded, inside the collection's own folder, or
        reached through a link that leads out of its source, which `index` skips too). A
        changed ignore file rescans its folder, so that what it now ignores leaves."""
        settings = ScanSettings.from_dict(self.col.store.get_meta("scan", {}))
        root = self.col.root
        own = Path(os.path.realpath(self.col.folder))
        real_sources = [(s, Path(os.path.realpath(s))) for s in sources]
        scan: set[Path] = set()
        for changed_path in changed:
            real = Path(os.path.realpath(changed_path))
            if real.is_relative_to(own) or changed_path.is_relative_to(self.col.folder):
                continue
            found = next(
                ((s, r) for s, r in real_sources if real == r or real.is_relative_to(r)), None
            )
            if found is None or not found[0].exists():
                continue  # outside what is indexed (a link out); or a missing source
            source, real_source = found
            path = source / real.relative_to(real_source) if real != real_source else source
            if not source.is_dir():
                scan.add(source)
                continue
            if path.name in IGNORE_FILES and not unreachable(source, root, settings, path.parent):
                scan.add(path.parent)  # its rules changed: walk its folder again
                continue
            if unreachable(source, root, settings, path):
                continue
            folder = path.parent if path != source else source
            while not folder.is_dir() and folder != source:
                folder = folder.parent
            scan.add(folder)
        return list(iter_sources(list(scan)))

    # --- one batch ---------------------------------------------------------------------------

    def _index(self, paths: list[Path] | None) -> None:
        from tpsearch.collection.indexing import IndexSummary

        self._tell("indexing")
        try:
            summary: IndexSummary | None = self.col.index(
                paths,
                overrides=self.overrides,
                encoder_factory=self._encoder_factory,
                batch_size=self.batch_size,
                on_busy=self._busy,
            )
            self.detail = ""
        except ModelLoadError as error:  # the scan is committed: keyword search is current
            summary = error.partial if isinstance(error.partial, IndexSummary) else None
            self.detail = f"keywords only, the model cannot load ({error})"
        except TpsearchError as error:  # a full disk, a locked database: the next batch retries
            summary = None
            self.detail = f"the last batch failed: {first_line(error)}"
        self.last = summary

    def _encoder_factory(self, settings: EncoderSettings) -> Encoder:
        """The collection's factory, but a model that failed to load is not tried per batch."""
        if self._load_error is not None:
            raise self._load_error
        from tpsearch.collection import facade

        try:
            return (self._factory or facade.default_encoder_factory)(settings)
        except ModelLoadError as error:
            self._load_error = error
            raise

    def _busy(self, owner: str) -> None:
        self.detail = owner
        self._tell("waiting")

    def _tell(self, phase: Phase) -> None:
        watched = tuple(self.col.store.get_meta("sources", []))
        files = self.col.store.counts()["files"]
        self.on_state(WatchState(phase, files, watched, self.last, self.batches, self.detail))
