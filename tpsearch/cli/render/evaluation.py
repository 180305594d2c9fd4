"""Rich and JSON rendering of `eval sts` and `calibrate`: best settings first, 80 columns wide.

The full calibration grid (templates x tp_start x tp_end x exit) does not fit a terminal; it
goes to `--json` and, as a heat map, to `--plot` (heatmap.py). The terminal gets the ten best
settings, each with its difference to the best plain prompt, and a short summary.
"""

from __future__ import annotations

import json
import math
import textwrap
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tpsearch.engine.bootstrap import PairedDifference
from tpsearch.engine.evaluation import CalibrationResult, StsResult
from tpsearch.engine.sweep import TOP, SweepSetting, template_name


def pairs_used(pairs: int, sampled_from: int | None) -> str:
    """'300 of 1379 pairs' for a sample, '1379 pairs' otherwise."""
    return f"{pairs} of {sampled_from} pairs" if sampled_from is not None else f"{pairs} pairs"


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: an undefined correlation is null."""
    return None if value is None or math.isnan(value) else round(value, 3)


def _say(console: Console, message: str | Text) -> None:
    """Prose wrapped at the console's width between words, never inside a path or a flag."""
    text = message if isinstance(message, Text) else Text(message)
    wrapped = textwrap.fill(
        text.plain, width=console.width, break_long_words=False, break_on_hyphens=False
    )
    console.print(Text(wrapped, style=text.style), soft_wrap=True, highlight=False)


def _interval(difference: PairedDifference) -> str:
    return (
        f"{difference.difference:+.2f} points, {difference.confidence:.0%} interval "
        f"[{difference.low:+.2f}, {difference.high:+.2f}] "
        f"({difference.resamples} paired bootstrap resamples)"
    )


def _verdict(difference: PairedDifference) -> Text:
    if difference.low > 0:
        return Text("TP is better here: the interval lies above zero", style="green")
    if difference.high < 0:
        return Text("TP is worse here: the interval lies below zero", style="yellow")
    return Text(
        "no clear difference: the interval includes zero (more pairs would narrow it)",
        style="yellow",
    )


def render_sts(console: Console, result: StsResult, as_json: bool) -> None:
    used = pairs_used(result.pairs, result.sampled_from)
    difference = result.tp_minus_plain
    if as_json:
        data = {
            "pairs": result.pairs,
            "sampled_from": result.sampled_from,
            "pairs_used": used,
            "skipped": result.skipped,
            "tp": _finite(result.tp),
            "baseline": _finite(result.baseline),
            "tp_settings": result.tp_settings,
            "baseline_settings": result.baseline_settings,
            "tp_minus_plain": difference.as_dict() if difference else None,
            "tp_note": result.tp_note,
        }
        console.print_json(json.dumps(data))
        return
    table = Table(title=f"STS, {used}: Spearman x100 of cosine similarity", title_justify="left")
    table.add_column("method")
    table.add_column("settings")
    table.add_column("Spearman", justify="right")
    if result.tp is not None and result.tp_settings is not None:
        table.add_row("with TP", result.tp_settings, f"{result.tp:.2f}")
    table.add_row("plain prompt", result.baseline_settings, f"{result.baseline:.2f}")
    console.print(table)
    if difference is not None:
        _say(console, f"TP minus plain prompt: {_interval(difference)}")
        _say(console, _verdict(difference))
    if result.tp_note:
        _say(console, Text(f"TP not scored: {result.tp_note}", style="dim"))
    if result.skipped:
        _say(console, Text(f"{result.skipped} malformed rows skipped", style="yellow"))


def render_calibration(
    console: Console,
    result: CalibrationResult,
    as_json: bool,
    *,
    saved_to: str | None = None,
    model: str = "",
    pooling: str = "last",
) -> None:
    if as_json:
        console.print_json(json.dumps(calibration_json(result, saved_to, model, pooling)))
        return
    used = pairs_used(result.pairs, result.sampled_from)
    best, plain = result.best, result.best_plain
    if result.ranking:
        rows: list[SweepSetting] = list(result.ranking)
        title = f"Best settings on {used} (Spearman x100; minus the best plain prompt)"
    else:
        rows = _plain_ranking(result)
        title = f"Best plain-prompt exit layers on {used} (Spearman x100)"
    console.print(_ranking_table(rows, title, result.num_layers))
    if best is not None:
        _say(console, f"best TP:     {_setting(best, result.num_layers)}")
    _say(console, f"best plain:  {_setting(plain, result.num_layers)}")
    if best is not None and best.versus_plain is not None:
        _say(console, f"TP minus plain: {_interval(best.versus_plain)}")
    _say(console, Text(f"swept: {_swept(result)}", style="dim"))
    _say(console, _decision(result, saved_to is not None))
    if result.skipped:
        _say(console, Text(f"{result.skipped} malformed rows skipped", style="yellow"))
    if result.ranking:
        _say(
            console, Text("the full grid: --json, or a heat map with --plot FILE.png", style="dim")
        )
    if saved_to:
        _say(
            console,
            f"Saved for {model} ({pooling} pooling) in {saved_to}: later runs with this model "
            "use it unless you pass --template/--tp-start/--tp-end/--exit-layer.",
        )


