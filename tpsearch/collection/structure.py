"""A document's structure: each line's kind (heading, text, code, blank), then a tree of sections.

Markdown ATX and setext headings (outside fenced code), reStructuredText titles with an
underline or over- and underline (levels in the order their styles first appear); plain text
has no headings. Code is Markdown fenced code and reStructuredText literal blocks (after a
paragraph ending in "::", or under a code directive), blank lines inside them included, so a
code block is one block. `packing.py` packs the sections into chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tpsearch.collection.chunking import Format

# --- line classification --------------------------------------------------------------------

BLANK, TEXT, CODE, CONT = "blank", "text", "code", "cont"  # CONT: a heading's 2nd or 3rd line
BlockKind = Literal["heading", "text", "code"]


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
RST_DIRECTIVE = re.compile(r"^\s*\.\.\s+[\w:-]+?::")
RST_CODE_DIRECTIVE = re.compile(
    r"^\s*\.\.\s+(?:code|code-block|sourcecode|literalinclude|doctest|testcode|testoutput"
    r"|parsed-literal|productionlist|ipython|jupyter-execute|math)::"
)
# Lines that draw rather than say: one mark repeated (title over/underlines, setext underlines,
# thematic breaks `* * *`, mkdocs `///`), and table borders (`|---|:--:|`, `+----+`, `== ==`).
RULE = re.compile(r"^\s*([^\w\s])(?:[ \t]*\1){2,}\s*$")
TABLE_BORDER = re.compile(r"^(?=.*(?:---|===))[-=|+:\s]+$")

# A line that opens what follows: mkdocs `/// note | Title`, `!!! tip`, `??? faq`,
# reStructuredText `.. note::`, and a bold line standing as a title (`**To create a path**`).
OPENER = re.compile(
    r"^\s*(?:/{3,}[ \t]*\w|[!?]{3}\+?[ \t]+\w|\.\.[ \t]+[\w:-]+::|\*\*[^*].*\*\*:?\s*$)"
)
# A line that marks a place but says nothing: `.. _target:`, `<!-- comment -->`.
LABEL = re.compile(r"^\s*(?:\.\.[ \t]+_[^:]*:|<!--.*-->)\s*$")
LINE_BREAK = re.compile(r"\r(?!\n)|\n")  # "\r\n" ends a line at its "\n" (the "\r" stays)


def is_adornment(line: str) -> bool:
    return RULE.match(line) is not None or TABLE_BORDER.match(line) is not None


def opens_block(line: str) -> bool:
    return OPENER.match(line) is not None


def says_something(kind: LineKind, line: str) -> bool:
    """A line of text or code: not blank, not a title or its adornment, not a bare label."""
    return kind in (TEXT, CODE) and LABEL.match(line) is None


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
            kinds[i] = CODE  # blank lines inside a fence belong to the code block
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip(fence[0]).strip():
                fence = None
            continue
        if (match := FENCE.match(line)) is not None:
            fence, paragraph = match.group(1), None
            kinds[i] = CODE
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


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _rst_literal_blocks(lines: list[str]) -> Iterator[tuple[int, int]]:
    """[a, b) line ranges of literal blocks: the indented lines after a paragraph that ends in
    "::" and a blank line, or a code directive with its options and indented body."""
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = RST_CODE_DIRECTIVE.match(line) is not None
        literal = line.rstrip().endswith("::") and not RST_DIRECTIVE.match(line)
        if not (directive or literal) or (literal and i + 1 < len(lines) and lines[i + 1].strip()):
            i += 1  # (a literal block comes after a blank line)
            continue
        end, indent = i + 1, _indent(line)
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
            end += 1
        body = [j for j in range(i + 1, end) if lines[j].strip()]
        if body:
            yield (i if directive else body[0]), body[-1] + 1
            i = body[-1] + 1
        else:
            i += 1


def _rst_kinds(lines: list[str]) -> list[LineKind]:
    kinds: list[LineKind] = [BLANK if not line.strip() else TEXT for line in lines]
    for a, b in _rst_literal_blocks(lines):
        kinds[a:b] = [CODE] * (b - a)
    styles: list[tuple[str, bool]] = []  # adornment styles in order of first use = levels
    i = 0
    while i < len(lines):
        if kinds[i] == CODE:
            i += 1
            continue
        title_at, span, style = None, 0, None
        over = RST_ADORNMENT.match(lines[i])
        if over and i + 2 < len(lines) and kinds[i + 1] == TEXT:
            under = RST_ADORNMENT.match(lines[i + 2])
            if under and under.group(1) == over.group(1):
                title_at, span, style = i + 1, 3, (over.group(1), True)
        if style is None and kinds[i] == TEXT and i + 1 < len(lines) and kinds[i + 1] == TEXT:
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
    blocks: list[tuple[int, int, BlockKind]] = field(default_factory=list)  # [a, b) lines
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
    """The section tree; a block is a heading (with its adornment lines), a paragraph, or a
    code block, and a paragraph that runs into a code block without a blank line is two."""
    root = Section(None, 0)
    stack = [root]
    open_kind: BlockKind | None = None  # kind of the block the previous line belongs to
    for i, kind in enumerate(kinds):
        if isinstance(kind, Heading):
            while stack[-1].level >= kind.level:
                stack.pop()
            section = Section(kind.title, kind.level)
            stack[-1].children.append(section)
            stack.append(section)
            open_kind = "heading"
            section.blocks.append((i, i + 1, open_kind))
            continue
        if kind == BLANK:
            open_kind = None
            continue
        line_kind: BlockKind = "heading" if kind == CONT else "code" if kind == CODE else "text"
        blocks = stack[-1].blocks
        if open_kind == line_kind and blocks:
            blocks[-1] = (blocks[-1][0], i + 1, line_kind)
        elif line_kind != "heading":  # (a CONT line always follows its heading line)
            blocks.append((i, i + 1, line_kind))
        open_kind = line_kind
    return root
