"""Split a document into chunks by its structure, within a token budget.

`structure.py` reads the document's lines into a tree of sections (Markdown ATX/setext headings,
reStructuredText adorned titles; plain text has none) holding blocks (a title, paragraphs,
code); `packing.py` packs them into spans of at most `max_tokens` approximate tokens
(`tokens.py`); here each span becomes a `Chunk`, the exact text of a slice of the file.

What a user sees: a section that fits the budget is one chunk, a larger one is cut between its
blocks; no chunk is a title alone (a title goes with the text under it, and in any case with
every chunk's heading path, which is embedded with the chunk's text); a paragraph stays with
the code block it introduces when both fit; code keeps its line breaks; lines that only draw
(underlines, rules, table borders) hardly count against the budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

from tpsearch.collection.packing import Doc, Span, join, pack
from tpsearch.collection.structure import LINE_BREAK, classify, sections
from tpsearch.collection.tokens import approx_tokens
from tpsearch.errors import ConfigError, choice_error

__all__ = [
    "CHUNKER_VERSION",
    "FORMATS",
    "Chunk",
    "ChunkSettings",
    "Format",
    "approx_tokens",
    "chunk_document",
    "detect_format",
    "embedding_text",
    "heading_text",
]

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
# 4: no chunk is a title alone (a title joins the text under it or is left to the heading
# path); lines that only draw cost a token per 16 characters (were a token per mark); a
# paragraph stays with the code block it introduces; a chunk of a few tokens takes blocks from
# the one before, a small introduction joins its first subsection; a long line is cut into even
# pieces; a reStructuredText literal block (blank lines included) is one block.
CHUNKER_VERSION = 4
# Last-token pooling is weak on long texts: keep chunks short. Measured on the FastAPI docs with
# the default smollm2-135m (101 judged questions, file MRR@10): 160-token chunks, semantic 0.500
# (0.69x lexical 0.727), hybrid 0.769; 48-token chunks, semantic 0.614 (0.85x lexical 0.719),
# hybrid 0.750; 3.1x the chunks, 1.4x the indexing time. A question matches a few lines best.
LAST_POOLING_TOKENS = 48
MEAN_POOLING_TOKENS = 384
PROMPT_ALLOWANCE = 96  # template and heading path, within the encoder's max_length


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


def heading_text(heading: tuple[str, ...]) -> str:
    return " > ".join(heading)


def embedding_text(heading: str, text: str) -> str:
    """What gets embedded: the heading path gives a chunk the context its text may lack."""
    return f"{heading}\n\n{text}" if heading else text


def _chunk(doc: Doc, span: Span) -> Chunk | None:
    """The chunk over a span, trimmed of surrounding blank space."""
    start, end = span.start, span.end
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
        heading=span.heading,
        tokens=approx_tokens(text),
    )


def chunk_document(
    text: str, fmt: Format, settings: ChunkSettings, codec: str = "utf-8", bom: int = 0
) -> list[Chunk]:
    """Chunks of `text`, in document order; `codec` and `bom` give the byte offsets."""
    if fmt not in FORMATS:
        raise choice_error("document format", fmt, FORMATS)
    kinds = classify(LINE_BREAK.split(text), fmt)
    doc = Doc(text, kinds, codec, bom)
    spans = join(doc, pack(doc, sections(kinds), (), settings), settings)
    return [chunk for span in spans if (chunk := _chunk(doc, span)) is not None]
