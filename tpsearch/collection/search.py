"""`tpsearch query`: BM25 over FTS5, cosine similarity over FAISS, fused by score.

Scores depend on the mode: lexical, BM25 (higher is better); semantic, cosine similarity in
the collection's centred space (`analysis.space`: 0 is as related as two random chunks of
the collection, 1 the same direction); hybrid, `LEXICAL_WEIGHT` times the BM25 score over the
query's best BM25 score plus the rest times the cosine over the query's best cosine (1.0:
first on both sides). Score fusion replaced reciprocal-rank fusion, which lost to keywords
alone on real embeddings (benchmarks/search_quality.py has the figures). When vectors cannot
be used (none yet, or the model cannot load) a query falls back to keywords and says so in
`notices`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from tpsearch.collection.chunking import detect_format
from tpsearch.collection.hits import MODES, Hit, Mode, QueryResult
from tpsearch.collection.snippets import document_title, make_snippet
from tpsearch.collection.sources import compile_patterns
from tpsearch.collection.vector_settings import check_same_vectors
from tpsearch.collection.vector_space import current_space
from tpsearch.errors import ConfigError, ModelLoadError, choice_error, first_line

if TYPE_CHECKING:
    from pathspec import PathSpec

    from tpsearch.analysis.space import VectorSpace
    from tpsearch.collection.chunking import Format
    from tpsearch.collection.facade import Collection, EncoderFactory
    from tpsearch.collection.schema import ChunkRow
    from tpsearch.collection.store import Store

# Weight of the keyword side in hybrid scores. Measured on 101 judged questions about the
# FastAPI docs with SmolLM2-135M (file MRR@10): keywords alone 0.727, reciprocal-rank fusion
# 0.700, score fusion 0.759 / 0.767 / 0.769 / 0.770 at weights 0.5 / 0.6 / 0.7 / 0.8 (the
# weight chosen on one half of the questions and scored on the other: +0.03 over keywords).
LEXICAL_WEIGHT = 0.7
SEMANTIC_POOL = 100  # vector candidates rescored in the centred space (at least)
WORD = re.compile(r"\w+")
_STOPWORDS = (
    "a an and are as at be by can do does for from has have how i if in is it its of on or "
    "should so that the their there this to was we what when where which who why will with "
    "you your"
)
STOPWORDS = frozenset(_STOPWORDS.split())  # left out of keyword queries: they match everything


def query_terms(text: str) -> list[str]:
    """Lower-cased words of the query, stop words dropped unless nothing else is left."""
    words = list(dict.fromkeys(w.lower() for w in WORD.findall(text)))
    content = [w for w in words if w not in STOPWORDS]
    return content or words


def fts_expression(terms: Sequence[str]) -> str:
    """Any of the terms, each quoted so that FTS5 syntax in a query is just text."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def fuse(
    lexical: Sequence[tuple[int, float]],
    semantic: Mapping[int, float],
    lexical_weight: float = LEXICAL_WEIGHT,
) -> list[tuple[int, float]]:
    """Hybrid scores of every candidate: each side divided by its best score, weighted.

    `lexical` holds (chunk id, BM25 score) of the keyword candidates, `semantic` the cosine of
    every candidate that has a vector (keyword candidates too). A chunk without a vector is
    scored by its keyword side alone, as if the vectors agreed: its absence from `semantic`
    says nothing against it. Negative cosines count as 0 (unrelated).
    """
    best_lexical = max((score for _, score in lexical), default=0.0)
    best_semantic = max((max(0.0, score) for score in semantic.values()), default=0.0)
    keyword = {i: score / best_lexical if best_lexical > 0 else 0.0 for i, score in lexical}
    fused = []
    for chunk_id in dict.fromkeys([*keyword, *semantic]):
        lex = keyword.get(chunk_id, 0.0)
        if chunk_id not in semantic:
            fused.append((chunk_id, lex))
            continue
        sem = max(0.0, semantic[chunk_id]) / best_semantic if best_semantic > 0 else 0.0
        fused.append((chunk_id, lexical_weight * lex + (1.0 - lexical_weight) * sem))
    return sorted(fused, key=lambda x: (-x[1], x[0]))


