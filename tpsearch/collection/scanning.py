"""Phase 1 of `tpsearch index`: find what changed on disk and commit it, one file at a time.

A file whose stat signature (size, mtime, ctime, inode and device, as git compares them)
matches its row is unchanged without being read; otherwise it is read and hashed, and
re-chunked only if its content changed. Each file is one transaction: its row, chunks and
full-text entries are replaced together, so a crash leaves either version, never a mix. The
stat recorded is the one taken before reading, so a file that changes while it is read looks
changed to the next run. Files gone from a scanned folder are removed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from tpsearch.collection.chunking import ChunkSettings, chunk_document, detect_format, heading_text
from tpsearch.collection.documents import Unreadable, read_bytes, read_document
from tpsearch.collection.schema import STAT_COLUMNS
from tpsearch.collection.sources import (
    Candidate,
    ScanSettings,
    Signature,
    Skip,
    SkipReason,
    is_under,
    relative_to_root,
)
from tpsearch.collection.walk import walk

if TYPE_CHECKING:
    from tpsearch.collection.facade import Collection
    from tpsearch.collection.indexing import IndexSummary, Progress
    from tpsearch.collection.schema import FileRow
    from tpsearch.collection.store import Store

# A file modified this close to the scan may change again within the same mtime tick; store
# mtime 0 so the next run compares its hash instead of trusting its stat ("racy git").
RACY_NS = 2_000_000_000
CONTENT_SKIPS = frozenset({"binary", "undecodable", "too-large"})


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def scan_sources(
    col: Collection,
    sources: list[Path],
    settings: ScanSettings,
    chunker: ChunkSettings,
    summary: IndexSummary,
    progress: Progress,
    after_file: Callable[[], None],
) -> None:
    """Commit every changed file of `sources`, calling `after_file` after each one."""
    store = col.store
    known = store.files()
    cached = {row.path: row for row in store.skipped() if row.reason in CONTENT_SKIPS}
    fresh_after = time.time_ns() - RACY_NS
    for source in sources:
        source_rel = relative_to_root(source, col.root)
        if not source.exists():  # deleted, or on a disk not mounted now: only the user knows
            kept = sum(is_under(path, source_rel) for path in known)
            summary.notices.append(
                f"{source_rel} is missing (deleted, moved, or on a disk that is not mounted?): "
                f"its {kept} files are kept; `tpsearch index --forget {source_rel}` removes them"
            )
            continue
        walked = walk(source, col.root, settings, own_folder=col.folder)
        walked_files, skips = walked.files, walked.skipped
        if settings.include and not walked_files and source.is_dir():
            shown = " ".join(f"--include {p!r}" for p in settings.include)
            summary.notices.append(
                f"no file in {source_rel} matches {shown}: patterns are relative to the "
                f"collection root, {col.root}"
            )
        live: set[str] = set()
        todo: list[Candidate] = []
        for file in walked_files:
            row = known.get(file.rel)
            if row and row.sha256 and _same_stat(row.stat, file):
                summary.unchanged += 1
                live.add(file.rel)
            elif row is None and (hit := cached.get(file.rel)) and _same_stat(hit.stat, file):
                skips.append(Skip(file.rel, cast(SkipReason, hit.reason), hit.detail, hit.stat))
            else:
                todo.append(file)
        progress.start("scan", len(todo))
        for file in todo:
            outcome = _index_file(store, file, known.get(file.rel), settings, chunker, fresh_after)
            if outcome.skip is not None:
                skips.append(outcome.skip)
            else:
                live.add(file.rel)
                summary.chunks_written += outcome.chunks
                if outcome.kind == "new":
                    summary.new += 1
                elif outcome.kind == "updated":
                    summary.updated += 1
                else:
                    summary.unchanged += 1
            progress.advance("scan")
            after_file()
        progress.finish("scan")
        gone = [path for path in known if is_under(path, source_rel) and path not in live]
        summary.removed += store.remove_files(gone)
        store.replace_skips([source_rel], [_skip_row(s) for s in skips])
        summary.skips += skips
    summary.skipped = len(summary.skips)


def forget_sources(store: Store, forgotten: list[str], kept: list[str]) -> int:
    """Remove the files and skips under `forgotten` sources but not under `kept` ones (all
    root-relative); how many files were removed."""
    gone = [
        path
        for path in store.files()
        if any(is_under(path, f) for f in forgotten) and not any(is_under(path, k) for k in kept)
    ]
    removed = store.remove_files(gone)
    store.replace_skips(forgotten, [])  # the kept sources' skips come back with their scan
    return removed


def _same_stat(recorded: Signature | None, file: Candidate) -> bool:
    """The recorded stat matches, and can be trusted (mtime 0 marks one that cannot)."""
    return recorded is not None and bool(recorded.mtime_ns) and recorded == file.stat


def _skip_row(skip: Skip) -> dict[str, Any]:
    stat = asdict(skip.stat) if skip.stat is not None else dict.fromkeys(STAT_COLUMNS)
    return {"path": skip.rel, "reason": skip.reason, "detail": skip.detail, **stat}


@dataclass(frozen=True)
class FileOutcome:
    """What reading one file did."""

    kind: Literal["new", "updated", "unchanged", "skipped"]
    chunks: int = 0  # chunks written
    skip: Skip | None = None  # why, when skipped


def _index_file(
    store: Store,
    file: Candidate,
    row: FileRow | None,
    settings: ScanSettings,
    chunker: ChunkSettings,
    fresh_after: int,
) -> FileOutcome:
    """Read, and if the content changed, chunk and commit one file (one transaction).

    The stat recorded is the one taken before reading: if the file changes after that, the
    next run sees a different stat and looks again.
    """
    stat = file.stat
    if stat.mtime_ns >= fresh_after:  # may change again within its mtime tick: check next time
        stat = replace(stat, mtime_ns=0)
    data = read_bytes(file.path, settings.max_file_bytes)
    if isinstance(data, Unreadable):
        return FileOutcome("skipped", skip=Skip(file.rel, data.reason, data.detail))
    if len(data) > settings.max_file_bytes:
        detail = f"{max(len(data), file.stat.size)} bytes > {settings.max_file_bytes}"
        return FileOutcome("skipped", skip=Skip(file.rel, "too-large", detail, stat))
    doc = read_document(data)
    if isinstance(doc, Unreadable):
        return FileOutcome("skipped", skip=Skip(file.rel, doc.reason, doc.detail, stat))
    if row is not None and row.sha256 == doc.sha256:
        store.touch_file(file.rel, stat)
        return FileOutcome("unchanged")
    fmt = detect_format(file.path.name)
    chunks = chunk_document(doc.text, fmt, chunker, doc.encoding, doc.bom)
    record = {
        "path": file.rel,
        **asdict(stat),
        "sha256": doc.sha256,
        "encoding": doc.encoding,
        "format": fmt,
        "indexed_at": now(),
    }
    rows = [
        {
            "seq": seq,
            "start_line": c.start_line,
            "end_line": c.end_line,
            "start_byte": c.start_byte,
            "end_byte": c.end_byte,
            "heading": heading_text(c.heading),
            "text": c.text,
            "tokens": c.tokens,
        }
        for seq, c in enumerate(chunks)
    ]
    store.replace_file(record, rows)
    return FileOutcome("updated" if row is not None else "new", len(rows))
