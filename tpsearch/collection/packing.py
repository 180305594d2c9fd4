"""Pack a document's sections into chunk spans within a token budget.

A section that fits the budget, subsections included, is one span; a larger one packs its own
blocks greedily (an oversized block by lines, an oversized line by tokens into even pieces, an
oversized word by 4-character pieces), then its subsections. Consecutive spans of one section
share a few lines.

A span carries text, never a title alone: a title goes with the text under it (its section's
first blocks, or the first span of what follows when the section has no text of its own), and
where that does not fit it is left to the heading path, which goes with every chunk's
embedding text. A paragraph stays with the block it introduces (code, or what follows a colon)
when both fit; a span of a few tokens takes whole blocks from the one before it, and a small
introduction joins the first span of its first subsection.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import TYPE_CHECKING

from tpsearch.collection.structure import (
    LINE_BREAK,
    BlockKind,
    LineKind,
    Section,
    is_adornment,
    opens_block,
    says_something,
)
from tpsearch.collection.tokens import approx_tokens, line_tokens, token_units

if TYPE_CHECKING:
    from tpsearch.collection.chunking import ChunkSettings


class Doc:
    """A document's lines with prefix sums of tokens, and char/byte offsets per line."""

    def __init__(self, text: str, kinds: list[LineKind], codec: str, bom: int) -> None:
        self.text = text
        self.codec = codec
        self.lines = LINE_BREAK.split(text)  # every break is one character: "\n" or "\r"
        self.starts = [0, *accumulate(len(line) + 1 for line in self.lines)]
        self.line_tokens = [line_tokens(line) for line in self.lines]
        self.cum_tokens = [0, *accumulate(self.line_tokens)]
        said = (says_something(kind, line) for kind, line in zip(kinds, self.lines, strict=True))
        self.cum_said = [0, *accumulate(said)]
        newline = len("\n".encode(codec))  # as many bytes as "\r" in every codec read
        self.byte_starts = list(
            accumulate((len(line.encode(codec)) + newline for line in self.lines), initial=bom)
        )
        self._known: dict[int, tuple[list[int], list[int]]] = {}  # line -> chars, their bytes

    def tokens(self, a: int, b: int) -> int:
        return self.cum_tokens[b] - self.cum_tokens[a]

    def line_end(self, i: int) -> int:
        return self.starts[i] + len(self.lines[i])

    def byte_at(self, char: int) -> int:
        """The byte offset of a char offset. Within a line, counted on from the nearest offset
        asked before (chunks come in order), not from the line's start: a file of one huge
        line is then cut in time linear in its size (it was quadratic: 5 MB took 9 s)."""
        i = bisect.bisect_right(self.starts, char) - 1
        known = self._known.setdefault(i, ([self.starts[i]], [self.byte_starts[i]]))
        at = bisect.bisect_right(known[0], char) - 1
        base, offset = known[0][at], known[1][at]
        offset += len(self.text[base:char].encode(self.codec))
        if char != base:
            known[0].insert(at + 1, char)
            known[1].insert(at + 1, offset)
        return offset

    def line_of(self, char: int) -> int:
        return bisect.bisect_right(self.starts, char) - 1

    def says_something(self, start: int, end: int) -> bool:
        """Whether chars [start, end) touch a line of text or code (not only titles, labels)."""
        first, last = self.line_of(start), self.line_of(max(start, end - 1))
        return self.cum_said[last + 1] > self.cum_said[first]


# --- pieces: a section's blocks, cut to fit -------------------------------------------------


@dataclass(frozen=True)
class Piece:
    start: int  # char offsets
    end: int
    first_line: int  # 0-based lines it touches
    last_line: int
    tokens: int
    whole_lines: bool
    kind: BlockKind
    glue: bool = False  # stays with the piece after it: a title, a paragraph that introduces


