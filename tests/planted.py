"""A small real corpus with planted duplicates, for the dedupe tests.

The originals are ten pages of the FastAPI documentation (MIT, see
fixtures/fastapi_docs/LICENSE-fastapi-docs.txt), chosen to include "sibling" pages written
from one template (query/header/cookie parameter models, response headers/cookies): related,
similar-looking, and not duplicates. The planted copies are made here, so each edit is in
plain sight.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tpsearch.analysis import TextItem

FIXTURES = Path(__file__).parent / "fixtures" / "fastapi_docs"
ORIGINAL_MTIME = 1_700_000_000.0  # originals are older than their copies, as in real life
COPY_MTIME = 1_750_000_000.0


@dataclass(frozen=True)
class Planted:
    copy: str
    original: str
    edit: str
    kind: str  # what method="all" should call the group


def originals() -> dict[str, str]:
    return {
        path.relative_to(FIXTURES).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(FIXTURES.rglob("*.md"))
    }


def reflow(text: str, width: int = 52) -> str:
    """Every paragraph re-wrapped to `width` columns: same words, different line breaks."""
    paragraphs = text.split("\n\n")
    return "\n\n".join(
        textwrap.fill(p, width, break_long_words=False, break_on_hyphens=False) for p in paragraphs
    )


def change_one_word(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def delete_paragraph(text: str, starting_with: str) -> str:
    paragraphs = text.split("\n\n")
    kept = [p for p in paragraphs if not p.startswith(starting_with)]
    assert len(kept) == len(paragraphs) - 1
    return "\n\n".join(kept)


def planted_files() -> tuple[list[TextItem], list[Planted]]:
    """File-level items: the originals plus four planted copies, and what was planted."""
    texts = originals()
    plants = [
        (Planted("backup/debugging.md", "tutorial/debugging.md", "exact copy", "exact"), None),
        (
            Planted(
                "drafts/response-headers.md", "advanced/response-headers.md", "reflowed", "exact"
            ),
            reflow,
        ),
        (
            Planted(
                "notes/query-params.md", "tutorial/query-param-models.md", "one word", "lexical"
            ),
            lambda t: change_one_word(t, "that are related", "that are connected"),
        ),
        (
            Planted(
                "old/background-tasks.md", "tutorial/background-tasks.md", "paragraph", "lexical"
            ),
            lambda t: delete_paragraph(t, "This is useful for operations"),
        ),
    ]
    items = [
        TextItem(n, path, text, len(text.encode()), ORIGINAL_MTIME + n)
        for n, (path, text) in enumerate(texts.items())
    ]
    for plant, edit in plants:
        text = texts[plant.original] if edit is None else edit(texts[plant.original])
        items.append(TextItem(len(items), plant.copy, text, len(text.encode()), COPY_MTIME))
    return items, [plant for plant, _ in plants]


def paragraph_chunks(files: list[TextItem]) -> list[TextItem]:
    """Chunk-level items: each run of non-blank lines, with its 1-based line range."""
    chunks: list[TextItem] = []
    for file in files:
        lines = file.text.split("\n")
        blank = [n for n, line in enumerate(lines) if not line.strip()]
        for start, end in zip([-1, *blank], [*blank, len(lines)], strict=True):
            if end - start > 1:  # lines start+1 .. end-1 (0-based) form a paragraph
                text = "\n".join(lines[start + 1 : end])
                size = len(text.encode())
                chunks.append(
                    TextItem(len(chunks), file.path, text, size, file.mtime, start + 2, end)
                )
    return chunks


WORD = re.compile(r"\w+")


def shingle_set(text: str, size: int = 5) -> set[tuple[str, ...]]:
    """Word shingles the slow, obvious way: what the LSH pipeline must agree with."""
    words = WORD.findall(text.lower())
    return {tuple(words[i : i + size]) for i in range(max(1, len(words) - size + 1))}


def oracle_jaccard(a: str | set[tuple[str, ...]], b: str | set[tuple[str, ...]]) -> float:
    x = shingle_set(a) if isinstance(a, str) else a
    y = shingle_set(b) if isinstance(b, str) else b
    return len(x & y) / len(x | y)
