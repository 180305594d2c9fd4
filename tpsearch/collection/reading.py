"""Reading what a collection holds: an indexed file's text, and the passages nearest a passage.

Both are for clients that do not hold the files themselves (an AI agent over MCP): `read_indexed`
only ever reads a file the collection indexed, inside its root. A path that leaves the root
(`..`, an absolute path elsewhere, a symlink pointing out) or names a file that was not indexed
is refused, whatever exists on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from tpsearch.collection.documents import Unreadable, read_bytes, read_document
from tpsearch.collection.passages import similar
from tpsearch.collection.search import QueryResult, nearest, stored_hits
from tpsearch.errors import CollectionError, ConfigError

if TYPE_CHECKING:
    from tpsearch.collection.facade import Collection


MAX_READ_BYTES = 32 << 20  # what `get` returns at most: indexed files are far smaller


@dataclass(frozen=True)
class IndexedText:
    path: str  # relative to the collection root, as search hits name it
    start_line: int  # 1-based, inclusive
    end_line: int
    total_lines: int
    text: str


def indexed_path(col: Collection, path: str) -> tuple[str, Path]:
    """The root-relative name and the real location of an indexed file, or CollectionError.

    `path` is root-relative (as in search hits) or absolute inside the root. Refused: `..`
    anywhere, an absolute path outside the root, a name the collection did not index, and a
    file whose real location (symlinks resolved) is outside the root.
    """
    if not path or "\x00" in path:
        raise ConfigError("give the path of an indexed file, as search results name it")
    given = Path(path)
    if ".." in PurePosixPath(path.replace("\\", "/")).parts:
        raise CollectionError(f"refused: {path!r} contains '..'; give a path inside the collection")
    root = Path(os.path.realpath(col.root))
    if given.is_absolute():
        absolute = Path(os.path.normpath(given))
        if not absolute.is_relative_to(col.root) and not absolute.is_relative_to(root):
            raise CollectionError(f"refused: {path} is outside the collection ({col.root})")
        base = col.root if absolute.is_relative_to(col.root) else root
        rel = absolute.relative_to(base).as_posix()
    else:
        rel = PurePosixPath(os.path.normpath(path).replace("\\", "/")).as_posix()
    with col.store.snapshot():
        files = col.store.file_ids()
    if rel not in files:
        raise CollectionError(
            f"refused: {path} is not a file of this collection (run `tpsearch query` to find "
            "one, or `tpsearch index` to add it)"
        )
    real = Path(os.path.realpath(root / rel))
    if not real.is_relative_to(root):
        raise CollectionError(f"refused: {path} leads outside the collection (a symlink)")
    if real.relative_to(root).as_posix() not in files:  # a link made since, to a file not indexed
        raise CollectionError(f"refused: {path} now leads to a file the collection did not index")
    return rel, real


def read_indexed(
    col: Collection, path: str, start_line: int | None = None, end_line: int | None = None
) -> IndexedText:
    """The current text of an indexed file, or of lines start_line..end_line (1-based)."""
    if (start_line is not None and start_line < 1) or (end_line is not None and end_line < 1):
        raise ConfigError("line numbers start at 1")
    rel, real = indexed_path(col, path)
    data = read_bytes(real, MAX_READ_BYTES)  # no blocking open (a FIFO), regular files only
    if isinstance(data, Unreadable):
        raise CollectionError(f"cannot read {rel}: {data.detail}")
    if len(data) > MAX_READ_BYTES:
        raise CollectionError(f"refused: {rel} is now over {MAX_READ_BYTES >> 20} MB")
    doc = read_document(data)
    if isinstance(doc, Unreadable):
        raise CollectionError(f"cannot read {rel}: {doc.detail}")
    lines = doc.text.splitlines(keepends=True)
    first = start_line or 1
    last = min(end_line or len(lines), len(lines))
    if first > max(len(lines), 1):
        raise ConfigError(f"{rel} has {len(lines)} lines; start_line {first} is past its end")
    if last < first:
        raise ConfigError(f"end_line {end_line} is before start_line {first}")
    return IndexedText(rel, first, last, len(lines), "".join(lines[first - 1 : last]))


def run_similar(
    col: Collection, *, chunk_id: int | None = None, path: str | None = None, k: int = 10
) -> QueryResult:
    """The k passages nearest a stored passage (`chunk_id`, as `passages.similar` ranks them)
    or a whole file (`path`: the mean of its chunk vectors), other than itself. No model."""
    if (chunk_id is None) == (path is None):
        raise ConfigError("give either a chunk_id or a path")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if chunk_id is not None:
        return similar(col, chunk_id, k)
    assert path is not None
    store = col.store
    rel = indexed_path(col, path)[0]
    with store.snapshot():
        dim = store.get_meta("dim")
        if dim is None or not store.has_vectors():
            raise CollectionError("no chunk has a vector yet: run `tpsearch index` with a model")
        own = store.chunk_ids_of_files([store.file_ids()[rel]])
        unembedded = store.without_vectors(own.tolist())
        vectors = store.vectors_for(np.array([i for i in own if i not in unembedded]), dim)
        if not len(vectors):
            raise CollectionError(f"{rel} has no vector yet: run `tpsearch index` to embed it")
        mean = vectors.mean(axis=0)
        query = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        ranked = nearest(col, query, k, leave_out=own.tolist())
        hits = stored_hits(store, ranked, [], k)
    return QueryResult(f"like {rel}", "semantic", "semantic", hits, [])