def _pieces(doc: Doc, a: int, b: int, kind: BlockKind, budget: int) -> Iterator[Piece]:
    """A block's lines [a, b) as pieces within budget: whole, by lines, or a line by tokens."""
    if doc.tokens(a, b) <= budget:
        yield Piece(doc.starts[a], doc.line_end(b - 1), a, b - 1, doc.tokens(a, b), True, kind)
        return
    for i in range(a, b):
        if doc.line_tokens[i] <= budget:
            yield Piece(doc.starts[i], doc.line_end(i), i, i, doc.line_tokens[i], True, kind)
            continue
        # even pieces, so that the last one is not a stray word or two
        even = math.ceil(doc.line_tokens[i] / math.ceil(doc.line_tokens[i] / budget))
        start, tokens = doc.starts[i], 0
        for at, cost in token_units(doc.text, doc.starts[i], doc.line_end(i), budget):
            if tokens and (tokens >= even or tokens + cost > budget):
                yield Piece(start, at, i, i, tokens, False, kind)
                start, tokens = at, 0
            tokens += cost
        yield Piece(start, doc.line_end(i), i, i, tokens, False, kind)


def block_pieces(doc: Doc, blocks: list[tuple[int, int, BlockKind]], budget: int) -> list[Piece]:
    """The pieces of a section's blocks. A title is glued to what follows, and so is a
    paragraph that introduces the block after it where both fit: a paragraph before code or
    ending in a colon, an admonition's first line, a bold line standing as a title."""
    pieces: list[Piece] = []
    for i, (a, b, kind) in enumerate(blocks):
        after = blocks[i + 1] if i + 1 < len(blocks) else None
        block = list(_pieces(doc, a, b, kind, budget))
        introduces = (
            kind == "text"
            and after is not None
            and (
                after[2] == "code"
                or doc.lines[b - 1].rstrip().endswith(":")
                or (b - a == 1 and opens_block(doc.lines[a]))
            )
            and doc.tokens(a, after[1]) <= budget
        )
        if kind == "heading" or introduces:
            block[-1] = replace(block[-1], glue=True)
        pieces += block
    return pieces


# --- planning: pieces into chunks -----------------------------------------------------------


@dataclass
class Planned:
    """A chunk being planned: whole pieces, after the lines from `overlap` (a char) on that
    repeat the end of the chunk before."""

    pieces: list[Piece] = field(default_factory=list)
    overlap: int | None = None
    overlap_tokens: int = 0

    @property
    def own_tokens(self) -> int:
        return sum(piece.tokens for piece in self.pieces)

    @property
    def tokens(self) -> int:
        return self.overlap_tokens + self.own_tokens

    @property
    def start(self) -> int:
        return self.pieces[0].start if self.overlap is None else self.overlap


def plan(doc: Doc, pieces: list[Piece], s: ChunkSettings) -> list[Planned]:
    """Greedy packing; glued pieces move on with the piece after them (unless that leaves a
    few tokens behind), and a title that cannot join its text is dropped (the heading path
    keeps it)."""
    done: list[Planned] = []
    open_ = Planned()
    for piece in pieces:
        if open_.pieces and open_.tokens + piece.tokens > s.max_tokens:
            kept = len(open_.pieces)
            while kept and open_.pieces[kept - 1].glue:
                kept -= 1
            if 0 < kept < len(open_.pieces) and _few(open_.pieces[:kept], s):
                kept = len(open_.pieces)  # rather than leave a few tokens behind
            if kept:
                carried = open_.pieces[kept:]
                _close(doc, done, replace(open_, pieces=open_.pieces[:kept]), s)
                open_ = Planned(carried) if carried else _after(doc, done[-1], piece, s)
            too_big = open_.tokens + piece.tokens > s.max_tokens
            if too_big and open_.pieces and open_.pieces[0].kind == "heading":
                open_ = Planned(open_.pieces[1:])
            if open_.pieces and open_.tokens + piece.tokens > s.max_tokens:
                _close(doc, done, open_, s)
                open_ = _after(doc, done[-1], piece, s)
        open_.pieces.append(piece)
    if open_.pieces:
        _close(doc, done, open_, s)
    # A piece of rules alone (a `///` closing an admonition, left over at the end of a full
    # chunk) says nothing: no chunk of its own.
    return [chunk for chunk in done if len(done) == 1 or not _rules_only(doc, chunk)]


def _rules_only(doc: Doc, chunk: Planned) -> bool:
    own = doc.text[chunk.pieces[0].start : chunk.pieces[-1].end]
    return all(is_adornment(line) for line in own.splitlines() if line.strip())