def run_query(
    col: Collection,
    text: str,
    *,
    k: int,
    mode: str,
    path: str | None,
    min_score: float | None,
    files: bool,
    overrides: dict[str, Any],
    encoder_factory: EncoderFactory,
    corrected: bool = True,
    context: int | None = None,
) -> QueryResult:
    if mode not in MODES:
        raise choice_error("mode", mode, MODES)
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    if not text.strip():
        raise ConfigError("the query is empty: give some words to search for")
    selected = compile_patterns([path], "path") if path else None  # fails before the model
    if context is not None and context < 0:
        raise ConfigError(f"--context must be 0 or more lines, got {context}")
    notices: list[str] = []
    used = cast(Mode, mode)
    vector, fingerprint = None, None
    if mode != "lexical":
        vector, why, fingerprint = _query_vector(col, text, overrides, encoder_factory)
        if vector is None:
            notices.append(f"{why}: showing keyword (BM25) results only")
            used = "lexical"
    terms = query_terms(text)
    store = col.store
    with store.snapshot():
        if vector is not None and not _vectors_still_of(store, fingerprint, len(vector)):
            notices.append(
                "the collection's vectors changed while this query ran (`tpsearch index "
                "--reembed`?): showing keyword (BM25) results only; run the query again"
            )
            vector, used = None, "lexical"
        file_ids = _matching_files(store, selected) if selected is not None else None
        space = current_space(store) if corrected and vector is not None else None
        counts = store.counts()
        # Never more candidates than chunks: a huge -k must not size the search buffers.
        pool = min(max(30, k * (10 if files else 3)), max(1, counts["chunks"]))
        while True:
            ranked = _ranked(col, used, vector, terms, pool, file_ids, space)
            if min_score is not None:
                ranked = [(i, s) for i, s in ranked if s >= min_score]
            rows = store.chunk_rows([i for i, _ in ranked])
            chosen = _choose(ranked, rows, k, files)
            if len(chosen) == k or not files or pool >= counts["chunks"]:
                break  # --files: a few long files can fill the pool; look deeper for k files
            pool = min(pool * 4, counts["chunks"])
        heads = store.file_heads(list({rows[i].path for i, _ in chosen}))
    if used != "lexical" and counts["pending"]:
        found = "by keywords only" if used == "hybrid" else "only in lexical or hybrid mode"
        notices.append(
            f"{counts['pending']} of {counts['chunks']} chunks have no vector yet and are found "
            f"{found}: run `tpsearch index` to embed them"
        )
    hits = make_hits(chosen, rows, terms, k, files, heads, context)
    return QueryResult(text, cast(Mode, mode), used, hits, notices)


def stored_hits(
    store: Store, ranked: Sequence[tuple[int, float]], terms: Sequence[str], k: int
) -> list[Hit]:
    """`make_hits` for ranked chunk ids read from `store` (rows and titles); call inside the
    snapshot that ranked them."""
    rows = store.chunk_rows([i for i, _ in ranked])
    heads = store.file_heads(list({row.path for row in rows.values()}))
    return make_hits(ranked, rows, terms, k, heads=heads)


def make_hits(
    ranked: Sequence[tuple[int, float]],
    rows: Mapping[int, ChunkRow],
    terms: Sequence[str],
    k: int,
    files: bool = False,
    heads: Mapping[str, tuple[str, str, str]] | None = None,
    context: int | None = None,
) -> list[Hit]:
    """The first `k` ranked chunks that still exist (one per file with `files`), as hits.

    `heads` (`Store.file_heads`) gives each file's format and title; without it the format
    comes from the file's name and hits have no title. `context`: see `make_snippet`.
    """
    hits: list[Hit] = []
    for chunk_id, score in _choose(ranked, rows, k, files):
        row = rows[chunk_id]
        fmt, first_text, first_heading = (heads or {}).get(row.path, ("", "", ""))
        form = cast("Format", fmt) if fmt else detect_format(row.path)
        snippet, spans = make_snippet(row.text, terms, form, context=context)
        hits.append(
            Hit(
                len(hits) + 1,
                score,
                chunk_id,
                row.path,
                row.start_line,
                row.end_line,
                row.heading,
                snippet,
                spans,
                document_title(first_text, first_heading),
            )
        )
    return hits


def _ranked(
    col: Collection,
    used: Mode,
    vector: np.ndarray | None,
    terms: list[str],
    pool: int,
    file_ids: list[int] | None,
    space: VectorSpace | None,
) -> list[tuple[int, float]]:
    """The best `pool` candidates of the mode that runs, best first, as (chunk id, score)."""
    store = col.store
    lexical = _lexical(store, terms, pool, file_ids) if used != "semantic" else []
    semantic: dict[int, float] = {}
    if vector is not None:
        near = _semantic(col, vector, max(pool, SEMANTIC_POOL), file_ids, space)
        candidates = near + [i for i, _ in lexical]
        semantic = _cosines(store, vector, candidates, space)
    if used == "hybrid":
        return fuse(lexical, semantic)
    if used == "semantic":
        return sorted(semantic.items(), key=lambda x: (-x[1], x[0]))
    return lexical


def _choose(
    ranked: Sequence[tuple[int, float]], rows: Mapping[int, ChunkRow], k: int, files: bool
) -> list[tuple[int, float]]:
    """The first `k` ranked chunks that still exist; with `files`, the best one of each file."""
    chosen: list[tuple[int, float]] = []
    seen_paths: set[str] = set()
    for chunk_id, score in ranked:
        row = rows.get(chunk_id)
        if row is None or (files and row.path in seen_paths):
            continue  # a vector of a chunk deleted since the index was saved; or a seen file
        seen_paths.add(row.path)
        chosen.append((chunk_id, score))
        if len(chosen) == k:
            break
    return chosen


