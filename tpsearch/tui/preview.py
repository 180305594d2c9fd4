"""Rich text for the interactive screen: result rows and the passage preview.

Pure functions of records, so they are tested without a terminal. Marks that matter never
depend on colour alone (NO_COLOR, monochrome terminals): the passage's own lines carry a `▌`
in the gutter, and the score column is a number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.text import Text

from tpsearch.collection.passages import Passage
from tpsearch.collection.search import Hit
from tpsearch.collection.visible import visible

MARK = "▌"


def hit_row(hit: Hit) -> Text:
    """`0.842  docs/guide.md:12-30  Installation › Upgrading` on one line."""
    row = Text(no_wrap=True, overflow="ellipsis")
    row.append(f"{hit.score:6.3f}  ", style="cyan")
    row.append(f"{visible(hit.path)}:{hit.start_line}-{hit.end_line}", style="bold")
    if hit.heading:
        row.append(f"  {visible(hit.heading)}", style="dim")
    return row


def _terms_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    words = [re.escape(t) for t in terms if len(t) > 1]
    return re.compile(r"\b(?:" + "|".join(words) + r")\w*", re.I) if words else None


def passage_text(passage: Passage, terms: Sequence[str]) -> Text:
    """Numbered lines; the passage's own lines marked in the gutter, query words in bold."""
    width = len(str(passage.lines[-1][0])) if passage.lines else 1
    pattern = _terms_pattern(terms)
    out = Text()
    if passage.stale:
        out.append("(changed since it was indexed: the indexed text)\n", style="italic")
    for number, line in passage.lines:
        inside = passage.start_line <= number <= passage.end_line
        out.append(f"{number:>{width}} ", style="dim")
        out.append(MARK if inside else " ", style="yellow" if inside else "")
        out.append(" ")
        body = Text(visible(line), style="" if inside else "dim")  # same length: marks hold
        if pattern is not None and inside:
            for match in pattern.finditer(line):
                body.stylize("bold reverse", match.start(), match.end())
        out.append_text(body)
        out.append("\n")
    return out