def _few(pieces: list[Piece], s: ChunkSettings) -> bool:
    return sum(piece.tokens for piece in pieces) < s.max_tokens // 8


def _close(doc: Doc, done: list[Planned], chunk: Planned, s: ChunkSettings) -> None:
    """Add a chunk; one of a few tokens takes whole pieces from the end of the one before."""
    done.append(chunk)
    while len(done) > 1 and _few(done[-1].pieces, s):
        before, last = done[-2], done[-1]
        cut = len(before.pieces) - 1
        while cut > 0 and before.pieces[cut - 1].glue:
            cut -= 1
        rest, moved = before.pieces[:cut], before.pieces[cut:] + last.pieces
        moved_tokens = sum(piece.tokens for piece in moved)
        rest_tokens = sum(piece.tokens for piece in rest)
        if (
            not any(piece.kind != "heading" for piece in rest)
            or moved_tokens > s.max_tokens
            or min(rest_tokens, moved_tokens) <= last.own_tokens
        ):
            return
        done[-2] = replace(before, pieces=rest)
        done[-1] = _after(doc, done[-2], moved[0], s, moved_tokens - moved[0].tokens)
        done[-1].pieces = moved


def _after(doc: Doc, before: Planned, first: Piece, s: ChunkSettings, then: int = 0) -> Planned:
    """The chunk that follows `before` and begins with `first` (then `then` more tokens): it
    opens with the closing lines of `before` where they fit."""
    if not before.pieces[-1].whole_lines or not first.whole_lines:
        return Planned()
    said = [piece.first_line for piece in before.pieces if piece.kind != "heading"]
    floor = doc.line_of(before.start) if before.overlap is not None or not said else said[0]
    end = line = before.pieces[-1].last_line + 1
    while line - 1 > floor and doc.tokens(line - 1, end) <= s.overlap_tokens:
        line -= 1
    tokens = doc.tokens(line, end)
    if line == end or tokens + first.tokens + then > s.max_tokens:
        return Planned()
    return Planned([], doc.starts[line], tokens)


# --- sections into spans --------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """Chars [start, end) of a chunk to be, under `heading`."""

    start: int
    end: int
    heading: tuple[str, ...]
    joins_next: bool = False  # a small introduction: it goes with the span after it if it fits


def pack(doc: Doc, section: Section, path: tuple[str, ...], s: ChunkSettings) -> list[Span]:
    heading = (*path, section.title) if section.title else path
    if not section.blocks and len(section.children) == 1:  # nothing of its own: its only child
        return pack(doc, section.children[0], heading, s)  # names the span more precisely
    span = section.span()
    if span is None:
        return []
    if doc.tokens(*span) <= s.max_tokens:
        return [Span(doc.starts[span[0]], doc.line_end(span[1] - 1), heading)]
    own = plan(doc, block_pieces(doc, section.blocks, s.max_tokens), s)
    spans = [Span(planned.start, planned.pieces[-1].end, heading) for planned in own]
    if spans and section.title and section.children and own[-1].tokens <= s.max_tokens // 4:
        # an introduction goes with its first subsection, whose heading path names it too
        spans[-1] = Span(own[-1].pieces[0].start, spans[-1].end, heading, joins_next=True)
    for child in section.children:
        spans += pack(doc, child, heading, s)
    return spans


def join(doc: Doc, spans: list[Span], s: ChunkSettings) -> Iterator[Span]:
    """Spans that say nothing (titles, labels) and small introductions join the span after
    them where they fit; a span that says nothing and joins nothing is dropped (its titles
    live on in the heading paths)."""
    waiting: Span | None = None
    for span in spans:
        if waiting is not None:
            if approx_tokens(doc.text[waiting.start : span.end]) <= s.max_tokens:
                span = replace(span, start=waiting.start)
            elif doc.says_something(waiting.start, waiting.end):
                yield waiting
        waiting = None
        if span.joins_next or not doc.says_something(span.start, span.end):
            waiting = span
        else:
            yield span
    if waiting is not None and doc.says_something(waiting.start, waiting.end):
        yield waiting
