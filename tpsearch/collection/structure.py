"""A document's structure: each line's kind (heading, text, blank), then a tree of sections.

Markdown ATX and setext headings (outside fenced code), reStructuredText titles with an
underline or over- and underline (levels in the order their styles first appear); plain text
has no headings. `chunking.py` packs the sections into chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tpsearch.collection.chunking import Format

# --- line classification --------------------------------------------------------------------

BLANK, TEXT, CONT = "blank", "text", "cont"  # CONT: a heading's second or third line


@dataclass(frozen=True)
class Heading:
    level: int
    title: str


LineKind = str | Heading

ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
ATTRIBUTES = re.compile(r"\s*\{[^}]*\}\s*$")  # mkdocs "{ #anchor }" after a title
RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:._!$%&,/;<>?@\\|])\1{2,}\s*$")


def _clean_title(title: str) -> str:
    return ATTRIBUTES.sub("", title).strip()


def _markdown_kinds(lines: list[str]) -> list[LineKind]:
    kinds: list[LineKind] = [BLANK if not line.strip() else TEXT for line in lines]
    fence: str | None = None
    paragraph: int | None = None  # first line of the open paragraph
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter: text, never headings
        close = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), 0)
        start = close + 1 if close else 0
    for i in range(start, len(lines)):
        line = lines[i]
        if fence is not None:
            kinds[i] = TEXT  # blank lines inside a fence belong to the code block
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip(fence[0]).strip():
                fence = None
            continue
        if (match := FENCE.match(line)) is not None:
            fence, paragraph = match.group(1), None
            continue
        if kinds[i] == BLANK:
            paragraph = None
        elif (match := ATX.match(line)) is not None:
            kinds[i] = Heading(len(match.group(1)), _clean_title(match.group(2) or ""))
            paragraph = None
        elif paragraph is not None and (match := SETEXT.match(line)) is not None:
            # Only the line above is the title (CommonMark takes the whole paragraph, as a
            # multi-line title; Python-Markdown and pandoc take one line): lines above it stay
            # text, and a heading path stays short.
            level = 1 if match.group(1)[0] == "=" else 2
            kinds[i - 1] = Heading(level, _clean_title(lines[i - 1].strip()))
            kinds[i] = CONT
            paragraph = None
        elif paragraph is None:
            paragraph = i
    return kinds


def _rst_kinds(lines: list[str]) -> list[LineKind]:
    kinds: list[LineKind] = [BLANK if not line.strip() else TEXT for line in lines]
    styles: list[tuple[str, bool]] = []  # adornment styles in order of first use = levels
    i = 0
    while i < len(lines):
        title_at, span, style = None, 0, None
        over = RST_ADORNMENT.match(lines[i])
        if over and i + 2 < len(lines) and lines[i + 1].strip():
            under = RST_ADORNMENT.match(lines[i + 2])
            if under and under.group(1) == over.group(1):
                title_at, span, style = i + 1, 3, (over.group(1), True)
        if style is None and kinds[i] == TEXT and i + 1 < len(lines):
            under = RST_ADORNMENT.match(lines[i + 1])
            starts_block = i == 0 or kinds[i - 1] == BLANK
            plain = not lines[i][0].isspace() and not RST_ADORNMENT.match(lines[i])
            if under and starts_block and plain:
                title_at, span, style = i, 2, (under.group(1), False)
        if style is None or title_at is None:
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        kinds[i] = Heading(styles.index(style) + 1, lines[title_at].strip())
        for j in range(i + 1, i + span):
            kinds[j] = CONT
        i += span
    return kinds


def classify(lines: list[str], fmt: Format) -> list[LineKind]:
    if fmt == "markdown":
        return _markdown_kinds(lines)
    if fmt == "rst":
        return _rst_kinds(lines)
    return [BLANK if not line.strip() else TEXT for line in lines]


# --- sections -------------------------------------------------------------------------------


@dataclass
class Section:
    title: str | None
    level: int
    blocks: list[tuple[int, int, bool]] = field(default_factory=list)  # [a, b) lines, heading?
    children: list[Section] = field(default_factory=list)

    def span(self) -> tuple[int, int] | None:
        first = self.blocks[0][0] if self.blocks else None
        last = self.blocks[-1][1] if self.blocks else None
        for child in self.children:
            child_span = child.span()
            if child_span is not None:
                first = child_span[0] if first is None else first
                last = child_span[1]
        return None if first is None or last is None else (first, last)


def sections(kinds: list[LineKind]) -> Section:
    root = Section(None, 0)
    stack = [root]
    block: list[int] | None = None  # [start, end, is_heading] of the open block
    for i, kind in enumerate(kinds):
        if isinstance(kind, Heading):
            while stack[-1].level >= kind.level:
                stack.pop()
            section = Section(kind.title, kind.level)
            stack[-1].children.append(section)
            stack.append(section)
            block = [i, i + 1, 1]
            section.blocks.append((i, i + 1, True))
        elif kind == CONT and block is not None:
            block[1] = i + 1
            stack[-1].blocks[-1] = (block[0], block[1], True)
        elif kind == BLANK:
            block = None
        elif block is not None and not block[2]:
            block[1] = i + 1
            stack[-1].blocks[-1] = (block[0], block[1], False)
        else:
            block = [i, i + 1, 0]
            stack[-1].blocks.append((i, i + 1, False))
    return root
