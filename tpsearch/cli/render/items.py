"""What dedupe and cluster output share: how an item's place is written, in tables and JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tpsearch.analysis.items import TextItem
from tpsearch.collection.visible import visible

ShowPath = Callable[[str], str]  # a stored path -> the path to print


def as_stored(path: str) -> str:
    return path


def location(item: TextItem, show: ShowPath) -> str:
    """`path` for a whole file, `path:start-end` for a chunk, the path as shown on a terminal:
    control characters made visible before a table measures it (the console would make them
    visible too, but after the layout had counted them as zero wide and cut the cell)."""
    shown = visible(show(item.path))
    if item.end_line is None:
        return shown
    return f"{shown}:{item.start_line}-{item.end_line}"


def item_dict(item: TextItem, show: ShowPath) -> dict[str, Any]:
    """An item without its text: JSON output names things, it does not copy them."""
    return {
        "id": item.id,
        "path": show(item.path),
        "start_line": item.start_line,
        "end_line": item.end_line,
        "size": item.size,
        "mtime": item.mtime,
    }
