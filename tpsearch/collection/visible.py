"""Text from files as it may be shown: control characters made visible.

Snippets, headings, file names, cluster labels: anything read from a file or a file name can
hold escape sequences (ESC[2J clears the screen, OSC 0 sets the window title, OSC 8 makes a
link) or bidirectional overrides that reorder what a reader sees. `visible` turns each such
character into a visible stand-in of one cell (␛ for ESC, ␇ for BEL, � for C1 and bidi
controls). The CLI applies it to everything it draws (`cli/render/safe.py`), the interactive
screen to the rows and passages it shows; JSON output keeps the exact text.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline (layout), as Unicode control pictures; DEL; the C1 block and
# the bidirectional embeddings, overrides and isolates ("Trojan Source") as U+FFFD.
_STAND_INS: dict[int, str] = {c: chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A)}
_STAND_INS[0x7F] = "\u2421"
_STAND_INS.update(
    {c: "\ufffd" for c in (*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
)
UNSAFE = re.compile("[" + "".join(re.escape(chr(c)) for c in _STAND_INS) + "]")


def visible(text: str) -> str:
    """`text` with every character that could control a terminal made visible."""
    return text.translate(_STAND_INS) if UNSAFE.search(text) else text
