"""Split a document into chunks by its structure, within a token budget.

A document becomes a tree of sections (Markdown ATX/setext headings, reStructuredText
adorned titles; plain text has none), each holding blocks (paragraphs, fenced code) as line
ranges. A section that fits the budget, subsections included, is one chunk; a larger one packs
its own blocks greedily, splitting an oversized block by lines, an oversized line by tokens and
an oversized word by 4-character pieces, then recurses into its subsections. Consecutive
chunks of one section share a few lines.

Tokens are counted approximately, without a tokenizer, so that chunking works while the model
cannot load: a word costs one token per 4 characters (rounded up) and each punctuation mark
one, which tends to over-count BPE tokens slightly, the safe side for a prompt length limit.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import accumulate
from typing import Literal, get_args

from tpsearch.collection.structure import Section, classify, sections
from tpsearch.errors import ConfigError, choice_error

Format = Literal["markdown", "rst", "text"]
FORMATS: tuple[str, ...] = get_args(Format)
SUFFIX_FORMATS: dict[str, Format] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".mkd": "markdown",
    ".rst": "rst",
    ".rest": "rst",
}

# Bump whenever the same settings would cut different chunks. 2: words over the budget are cut
# within it, a lone CR ends a line, a setext underline makes only the line above it a heading.
# 3: a character of Chinese, Japanese, Korean, Thai, ... counts as a token (was a quarter).
CHUNKER_VERSION = 3
LAST_POOLING_TOKENS = 160  # last-token pooling is weak on long texts: keep chunks short
MEAN_POOLING_TOKENS = 384
PROMPT_ALLOWANCE = 96  # template and heading path, within the encoder's max_length

# Scripts written without spaces, where a BPE vocabulary spends about a token per character:
# Thai, Lao, Myanmar, Hangul Jamo, Khmer, kana, Hangul compatibility Jamo, CJK ideographs
# (with extension A and the supplementary planes), Hangul syllables, half-width katakana.
_DENSE = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff\u3130-\u318f"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)
# One token per character of those scripts; one per started 4 characters of any other word
# ([^\W...]{1,4} matches ceil(len / 4) times in a word); one per punctuation mark.
TOKEN_PIECE = re.compile(rf"[{_DENSE}]|[^\W{_DENSE}]{{1,4}}|[^\w\s]")
TOKEN = re.compile(rf"[{_DENSE}]+|[^\W{_DENSE}]+|[^\w\s]")
LINE_BREAK = re.compile(r"\r(?!\n)|\n")  # "\r\n" ends a line at its "\n" (the "\r" stays)


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut; part of what a collection's vectors depend on."""

    max_tokens: int = LAST_POOLING_TOKENS  # approximate tokens per chunk, heading path excluded
    overlap_tokens: int = LAST_POOLING_TOKENS // 8  # lines repeated from the previous chunk
    version: int = CHUNKER_VERSION

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ConfigError(f"chunks need at least 8 tokens, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ConfigError(
                f"chunk overlap must be between 0 and {self.max_tokens - 1} tokens, "
                f"got {self.overlap_tokens}"
            )

    @classmethod
    def for_encoder(cls, pooling: str, max_length: int) -> ChunkSettings:
        """A budget that suits the pooling and fits the encoder's prompt length."""
        wanted = LAST_POOLING_TOKENS if pooling == "last" else MEAN_POOLING_TOKENS
        budget = max(8, min(wanted, max_length - PROMPT_ALLOWANCE))
        return cls(budget, budget // 8)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: its exact text and where it lies."""

    text: str
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    start_byte: int  # offset in the file's bytes, inclusive
    end_byte: int  # exclusive: file_bytes[start_byte:end_byte] decodes to `text`
    heading: tuple[str, ...]  # titles of the enclosing sections, outermost first
    tokens: int  # approximate


def detect_format(name: str) -> Format:
    dot = name.rfind(".")
    return SUFFIX_FORMATS.get(name[dot:].lower(), "text") if dot >= 0 else "text"


def approx_tokens(text: str) -> int:
    return len(TOKEN_PIECE.findall(text))


def heading_text(heading: tuple[str, ...]) -> str:
    return " > ".join(heading)


def embedding_text(heading: str, text: str) -> str:
    """What gets embedded: the heading path gives a chunk the context its text may lack."""
    return f"{heading}\n\n{text}" if heading else text


# --- packing --------------------------------------------------------------------------------


class _Doc:
    """A document's lines with prefix sums of tokens, and char/byte offsets per line."""

    def __init__(self, text: str, codec: str, bom: int) -> None:
        self.text = text
        self.codec = codec
        self.lines = LINE_BREAK.split(text)  # every break is one character: "\n" or "\r"
        self.starts = [0, *accumulate(len(line) + 1 for line in self.lines)]
        self.line_tokens = [approx_tokens(line) for line in self.lines]
        self.cum_tokens = [0, *accumulate(self.line_tokens)]
        newline = len("\n".encode(codec))  # as many bytes as "\r" in every codec read
        self.byte_starts = list(
            accumulate((len(line.encode(codec)) + newline for line in self.lines), initial=bom)
        )

    def tokens(self, a: int, b: int) -> int:
        return self.cum_tokens[b] - self.cum_tokens[a]

    def line_end(self, i: int) -> int:
        return self.starts[i] + len(self.lines[i])

    def byte_at(self, char: int) -> int:
        i = bisect.bisect_right(self.starts, char) - 1
        return self.byte_starts[i] + len(self.text[self.starts[i] : char].encode(self.codec))

    def line_of(self, char: int) -> int:
        return bisect.bisect_right(self.starts, char) - 1


@dataclass(frozen=True)
class _Piece:
    start: int  # char offsets
    end: int
    first_line: int  # 0-based lines it touches
    last_line: int
    tokens: int
    whole_lines: bool


def _pieces(doc: _Doc, a: int, b: int, budget: int) -> Iterator[_Piece]:
    """A block's lines [a, b) as pieces within budget: whole, by lines, or a line by tokens."""
    if doc.tokens(a, b) <= budget:
        yield _Piece(doc.starts[a], doc.line_end(b - 1), a, b - 1, doc.tokens(a, b), True)
        return
    for i in range(a, b):
        if doc.line_tokens[i] <= budget:
            yield _Piece(doc.starts[i], doc.line_end(i), i, i, doc.line_tokens[i], True)
            continue
        start, tokens = doc.starts[i], 0
        for at, cost in _token_units(doc.text, doc.starts[i], doc.line_end(i), budget):
            if tokens + cost > budget and tokens:
                yield _Piece(start, at, i, i, tokens, False)
                start, tokens = at, 0
            tokens += cost
        yield _Piece(start, doc.line_end(i), i, i, tokens, False)


def _token_units(text: str, start: int, end: int, budget: int) -> Iterator[tuple[int, int]]:
    """(where, tokens) of each word and mark of text[start:end]; a word over the budget (a
    data URI, a hash) comes as its 4-character pieces, one token each, so it can be cut."""
    for match in TOKEN.finditer(text, start, end):
        cost = approx_tokens(match.group())
        if cost <= budget:
            yield match.start(), cost
        else:
            for piece in TOKEN_PIECE.finditer(text, match.start(), match.end()):
                yield piece.start(), 1


def _chunk(doc: _Doc, start: int, end: int, heading: tuple[str, ...]) -> Chunk | None:
    """The chunk over chars [start, end), trimmed of surrounding blank space."""
    raw = doc.text[start:end]
    if not raw.strip():
        return None
    first_visible = start + len(raw) - len(raw.lstrip())
    start = max(start, doc.starts[doc.line_of(first_visible)])  # keep the first line's indent
    end -= len(raw) - len(raw.rstrip())
    text = doc.text[start:end]
    return Chunk(
        text=text,
        start_line=doc.line_of(start) + 1,
        end_line=doc.line_of(end - 1) + 1,
        start_byte=doc.byte_at(start),
        end_byte=doc.byte_at(end),
        heading=heading,
        tokens=approx_tokens(text),
    )


def _pack_blocks(
    doc: _Doc, blocks: list[tuple[int, int, bool]], heading: tuple[str, ...], s: ChunkSettings
) -> Iterator[Chunk]:
    start: int | None = None  # char where the open chunk starts
    end, tokens = 0, 0
    last: _Piece | None = None
    for a, b, _ in blocks:
        for piece in _pieces(doc, a, b, s.max_tokens):
            if start is not None and tokens + piece.tokens > s.max_tokens:
                if (chunk := _chunk(doc, start, end, heading)) is not None:
                    yield chunk
                start, tokens = _overlap(doc, start, last, piece, s)
            if start is None:
                start, tokens = piece.start, 0
            end, tokens, last = piece.end, tokens + piece.tokens, piece
    if start is not None and (chunk := _chunk(doc, start, end, heading)) is not None:
        yield chunk


def _overlap(
    doc: _Doc, start: int, last: _Piece | None, piece: _Piece, s: ChunkSettings
) -> tuple[int | None, int]:
    """Where the next chunk starts: the closing lines of the previous one, if they fit."""
    if last is None or not last.whole_lines or not piece.whole_lines:
        return None, 0
    first_line, end = doc.line_of(start), last.last_line + 1
    line = end
    while line - 1 > first_line and doc.tokens(line - 1, end) <= s.overlap_tokens:
        line -= 1
    tokens = doc.tokens(line, end)
    if line == end or tokens + piece.tokens > s.max_tokens:
        return None, 0
    return doc.starts[line], tokens


def _pack(doc: _Doc, section: Section, path: tuple[str, ...], s: ChunkSettings) -> Iterator[Chunk]:
    heading = (*path, section.title) if section.title else path
    if not section.blocks and len(section.children) == 1:  # nothing of its own: its only child
        yield from _pack(doc, section.children[0], heading, s)  # names the span more precisely
        return
    span = section.span()
    if span is None:
        return
    if doc.tokens(*span) <= s.max_tokens:
        if (
            chunk := _chunk(doc, doc.starts[span[0]], doc.line_end(span[1] - 1), heading)
        ) is not None:
            yield chunk
        return
    own = section.blocks
    if own and not (len(own) == 1 and own[0][2]):  # a lone heading line lives on in the paths
        yield from _pack_blocks(doc, own, heading, s)
    for child in section.children:
        yield from _pack(doc, child, heading, s)


def chunk_document(
    text: str, fmt: Format, settings: ChunkSettings, codec: str = "utf-8", bom: int = 0
) -> list[Chunk]:
    """Chunks of `text`, in document order; `codec` and `bom` give the byte offsets."""
    if fmt not in FORMATS:
        raise choice_error("document format", fmt, FORMATS)
    doc = _Doc(text, codec, bom)
    root = sections(classify(doc.lines, fmt))
    return list(_pack(doc, root, (), settings))
