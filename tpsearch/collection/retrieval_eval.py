"""`tpsearch eval retrieval`: judged queries run against a collection, scored per mode.

A judged file is plain text, one query a line, its relevant files after it, tab-separated:

    # root: ../fastapi-docs
    how do I make a query parameter optional<TAB>tutorial/query-params.md

Lines starting with `#` are comments; `# root: DIR` says which folder the paths are relative
to (itself relative to the judged file; default: the judged file's folder). Malformed lines
(no tab, an empty query, no path) are counted and skipped, as the STS reader does.

Every query runs in each mode as a file search (`Collection.query(files=True)`: each file at
its best chunk's place), and the ranked files are scored with `tpsearch.analysis.ranking`.
Judged paths are matched to the collection's paths exactly when the root lies where the
collection can see it, else by their trailing path segments (a copy of the folder indexed
elsewhere, or from a parent folder); judged paths found nowhere are reported as `missing`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tpsearch.analysis.ranking import (
    DEPTH,
    RankingScores,
    first_relevant_place,
    mean_scores,
    score_ranking,
)
from tpsearch.errors import DataError, choice_error

if TYPE_CHECKING:
    from tpsearch.collection.facade import Collection, EncoderFactory

EVAL_MODES: tuple[str, ...] = ("lexical", "semantic", "hybrid")
ROOT_DIRECTIVE = "root:"
FALLBACK_SUFFIX = ": showing keyword (BM25) results only"  # of search's fallback notice
FORMAT_HINT = "expected query<TAB>path[<TAB>path ...] per line, # for comments"


@dataclass(frozen=True)
class JudgedQuery:
    line: int  # 1-based line number in the judged file
    text: str
    relevant: tuple[str, ...]  # "/"-separated paths relative to the judged root


@dataclass(frozen=True)
class JudgedQueries:
    queries: tuple[JudgedQuery, ...]
    skipped: int  # malformed lines, counted rather than fatal
    skipped_lines: tuple[int, ...]  # the first few of them, to point at
    root: Path  # absolute: the folder the judged paths are relative to
    source: str

    def __len__(self) -> int:
        return len(self.queries)


@dataclass(frozen=True)
class QueryOutcome:
    query: JudgedQuery
    ranked: tuple[str, ...]  # the collection's paths, best first (at most DEPTH)
    places: dict[str, int | None]  # judged path -> its 1-based place, None if not ranked
    first_place: int | None  # of any relevant file
    scores: RankingScores


@dataclass(frozen=True)
class ModeOutcome:
    mode: str
    available: bool
    reason: str | None  # why the mode could not run
    queries: tuple[QueryOutcome, ...]
    means: RankingScores | None  # None when the mode could not run
    notices: tuple[str, ...]  # what the searches said (e.g. chunks still without vectors)


@dataclass(frozen=True)
class RetrievalReport:
    source: str
    root: Path
    queries: int
    skipped: int
    skipped_lines: tuple[int, ...]
    missing: tuple[str, ...]  # judged paths that match no file of the collection
    depth: int
    modes: tuple[ModeOutcome, ...]


def parse_modes(text: str) -> tuple[str, ...]:
    """'all' or one mode, as the modes to evaluate."""
    if text == "all":
        return EVAL_MODES
    if text not in EVAL_MODES:
        raise choice_error("mode", text, (*EVAL_MODES, "all"))
    return (text,)


def read_judged(path: Path) -> JudgedQueries:
    """Read a judged-queries file (see the module docstring for the format)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise DataError(f"no such file: {path}") from error
    except IsADirectoryError as error:
        raise DataError(f"{path} is a folder: give the judged-queries file") from error
    except UnicodeDecodeError as error:
        raise DataError(f"cannot read {path} as UTF-8 text: {error}") from error
    root = Path(os.path.abspath(path)).parent
    queries: list[JudgedQuery] = []
    skipped: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            comment = line[1:].strip()
            if comment.lower().startswith(ROOT_DIRECTIVE):
                named = comment[len(ROOT_DIRECTIVE) :].strip()
                root = Path(os.path.normpath(Path(os.path.abspath(path)).parent / named))
            continue
        query, *fields = (field.strip() for field in raw.split("\t"))
        paths = tuple(dict.fromkeys(_judged_path(f) for f in fields if f))
        if not query or not paths:
            skipped.append(number)
            continue
        queries.append(JudgedQuery(number, query, paths))
    if not queries:
        raise DataError(
            f"{path}: no judged queries found ({len(skipped)} malformed lines); {FORMAT_HINT}"
        )
    return JudgedQueries(tuple(queries), len(skipped), tuple(skipped[:5]), root, str(path))