def _ranking_table(rows: list[SweepSetting], title: str, num_layers: int) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("template")
    table.add_column("TP layers")
    table.add_column("exit", justify="right")
    table.add_column("Spearman", justify="right")
    table.add_column("minus plain [95%]", justify="right")
    for rank, row in enumerate(rows, 1):
        versus = row.versus_plain
        table.add_row(
            str(rank),
            row.template_name,
            row.layers,
            f"{row.exit_layer}/{num_layers}",
            f"{row.spearman:.2f}",
            Text(versus.describe(), style="green" if versus.low > 0 else "")
            if versus is not None
            else "",
        )
    return table


def _plain_ranking(result: CalibrationResult) -> list[SweepSetting]:
    """The best (template, exit) settings of the plain prompt, for a sweep without TP."""
    scores = result.baseline.ravel()
    finite = np.flatnonzero(np.isfinite(scores))
    best = finite[np.argsort(-scores[finite], kind="stable")][:TOP]
    exits = len(result.exits)
    return [
        SweepSetting(
            result.templates[i // exits], False, 0, 0, result.exits[i % exits], float(scores[i])
        )
        for i in best
    ]


def _setting(setting: SweepSetting, num_layers: int) -> str:
    layers = f"TP layers {setting.layers}, " if setting.tp else ""
    return (
        f"{setting.template_name}, {layers}exit {setting.exit_layer}/{num_layers}: "
        f"{setting.spearman:.2f}"
    )


def _swept(result: CalibrationResult) -> str:
    names = ", ".join(template_name(t) for t in result.templates)
    parts = [f"{len(result.templates)} template{'s' * (len(result.templates) > 1)} ({names})"]
    if result.tp_starts:
        parts.append(f"tp_start {_layer_list(result.tp_starts)}")
        parts.append(f"tp_end {_layer_list(result.tp_ends)}")
    else:
        parts.append("no TP (--no-tp)")
    parts.append(f"exit {_layer_list(result.exits)}")
    return ", ".join(parts) + f"; {result.passes} forward passes"


def _decision(result: CalibrationResult, saved: bool) -> Text:
    chosen = result.chosen
    verb = "saved" if saved else "the one to use (not saved)"
    plain = f"{verb} the plain prompt, exit {chosen.exit_layer} ({chosen.template_name})."
    if result.outcome == "tp":
        return Text(
            f"TP beat the plain prompt here: {verb} TP layers {chosen.layers}, exit "
            f"{chosen.exit_layer} ({chosen.template_name}). It is the best of "
            f"{_valid_settings(result)} settings on these pairs: `tpsearch eval sts` on other "
            "data is the fairer check.",
            style="green",
        )
    if result.outcome == "tp-not-better":
        return Text(f"TP did not beat the plain prompt here: {plain}", style="yellow")
    if result.outcome == "no-slot":
        return Text(f"no TP setting gave a defined score: {plain}", style="yellow")
    return Text(f"--no-tp: {plain}")


def _valid_settings(result: CalibrationResult) -> int:
    return int(np.isfinite(result.grid).sum())


def _layer_list(layers: tuple[int, ...]) -> str:
    """(1, 2, 3, 5) as '1-3,5'."""
    runs: list[list[int]] = []
    for layer in layers:
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def calibration_json(
    result: CalibrationResult, saved_to: str | None, model: str, pooling: str
) -> dict[str, Any]:
    """Everything: the ranking, the choice and why, and the full grid."""
    best = result.best
    return {
        "model": model,
        "pooling": pooling,
        "pairs": result.pairs,
        "sampled_from": result.sampled_from,
        "pairs_used": pairs_used(result.pairs, result.sampled_from),
        "skipped": result.skipped,
        "outcome": result.outcome,
        "chosen": result.chosen.as_dict(),
        "best": best.as_dict() if best else None,
        "best_plain": result.best_plain.as_dict(),
        "tp_minus_plain": best.versus_plain.as_dict() if best and best.versus_plain else None,
        "ranking": [setting.as_dict() for setting in result.ranking],
        "saved": {"file": saved_to, "tp": result.chosen.tp} if saved_to else None,
        "passes": result.passes,
        "templates": list(result.templates),
        "tp_starts": list(result.tp_starts),
        "tp_ends": list(result.tp_ends),
        "exits": list(result.exits),
        "grid_axes": ["template", "tp_start", "tp_end", "exit"],
        "grid": _nested(result.grid),
        "baseline_axes": ["template", "exit"],
        "baseline": _nested(result.baseline),
    }


def _nested(values: np.ndarray) -> Any:
    if values.ndim == 1:
        return [_finite(float(v)) for v in values]
    return [_nested(row) for row in values]
