"""A Rich console that never lets text from files drive the terminal.

`SafeConsole` applies `visible` (collection/visible.py) to every piece of text it draws, at the
last step before the terminal, so no renderable can forget it: snippets, headings, paths,
dedupe previews, cluster labels, status, progress lines. The escape codes Rich writes for
styles and links are added after this step and are untouched; JSON output is not drawn by Rich
and keeps the exact text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.segment import Segment

from tpsearch.collection.visible import UNSAFE, visible

__all__ = ["SafeConsole", "visible"]


class SafeConsole(Console):
    """A Rich console that shows control characters in the text it draws (see `visible`)."""

    def render(self, renderable: Any, options: Any = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not UNSAFE.search(segment.text):
                yield segment
            else:
                yield Segment(visible(segment.text), segment.style, segment.control)
