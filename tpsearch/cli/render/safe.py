"""Text from files, shown without letting it drive the terminal.

Snippets, headings, file names, cluster labels: anything read from a file or a file name can
hold escape sequences (ESC[2J clears the screen, OSC 0 sets the window title, OSC 8 makes a
link) or bidirectional overrides that reorder what a reader sees. `visible` turns each such
character into a visible stand-in of one cell (␛ for ESC, ␇ for BEL, � for C1 and bidi
controls), and `SafeConsole` applies it to every piece of text it draws, at the last step
before the terminal, so no renderable can forget it; the escape codes Rich writes for styles
and links are added after this step and are untouched. JSON output is not drawn by Rich and
keeps the exact text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.segment import Segment

# C0 controls but tab and newline (layout), as Unicode control pictures; DEL; the C1 block and
# the bidirectional embeddings, overrides and isolates ("Trojan Source") as U+FFFD.
_STAND_INS: dict[int, str] = {c: chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A)}
_STAND_INS[0x7F] = "\u2421"
_STAND_INS.update(
    {c: "\ufffd" for c in (*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
)
_UNSAFE = re.compile("[" + "".join(re.escape(chr(c)) for c in _STAND_INS) + "]")


def visible(text: str) -> str:
    """`text` with every character that could control a terminal made visible."""
    return text.translate(_STAND_INS) if _UNSAFE.search(text) else text


class SafeConsole(Console):
    """A Rich console that shows control characters in the text it draws (see `visible`)."""

    def render(self, renderable: Any, options: Any = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not _UNSAFE.search(segment.text):
                yield segment
            else:
                yield Segment(visible(segment.text), segment.style, segment.control)
