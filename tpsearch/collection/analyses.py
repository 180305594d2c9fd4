"""Dedupe and cluster a collection from what it stores: texts, line ranges, hashes, vectors.

No model is loaded and no user file is read or changed. At `chunk` level the items are the
stored chunks; at `file` level they are whole files, their text rebuilt from their chunks
(each chunk is the exact decoded slice `file[start_byte:end_byte]`, so cutting the chunker's
overlap by byte offset gives every non-blank byte of the file once), their vector the mean of
their chunks' vectors when every chunk is embedded. Vectors are read in the collection's
centred space (`vector_space`), where a cosine means the same on every model, unless a caller
asks for the raw space to compare.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

import numpy as np

from tpsearch.analysis import (
    ClusterReport,
    ClusterSettings,
    DedupeReport,
    DedupeSettings,
    Embeddings,
    Projection,
    TextItem,
    cluster_items,
    find_duplicates,
    pool_by_owner,
    project_2d,
)
from tpsearch.collection.schema import ChunkRecord
from tpsearch.collection.store import Store
from tpsearch.collection.vector_space import current_space
from tpsearch.errors import choice_error

Level = Literal["file", "chunk"]
LEVELS: tuple[str, ...] = get_args(Level)


@dataclass(frozen=True)
class Items:
    """What the analysis compares at one level, and the vectors of those that have one."""

    level: Level
    items: tuple[TextItem, ...]
    embeddings: Embeddings
    pending: int  # items without a vector yet (a file counts when any chunk is pending)


@dataclass(frozen=True)
class ClusterOutcome:
    report: ClusterReport
    projection: Projection | None  # the 2-D map, when asked for
    items: tuple[TextItem, ...] = ()  # what was clustered (and what was not), by id in the report


def read_items(store: Store, level: Level, corrected: bool = True) -> Items:
    """The collection's files or chunks as `TextItem`s, with their vectors (one snapshot),
    centred unless `corrected=False`."""
    if level not in LEVELS:
        raise choice_error("level", level, LEVELS)
    with store.snapshot():
        records = store.chunk_records()
        dim = store.get_meta("dim")
        ids, vectors = store.all_vectors(dim) if dim else (np.empty(0, np.int64), None)
        space = current_space(store) if corrected and vectors is not None else None
    if space is not None and vectors is not None and len(vectors):
        vectors = space.apply(vectors)
    chunk_vectors = Embeddings(ids, vectors) if vectors is not None else Embeddings.empty()
    if level == "chunk":
        items = tuple(_chunk_item(record) for record in records)
        return Items("chunk", items, chunk_vectors, len(items) - len(chunk_vectors.ids))

    files = [list(chunks) for _, chunks in itertools.groupby(records, lambda r: r.file_id)]
    embedded = set(chunk_vectors.ids.tolist())
    complete = [chunks for chunks in files if all(c.chunk_id in embedded for c in chunks)]
    rows = chunk_vectors.rows_for([c.chunk_id for chunks in complete for c in chunks])
    owners = np.array([c.file_id for chunks in complete for c in chunks], dtype=np.int64)
    if len(rows):
        file_vectors = pool_by_owner(
            Embeddings(chunk_vectors.ids[rows], chunk_vectors.vectors_at(rows)), owners
        )
    else:
        file_vectors = Embeddings.empty()
    items = tuple(_file_item(chunks) for chunks in files)
    return Items("file", items, file_vectors, len(files) - len(complete))


def dedupe(
    store: Store, level: Level, settings: DedupeSettings, corrected: bool = True
) -> DedupeReport:
    items = read_items(store, level, corrected)
    return find_duplicates(items.items, items.embeddings, settings)


def cluster(
    store: Store,
    level: Level,
    settings: ClusterSettings,
    with_map: bool = False,
    corrected: bool = True,
) -> ClusterOutcome:
    items = read_items(store, level, corrected)
    passages = None
    if level == "file" and settings.k == "auto":
        passages = _passages_per_file(read_items(store, "chunk", corrected), settings.seed)
    report = cluster_items(items.items, items.embeddings, settings, passages)
    projection = project_2d(items.embeddings, report, settings.seed) if with_map else None
    return ClusterOutcome(report, projection, items.items)


PASSAGES_PER_FILE = 32


def _passages_per_file(chunks: Items, seed: int) -> np.ndarray:
    """Vectors of at most `PASSAGES_PER_FILE` passages of each file (a seeded sample): what
    k is chosen on, so that each file has a say and one long file does not decide (the FastAPI
    docs' release notes hold 2,416 of 4,782 passages; on all of them k=2 split those from
    the rest)."""
    rows_by_file: dict[str, list[int]] = {}
    row_of = {int(chunk_id): row for row, chunk_id in enumerate(chunks.embeddings.ids)}
    for item in chunks.items:
        if item.id in row_of:
            rows_by_file.setdefault(item.path, []).append(row_of[item.id])
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for path in sorted(rows_by_file):
        rows = rows_by_file[path]
        if len(rows) > PASSAGES_PER_FILE:
            rows = rng.choice(rows, PASSAGES_PER_FILE, replace=False).tolist()
        chosen.extend(rows)
    return chunks.embeddings.vectors_at(np.array(sorted(chosen), dtype=np.int64))


def _chunk_item(record: ChunkRecord) -> TextItem:
    return TextItem(
        id=record.chunk_id,
        path=record.path,
        text=record.text,
        size=len(record.text.encode("utf-8")),
        mtime=_mtime(record),
        start_line=record.start_line,
        end_line=record.end_line,
    )


def _file_item(chunks: Sequence[ChunkRecord]) -> TextItem:
    first = chunks[0]
    return TextItem(
        id=first.file_id,
        path=first.path,
        text=file_text(chunks),
        size=first.file_size,
        mtime=_mtime(first),
        digest=first.sha256 or None,
    )


def file_text(chunks: Sequence[ChunkRecord]) -> str:
    """A file's text from its chunks in byte order, each overlap with the previous chunk cut
    off by byte offset; the blank space between chunks becomes one blank line."""
    parts: list[str] = []
    end = 0
    for chunk in chunks:
        if chunk.end_byte <= end:
            continue  # wholly inside the previous chunk
        text = chunk.text
        if chunk.start_byte < end:
            text = _after_byte(text, chunk.encoding, end - chunk.start_byte)
        elif parts and chunk.start_byte > end:
            parts.append("\n\n")
        parts.append(text)
        end = chunk.end_byte
    return "".join(parts)


def _after_byte(text: str, encoding: str, skip: int) -> str:
    """`text` without its first `skip` bytes in `encoding` (a character boundary)."""
    try:
        return text.encode(encoding)[skip:].decode(encoding)
    except (UnicodeError, LookupError):
        # A stateful codec cannot be cut mid-stream: keep the overlap rather than guess.
        return text


def _mtime(record: ChunkRecord) -> float:
    """The file's modification time; for a file changed while it was scanned (stored as 0),
    the time it was indexed, which is within seconds of it."""
    if record.mtime_ns:
        return record.mtime_ns / 1e9
    return datetime.fromisoformat(record.indexed_at).timestamp()
