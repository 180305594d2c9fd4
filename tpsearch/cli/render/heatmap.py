"""`calibrate --plot FILE.png`: the whole calibration grid as heat maps.

One panel per (template, tp_start): exit layers on x, TP end layers on y, and under them a
"plain" row, the same template without TP. One colour scale for all panels; the best TP
setting has a red frame, the chosen setting (when it is the plain prompt) a dashed one.
Drawn with `Figure` and Agg, never pyplot: no GUI backend, no global state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tpsearch.cli.render.cluster_map import check_plot_path
from tpsearch.engine.sweep import CalibrationResult, template_name

__all__ = ["check_plot_path", "plot_calibration"]

_DPI = 120
_CELL = 0.32  # inches per grid cell
_ANNOTATE_UP_TO = 48  # exit columns up to which every cell shows its value


def plot_calibration(result: CalibrationResult, path: Path, title: str = "") -> Path:
    """Write the heat maps to `path` (a .png in an existing folder) and return the path."""
    path = check_plot_path(path)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    panels = _panels(result)
    columns = max(1, len(result.tp_starts))
    rows = -(-len(panels) // columns)
    height_cells = len(result.tp_ends) + 1
    width = max(5.0, columns * (_CELL * len(result.exits) + 1.2) + 1.2)
    height = max(2.5, rows * (_CELL * height_cells + 1.0) + 1.0)
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    everything = np.concatenate([result.grid.ravel(), result.baseline.ravel()])
    low, high = float(np.nanmin(everything)), float(np.nanmax(everything))
    best, chosen = result.best, result.chosen
    image = None
    for number, (t, s) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, number + 1)
        tp_rows = result.grid[t, s] if s is not None else np.empty((0, len(result.exits)))
        cells = np.vstack([tp_rows, result.baseline[t][None]])  # (tp_ends + 1, exits)
        image = axes.imshow(
            np.ma.masked_invalid(cells),
            cmap="viridis",
            vmin=low,
            vmax=high,
            aspect="auto",
            interpolation="nearest",
            origin="upper",
        )
        labels = [str(end) for end in (result.tp_ends if s is not None else ())] + ["plain"]
        axes.set_yticks(range(len(labels)), labels, fontsize=7)
        step = max(1, len(result.exits) // 15)
        ticks = list(range(0, len(result.exits), step))
        axes.set_xticks(ticks, [str(result.exits[i]) for i in ticks], fontsize=7)
        if number >= len(panels) - columns:
            axes.set_xlabel("exit layer", fontsize=8)
        if number % columns == 0:
            axes.set_ylabel("TP end layer", fontsize=8)
        start = f", tp_start {result.tp_starts[s]}" if s is not None else ""
        axes.set_title(f"{template_name(result.templates[t])}{start}", fontsize=9)
        if len(result.exits) <= _ANNOTATE_UP_TO:
            for (y, x), value in np.ndenumerate(cells):
                if np.isfinite(value):
                    shade = (value - low) / (high - low) if high > low else 0.5
                    axes.text(
                        x,
                        y,
                        f"{value:.0f}",
                        ha="center",
                        va="center",
                        fontsize=5,
                        color="black" if shade > 0.6 else "white",
                    )
        marks = []
        if (
            best is not None
            and s is not None
            and (result.templates[t], result.tp_starts[s])
            == (
                best.template,
                best.tp_start,
            )
        ):
            y = result.tp_ends.index(best.tp_end)
            marks.append((y, result.exits.index(best.exit_layer), "solid"))
        if not chosen.tp and result.templates[t] == chosen.template:
            marks.append((len(labels) - 1, result.exits.index(chosen.exit_layer), "dashed"))
        for y, x, style in marks:
            frame = Rectangle(
                (x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2, linestyle=style
            )
            axes.add_patch(frame)
    if image is not None:
        figure.colorbar(image, ax=figure.axes, label="Spearman x100", shrink=0.8)
    legend = "red frame: best TP" if best is not None else ""
    if not chosen.tp:
        legend += ("; " if legend else "") + "dashed: the plain prompt chosen"
    figure.suptitle(
        f"{title}\nSpearman x100 on {result.pairs} pairs ({legend})".lstrip(), fontsize=9
    )
    figure.savefig(path, format="png")
    return path


def _panels(result: CalibrationResult) -> list[tuple[int, int | None]]:
    """(template, tp_start) index pairs with a valid TP setting; a template without any gets
    one plain-prompt panel (tp_start None)."""
    panels: list[tuple[int, int | None]] = []
    for t in range(len(result.templates)):
        starts = [s for s in range(len(result.tp_starts)) if np.isfinite(result.grid[t, s]).any()]
        if starts:
            panels.extend((t, s) for s in starts)
        else:
            panels.append((t, None))
    return panels
