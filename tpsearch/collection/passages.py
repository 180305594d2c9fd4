"""A hit seen in its file, and the passages most like it (for `tpsearch query -i`).

`passage` reads the file as indexing read it and returns the hit's lines with some context,
so a preview shows the passage where it lives; a file changed or gone since it was indexed
falls back to the stored chunk text, and says so. `similar` ranks chunks by their stored
vectors' cosine to the chunk's own stored vector (no model needed), or, in a collection
without vectors, by the chunk's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tpsearch.collection.documents import Document, read_bytes, read_document
from tpsearch.collection.search import (
    Mode,
    QueryResult,
    fts_expression,
    nearest,
    query_terms,
    stored_hits,
)

if TYPE_CHECKING:
    from tpsearch.collection.facade import Collection

CONTEXT_LINES = 3  # lines shown before and after the passage
MAX_LINES = 200  # of a passage; a preview is not an editor
PREVIEW_MAX_BYTES = 64 << 20  # a file grown beyond this since it was indexed: stored text
KEYWORDS_OF_A_PASSAGE = 24  # words of a passage searched for, when there are no vectors


@dataclass(frozen=True)
class Passage:
    path: str  # relative to the collection root
    lines: list[tuple[int, str]]  # (1-based line number, text), the passage with its context
    start_line: int  # the passage itself: lines start_line..end_line
    end_line: int
    stale: bool  # the file changed (or went) since it was indexed: the stored text is shown


def passage(col: Collection, chunk_id: int, context: int = CONTEXT_LINES) -> Passage | None:
    """The chunk's lines in its file with `context` lines around; None for a chunk gone."""
    row = col.store.chunk_rows([chunk_id]).get(chunk_id)
    if row is None:
        return None
    start, end = row.start_line, min(row.end_line, row.start_line + MAX_LINES - 1)
    data = read_bytes(col.root / row.path, PREVIEW_MAX_BYTES)  # never blocks on a FIFO
    whole = isinstance(data, bytes) and len(data) <= PREVIEW_MAX_BYTES
    doc = read_document(data) if whole and isinstance(data, bytes) else None
    text = doc.text.splitlines() if isinstance(doc, Document) else []
    chunk_lines = row.text.splitlines()
    shown = text[start - 1 : end]
    if not shown or shown[0].strip() != (chunk_lines[0].strip() if chunk_lines else ""):
        stored = list(enumerate(chunk_lines[: end - start + 1], start))
        return Passage(row.path, stored, start, end, stale=True)
    first, last = max(1, start - context), min(len(text), end + context)
    lines = [(n, text[n - 1]) for n in range(first, last + 1)]
    return Passage(row.path, lines, start, end, stale=False)


def similar(col: Collection, chunk_id: int, k: int = 10) -> QueryResult:
    """The chunks closest to `chunk_id` (itself left out), best first."""
    store = col.store
    with store.snapshot():
        row = store.chunk_rows([chunk_id]).get(chunk_id)
        if row is None:
            return QueryResult("", "semantic", "semantic", [], ["that passage is gone"])
        dim = store.get_meta("dim")
        has_vector = dim is not None and not store.without_vectors([chunk_id])
        terms = query_terms(row.text)[:KEYWORDS_OF_A_PASSAGE]
        label = f"like {row.path}:{row.start_line}"
        if has_vector:
            vector = store.vectors_for(np.array([chunk_id], dtype=np.int64), dim)[0]
            ranked = nearest(col, vector, k, leave_out=[chunk_id])
            notices: list[str] = []
            used: Mode = "semantic"
        else:
            ranked = store.search_text(fts_expression(terms), k + 1) if terms else []
            notices = ["no vector for this passage: similar by its words (BM25)"]
            used = "lexical"
        ranked = [(i, score) for i, score in ranked if i != chunk_id]
        hits = stored_hits(store, ranked, terms, k)
    return QueryResult(label, "semantic", used, hits, notices)
