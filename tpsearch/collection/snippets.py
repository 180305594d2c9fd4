"""What a hit shows of its chunk: a snippet a person can read, and the document's title.

A chunk's text is read as `structure.py` reads a file: prose paragraphs become one line each
(the terminal wraps them, under a hanging indent), code keeps its line breaks and indentation,
heading underlines and other drawn lines (`----`, `====`, `|---|`) and code fences are dropped.
The snippet is the window of that text with most query terms; with `context`, as grep -C, the
chunk's line with most query terms and `context` lines either side, as they are in the file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tpsearch.collection.structure import CODE, CONT, FENCE, Heading, classify, is_adornment

if TYPE_CHECKING:
    from tpsearch.collection.chunking import Format

SNIPPET_CHARS = 220
SNIPPET_LINES = 8  # a window of code lines never runs longer than this
# A title given as a field in a file's header: PEPs and RFC-822 style headers (`Title: ...`),
# YAML front matter (`title: ...`).
TITLE_FIELD = re.compile(r"^\s*title:[ \t]*(\S.*?)\s*$", re.I | re.M)
HEADER_LINES = 20  # how far into a file's first chunk a title field is looked for

Spans = tuple[tuple[int, int], ...]


def _stem(term: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if term.endswith(suffix) and len(term) - len(suffix) >= 3:
            return term[: -len(suffix)]
    return term


def terms_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    """Words starting with a query term's stem, in any case."""
    if not terms:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(_stem(t)) for t in terms) + r")\w*", re.I)


def reading_lines(text: str, fmt: Format = "markdown") -> list[str]:
    """The chunk as a person reads it: one line per paragraph, heading or line of code (the
    titles it opens with are left out: they are the heading path shown with the hit)."""
    lines = text.splitlines()
    out: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(" ".join(paragraph))
            paragraph.clear()

    for line, kind in zip(lines, classify(lines, fmt), strict=True):
        if kind == CODE:
            flush()
            if FENCE.match(line) is None and (line.strip() or (out and out[-1])):
                out.append(line.rstrip())  # a blank line inside code once, not twice
        elif kind == CONT or is_adornment(line):
            continue
        elif isinstance(kind, Heading):
            flush()
            if out:  # a chunk's opening titles are its heading path, shown above the snippet
                out.append(kind.title)
        elif not line.strip():
            flush()
        else:
            paragraph.append(" ".join(line.split()))
    flush()
    while out and not out[-1].strip():
        out.pop()
    return out


def make_snippet(
    text: str,
    terms: Sequence[str],
    fmt: Format = "markdown",
    width: int = SNIPPET_CHARS,
    context: int | None = None,
) -> tuple[str, Spans]:
    """The part of `text` with most query terms, and where the terms are in it.

    Lines in the snippet are paragraphs, headings or lines of code; "…" marks text left out
    within a line. With `context`, the chunk's best line and `context` lines either side.
    """
    pattern = terms_pattern(terms)
    if context is not None:
        snippet = _context_lines(text, fmt, pattern, context)
    else:
        snippet = _window("\n".join(reading_lines(text, fmt)), pattern, width)
    spans = tuple(m.span() for m in pattern.finditer(snippet)) if pattern else ()
    return snippet, spans


def _window(flat: str, pattern: re.Pattern[str] | None, width: int) -> str:
    start = 0
    if pattern is not None and len(flat) > width:
        best = -1
        matches = list(pattern.finditer(flat))
        for match in matches:  # the window starting a little before a match, with most terms
            begin = max(0, match.start() - width // 4)
            line_start = flat.rfind("\n", 0, begin) + 1
            if begin - line_start < width // 2:  # start at the line's start when it is near
                begin = line_start
            window = {m.group().lower() for m in matches if begin <= m.start() < begin + width}
            if len(window) > best:
                best, start = len(window), begin
    snippet = flat[start : start + width]
    if start > 0 and flat[start - 1] != "\n":
        cut = re.search(r"\s", snippet)
        snippet = "…" + (snippet[cut.end() :] if cut else snippet)
    if start + width < len(flat):
        cut_at = max(snippet.rfind(" "), snippet.rfind("\n"))
        snippet = (snippet[:cut_at] if cut_at > 0 else snippet).rstrip() + " …"
    lines = snippet.split("\n")
    if len(lines) > SNIPPET_LINES:
        snippet = "\n".join(lines[:SNIPPET_LINES]) + " …"
    return snippet


def _context_lines(text: str, fmt: Format, pattern: re.Pattern[str] | None, context: int) -> str:
    """grep -C: the line with most distinct query terms and `context` lines either side, as
    they are in the file (drawn lines and code fences left out)."""
    lines = text.splitlines()
    kept = [
        line.rstrip()
        for line, kind in zip(lines, classify(lines, fmt), strict=True)
        if kind != CONT and not is_adornment(line) and not (kind == CODE and FENCE.match(line))
    ]
    best, best_terms = 0, 0
    if pattern is not None:
        for i, line in enumerate(kept):
            found = len({m.group().lower() for m in pattern.finditer(line)})
            if found > best_terms:
                best, best_terms = i, found
    shown = kept[max(0, best - context) : best + context + 1]
    while shown and not shown[0].strip():
        shown.pop(0)
    while shown and not shown[-1].strip():
        shown.pop()
    return "\n".join(shown)


def document_title(first_text: str, first_heading: str) -> str:
    """A file's title: a `Title:` field in its header (PEPs, front matter), else its first
    heading; "" when it has neither."""
    header = "\n".join(first_text.splitlines()[:HEADER_LINES])
    field = TITLE_FIELD.search(header)
    if field is not None:
        return field.group(1).strip("\"'")
    return first_heading.split(" > ")[0] if first_heading else ""
