"""`cluster --plot FILE.png`: the collection as a 2-D map, points coloured by cluster.

matplotlib is imported here only, and through `Figure` rather than pyplot, so no GUI
backend or global figure state is involved: it renders straight to PNG with Agg.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import numpy as np

from tpsearch.analysis.clustering import ClusterReport
from tpsearch.analysis.projection import Projection
from tpsearch.errors import ConfigError

_MAX_POINTS = 50_000  # more dots add drawing time, not information
_SIZE_INCHES = (12.0, 7.5)  # the map, and the legend of cluster labels beside it
_DPI = 120  # 1440 x 900 pixels
_LABELS_AT_CENTRES = 12  # up to this many clusters, each centre shows its keywords too


def _palette(k: int) -> list[tuple[float, float, float, float]]:
    """k distinct colours: the qualitative tab10 / tab20 sets, a continuous map beyond."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba

    if k <= 20:
        listed = colormaps["tab10" if k <= 10 else "tab20"]
        return [to_rgba(listed(i)) for i in range(k)]
    return [to_rgba(c) for c in colormaps["turbo"].resampled(k)(np.arange(k))]


def check_plot_path(path: Path) -> Path:
    """A path the map can be written to: ConfigError before any work when it cannot."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"cannot plot to {path}: the map is a PNG image, name it *.png")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: folder {path.parent} does not exist")
    try:  # a trial file: permissions, a read-only mount and ACLs all show up here
        with tempfile.TemporaryFile(dir=path.parent):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as error:
        raise ConfigError(
            f"cannot write {path} ({error.strerror or error}): choose a folder you may write to"
        ) from None
    return path


def plot_cluster_map(
    projection: Projection, report: ClusterReport, path: Path, title: str | None = None
) -> Path:
    """Write the map to `path` (a .png in an existing folder) and return the path."""
    path = check_plot_path(path)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=_SIZE_INCHES, dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title or f"{report.clustered} items in {report.k} clusters")
    points, clusters = projection.points, projection.clusters
    if len(points) == 0:
        axes.text(0.5, 0.5, "no embedded items", ha="center", va="center", transform=axes.transAxes)
    else:
        shown = np.arange(len(points))
        if len(points) > _MAX_POINTS:
            shown = np.sort(
                np.random.default_rng(0).choice(len(points), _MAX_POINTS, replace=False)
            )
        colours = np.asarray(_palette(report.k))[clusters[shown]]
        dot = float(np.clip(3000 / len(shown), 2, 40))  # big dots for few points, specks for many
        axes.scatter(
            points[shown, 0],
            points[shown, 1],
            c=colours,
            s=dot,
            alpha=0.7,
            linewidths=0,
            rasterized=True,
        )
        # Labels at the centres for a few clusters; beyond that they would overlap, so the
        # centres get numbers and the legend beside the map has the words.
        palette = _palette(report.k)
        handles = []
        labelled = report.k <= _LABELS_AT_CENTRES
        for cluster in report.clusters:
            x, y = projection.centres[cluster.index]
            number = str(cluster.index + 1)
            axes.annotate(
                f"{number} {cluster.label}" if labelled else number,
                (x, y),
                ha="center",
                va="center",
                fontsize=8,
                fontweight="bold",
                bbox={
                    "boxstyle": "round,pad=0.2" if labelled else "circle,pad=0.2",
                    "facecolor": "white",
                    "alpha": 0.8,
                },
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    linestyle="",
                    color=palette[cluster.index],
                    label=f"{cluster.index + 1}. {cluster.label} ({cluster.size})",
                )
            )
        axes.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            frameon=False,
            ncols=1 if report.k <= 30 else 2,
        )
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror or error}") from None
    return path
