"""Rich and JSON rendering for the embedding engine's commands: inspect, embed, progress bars.

`eval sts` and `calibrate` render in evaluation.py, their heat map in heatmap.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tpsearch.engine.prompt_inputs import PromptView

PART_STYLES = {"special": "dim", "template": "cyan", "pst": "bold magenta", "text": "white"}


@contextlib.contextmanager
def progress_bar(console: Console, description: str) -> Iterator[Any]:
    """A `(done, total)` callback drawing a Rich bar on `console`; silent when not a terminal."""
    if not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}", markup=False),  # names from files
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def settings_table(settings: Mapping[str, object]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in settings.items():
        table.add_row(key, Text(str(value)))
    return table


def render_prompt_view(
    console: Console, view: PromptView, settings: Mapping[str, object], as_json: bool
) -> None:
    if as_json:
        data = {
            "prompt": view.prompt,
            "pst_index": view.pst_index,
            "last_index": view.last_index,
            "truncated": view.truncated,
            "tokens": [token.__dict__ for token in view.tokens],
            "settings": dict(settings),
        }
        console.print_json(json.dumps(data, default=str))
        return
    console.print(settings_table(settings))
    console.print(Text("prompt  ", style="bold") + Text(view.prompt))
    table = Table(title="model input", title_justify="left", show_edge=False)
    for name in ("pos", "id", "token", "part", "pooled", "cached"):
        table.add_column(name, justify="right" if name in ("pos", "id") else "left")
    for token in view.tokens:
        table.add_row(
            str(token.position),
            "-" if token.token_id is None else str(token.token_id),
            Text(repr(token.text), style=PART_STYLES[token.part]),
            Text(token.part, style=PART_STYLES[token.part]),
            "◀ pooled" if token.pooled else "",
            "kv cache" if token.cached else "",
        )
    console.print(table)
    if view.truncated:
        console.print(Text("the text was cut to fit max length", style="yellow"))


def render_vectors(console: Console, texts: list[str], vectors: np.ndarray, fmt: str) -> None:
    """JSON lines ({"text", "vector"}) or one JSON array of vectors."""
    rounded = vectors.astype(np.float64).round(7)  # float32 precision, without binary noise
    if fmt == "jsonl":
        for text, vector in zip(texts, rounded, strict=True):
            console.out(json.dumps({"text": text, "vector": vector.tolist()}), highlight=False)
    else:
        console.out(json.dumps(rounded.tolist()), highlight=False)