def _query_vector(
    col: Collection, text: str, overrides: dict[str, Any], factory: EncoderFactory
) -> tuple[np.ndarray | None, str, str | None]:
    """The query's vector, or None and why not; and the fingerprint of the vectors it is for.

    The model loads outside any snapshot (it takes seconds): a writer may change the vectors
    meanwhile, so the caller checks `_vectors_still_of` in the snapshot it searches.
    """
    store = col.store
    with store.snapshot():  # the fingerprint and the settings of one state
        fingerprint = store.get_meta("fingerprint")
        if fingerprint is None or not store.has_vectors():
            reason = "no chunk has a vector yet (run `tpsearch index` with a model that loads)"
            return None, reason, None
        settings = col.wanted_settings(overrides, reembed=False)  # refuses vector-changing flags
    try:
        encoder = col.encoder(settings, factory, matching=fingerprint)
    except ModelLoadError as error:
        return None, f"the model cannot load ({first_line(error)})", None
    check_same_vectors(fingerprint, encoder)
    return encoder.encode([text])[0], "", fingerprint


def nearest(
    col: Collection, vector: np.ndarray, k: int, leave_out: Sequence[int] = ()
) -> list[tuple[int, float]]:
    """The `k` chunks nearest a stored or query `vector`, best first, scored as queries are:
    cosine in the collection's centred space. Call inside a snapshot."""
    space = current_space(col.store)
    left_out = set(leave_out)
    found = _semantic(col, vector, max(k, SEMANTIC_POOL) + len(left_out), None, space)
    scores = _cosines(col.store, vector, [i for i in found if i not in left_out], space)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


def _cosines(
    store: Store, vector: np.ndarray, ids: Sequence[int], space: VectorSpace | None
) -> dict[int, float]:
    """Cosine of the query with each of `ids` that has a vector, in `space` (raw: None)."""
    wanted = sorted(set(ids))
    missing = store.without_vectors(wanted)
    embedded = np.array([i for i in wanted if i not in missing], dtype=np.int64)
    if not len(embedded):
        return {}
    vectors = store.vectors_for(embedded, len(vector))
    query = vector[None, :]
    if space is not None:
        vectors, query = space.apply(vectors), space.apply(query)
    scores = vectors @ query[0]
    return {int(i): float(score) for i, score in zip(embedded, scores, strict=True)}


def _vectors_still_of(store: Store, fingerprint: str | None, dim: int) -> bool:
    """Whether the stored vectors are still the ones a query vector was made for."""
    stored = store.get_meta("fingerprint")
    return stored == fingerprint and store.get_meta("dim") == dim and store.has_vectors()


def _matching_files(store: Store, spec: PathSpec) -> list[int]:
    """Ids of files whose root-relative path matches a gitignore-style pattern."""
    return [file_id for path, file_id in store.file_ids().items() if spec.match_file(path)]


def _lexical(
    store: Store, terms: list[str], limit: int, file_ids: list[int] | None
) -> list[tuple[int, float]]:
    if not terms or file_ids == []:
        return []
    return store.search_text(fts_expression(terms), limit, file_ids)


def _probe(vector: np.ndarray, space: VectorSpace | None) -> np.ndarray:
    """What the raw FAISS index is searched with: the query minus the space's mean, as a unit
    vector. A stored x scores x.(q - mean) = (x - mean).(q - mean) + a constant, the centred
    dot product, so the candidates are those the centred cosine ranks first (up to each
    centred vector's length), not those the raw cosine does: raw candidates missed a third of
    the centred top 10 on vectors whose shared direction varies in weight."""
    if space is None:
        return vector
    centred = vector.astype(np.float32) - space.mean
    norm = float(np.linalg.norm(centred))
    return (centred / norm).astype(np.float32) if norm > 1e-6 else vector


def _semantic(
    col: Collection,
    vector: np.ndarray,
    limit: int,
    file_ids: list[int] | None,
    space: VectorSpace | None,
) -> list[int]:
    """Candidates for the centred cosine to rank: the `limit` nearest to the centred probe
    and, to catch rows whose centred length is short, the `limit` nearest by raw cosine."""
    store = col.store
    allowed = None
    if file_ids is not None:
        allowed = store.chunk_ids_of_files(file_ids)
        if not len(allowed):
            return []
    found = col.vectors.search(vector, limit, len(vector), allowed)
    if space is not None:
        found += col.vectors.search(_probe(vector, space), limit, len(vector), allowed)
    return [chunk_id for chunk_id, _ in found]
