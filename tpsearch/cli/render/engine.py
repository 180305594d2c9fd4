"""Rich and JSON rendering for the embedding engine's commands: inspect, embed, eval, calibrate."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tpsearch.engine.evaluation import CalibrationResult, StsResult
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
        TextColumn("{task.description}"),
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


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: an undefined correlation is null."""
    return None if value is None or math.isnan(value) else round(value, 3)


def render_sts(console: Console, result: StsResult, as_json: bool) -> None:
    if as_json:
        data = {**result.__dict__, "tp": _finite(result.tp), "baseline": _finite(result.baseline)}
        console.print_json(json.dumps(data))
        return
    table = Table(title=f"STS: {result.pairs} pairs (Spearman x100 of cosine similarity)")
    table.add_column("method")
    table.add_column("settings")
    table.add_column("Spearman", justify="right")
    if result.tp is not None:
        table.add_row("with TP", result.tp_settings, f"{result.tp:.2f}")
    table.add_row("without TP", result.baseline_settings, f"{result.baseline:.2f}")
    console.print(table)
    if result.tp is not None:
        delta = result.tp - result.baseline
        console.print(f"Token Prepending: {delta:+.2f} points")
    if result.skipped:
        console.print(Text(f"{result.skipped} malformed rows skipped", style="yellow"))


def render_calibration(
    console: Console, result: CalibrationResult, saved_to: str | None, as_json: bool
) -> None:
    tp_end, exit_layer, score = result.best
    base_exit, base_score = result.best_baseline
    if as_json:
        data = {
            "tp_start": result.tp_start,
            "best": {"tp_end": tp_end, "exit_layer": exit_layer, "spearman": _finite(score)},
            "baseline_best": {"exit_layer": base_exit, "spearman": _finite(base_score)},
            "tp_ends": list(result.tp_ends),
            "exits": list(result.exits),
            "grid": [[_finite(v) for v in row] for row in result.grid],
            "baseline": [_finite(v) for v in result.baseline],
            "pairs": result.pairs,
            "skipped": result.skipped,
            "saved_to": saved_to,
        }
        console.print_json(json.dumps(data))
        return
    finite = result.grid[np.isfinite(result.grid)]
    low, high = float(min(finite.min(), np.nanmin(result.baseline))), float(finite.max())
    table = Table(
        title=f"Spearman x100 on {result.pairs} pairs: TP end layer (rows) x exit layer (columns)",
        title_justify="left",
        padding=(0, 0),
    )
    table.add_column("tp_end", justify="right", style="bold")
    for layer in result.exits:
        table.add_column(str(layer), justify="right")
    for end, row in zip(result.tp_ends, result.grid, strict=True):
        table.add_row(
            str(end),
            *(
                _cell(v, low, high, (end, layer) == (tp_end, exit_layer))
                for v, layer in zip(row, result.exits, strict=True)
            ),
        )
    table.add_row("no TP", *(_cell(v, low, high, False) for v in result.baseline), end_section=True)
    console.print(table)
    console.print(
        f"best: TP layers [{result.tp_start}, {tp_end}), exit layer {exit_layer}: "
        f"[bold]{score:.2f}[/] (without TP: {base_score:.2f} at exit {base_exit}, "
        f"{score - base_score:+.2f})"
    )
    if base_score > score:
        console.print(
            Text(
                f"the plain prompt scored higher on this data: `--no-tp --exit-layer {base_exit}` "
                "uses it (a bigger dev set, or another template, may say otherwise)",
                style="yellow",
            )
        )
    if result.skipped:
        console.print(Text(f"{result.skipped} malformed rows skipped", style="yellow"))
    if saved_to:
        console.print(f"saved for this model in {saved_to}; later runs use it unless flags say")


def _cell(value: float, low: float, high: float, best: bool) -> Text:
    if math.isnan(value):
        return Text("  ·", style="dim")
    shade = 0.0 if high <= low else (value - low) / (high - low)
    red, green = int(255 * (1 - shade)), int(200 * shade + 55)
    style = f"on rgb({red},{green},60)" + (" bold underline" if best else "")
    return Text(f"{value:5.1f}", style=style)