def _judged_path(field: str) -> str:
    return PurePosixPath(field.replace("\\", "/")).as_posix().removeprefix("./")


def match_paths(
    judged: Sequence[str], root: Path, col_root: Path, stored: Sequence[str]
) -> dict[str, frozenset[str]]:
    """Judged path -> the collection paths it names (empty when none).

    First exactly (the judged root seen from the collection root), then by trailing segments:
    the root folder's name and the judged path (`fastapi-docs/tutorial/body.md`), then the
    judged path alone, each only when it names exactly one stored file.
    """
    by_path = set(stored)
    suffixes: dict[tuple[str, ...], set[str]] = {}
    for rel in stored:
        parts = tuple(PurePosixPath(rel).parts)
        for start in range(len(parts)):
            suffixes.setdefault(parts[start:], set()).add(rel)
    matched: dict[str, frozenset[str]] = {}
    for path in judged:
        exact = Path(os.path.relpath(root / path, col_root)).as_posix()
        if exact in by_path:
            matched[path] = frozenset({exact})
            continue
        tail = tuple(PurePosixPath(path).parts)
        found: frozenset[str] = frozenset()
        for key in ((root.name, *tail), tail):
            candidates = suffixes.get(key, set())
            if len(candidates) == 1:
                found = frozenset(candidates)
                break
        matched[path] = found
    return matched


def evaluate_retrieval(
    col: Collection,
    judged: JudgedQueries,
    modes: Sequence[str] = EVAL_MODES,
    *,
    root: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    encoder_factory: EncoderFactory | None = None,
    progress: Callable[[int, int], None] | None = None,
    corrected: bool = True,
) -> RetrievalReport:
    """Run every judged query in each mode and score the ranked files (`corrected=False`:
    semantic scores in the raw vector space, for comparison).

    `root` replaces the judged file's root. A mode that cannot run (semantic or hybrid with
    no usable vectors) is reported unavailable, with the reason the search gave.
    """
    for mode in modes:
        if mode not in EVAL_MODES:
            raise choice_error("mode", mode, EVAL_MODES)
    base = Path(os.path.abspath(root)) if root is not None else judged.root
    paths = list(dict.fromkeys(p for q in judged.queries for p in q.relevant))
    matched = match_paths(paths, base, col.root, list(col.store.file_ids()))
    total, done = len(modes) * len(judged), 0
    outcomes: list[ModeOutcome] = []
    for mode in modes:
        results: list[QueryOutcome] = []
        notices: dict[str, None] = {}
        reason = None
        for query in judged.queries:
            result = col.query(
                query.text,
                k=DEPTH,
                mode=mode,
                files=True,
                overrides=overrides,
                encoder_factory=encoder_factory,
                corrected=corrected,
            )
            if result.used != mode:  # no usable vectors: it fell back to keywords
                why = result.notices[0] if result.notices else "it fell back to keywords"
                reason = why.removesuffix(FALLBACK_SUFFIX)
                break
            notices.update(dict.fromkeys(result.notices))
            ranked = tuple(hit.path for hit in result.hits)
            results.append(_outcome(query, ranked, matched))
            done += 1
            if progress is not None:
                progress(done, total)
        if reason is not None:
            done += len(judged) - len(results)
            outcomes.append(ModeOutcome(mode, False, reason, (), None, ()))
            continue
        means = mean_scores([r.scores for r in results])
        outcomes.append(ModeOutcome(mode, True, None, tuple(results), means, tuple(notices)))
    missing = tuple(path for path in paths if not matched[path])
    return RetrievalReport(
        judged.source,
        base,
        len(judged),
        judged.skipped,
        judged.skipped_lines,
        missing,
        DEPTH,
        tuple(outcomes),
    )


def _outcome(
    query: JudgedQuery, ranked: tuple[str, ...], matched: dict[str, frozenset[str]]
) -> QueryOutcome:
    # Each ranked file is keyed by this query's spelling of it (two queries may name one file
    # differently); a file it did not judge keeps its own path, so that it holds its place.
    to_judged = {rel: path for path in query.relevant for rel in matched.get(path, ())}
    keys: list[Hashable] = [to_judged.get(rel, ("unjudged", rel)) for rel in ranked]
    relevant = set(query.relevant)
    places: dict[str, int | None] = {path: None for path in query.relevant}
    for place, key in enumerate(keys, start=1):
        if isinstance(key, str) and key in places and places[key] is None:
            places[key] = place
    return QueryOutcome(
        query,
        ranked,
        places,
        first_relevant_place(keys, relevant),
        score_ranking(keys, relevant),
    )
