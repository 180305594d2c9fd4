"""A 2-D map of clustered embeddings, for `cluster --plot`.

The axes are the two directions along which the cluster centroids spread most (PCA of the
centroids, each weighted by its cluster's size): clusters that are apart in embedding space
land apart on the map, which is what the map is for. Plain PCA of the points often spends
both axes on variation inside the biggest topics. With fewer than three clusters the
centroids span fewer than two directions; the rest come from PCA of the points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tpsearch.analysis.clustering import ClusterReport
from tpsearch.analysis.items import Embeddings

_PCA_SAMPLE = 10_000  # rows enough to find the main directions of the points


@dataclass(frozen=True, eq=False)
class Projection:
    points: np.ndarray  # (m, 2), one row per clustered item, in `report.point_ids` order
    clusters: np.ndarray  # (m,) cluster index of each point
    centres: np.ndarray  # (k, 2) mean position of each cluster's points, where labels go


def project_2d(embeddings: Embeddings, report: ClusterReport, seed: int = 0) -> Projection:
    """Each clustered item as a point in the plane of largest between-cluster spread."""
    x = embeddings.vectors_at(embeddings.rows_for(report.point_ids))  # (m, d) float32, no copy
    if len(x) == 0:
        return Projection(np.empty((0, 2)), np.empty(0, np.int64), np.empty((0, 2)))
    mean = x.mean(axis=0, dtype=np.float64)
    sizes = np.bincount(report.assignments, minlength=report.k)
    spread = (report.centroids - mean) * np.sqrt(sizes)[:, None]
    axes = _main_directions(spread, 2)
    if len(axes) < 2:
        rows = np.sort(np.random.default_rng(seed).permutation(len(x))[:_PCA_SAMPLE])
        residual = x[rows] - mean
        residual -= residual @ axes.T @ axes
        axes = np.vstack([axes, _main_directions(residual, 2 - len(axes))])
    if len(axes) < 2:  # every point identical: nothing to spread along
        axes = np.vstack([axes, np.zeros((2 - len(axes), x.shape[1]))])
    points = x @ axes.T.astype(np.float32) - (mean @ axes.T).astype(np.float32)  # (m, 2)
    centres = np.array([points[report.assignments == c].mean(axis=0) for c in range(report.k)])
    return Projection(points, report.assignments, centres.reshape(-1, 2))


def _main_directions(rows: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` unit principal directions of `rows` with non-negligible spread."""
    if len(rows) == 0:
        return np.empty((0, rows.shape[1]))
    _, singular, directions = np.linalg.svd(rows, full_matrices=False)
    keep = singular[:count] > 1e-9 * max(float(singular[0]), 1.0)
    directions = directions[:count][keep]
    # An SVD direction's sign is arbitrary: fix it so the same data always looks the same.
    signs = np.sign(directions[np.arange(len(directions)), np.abs(directions).argmax(axis=1)])
    return directions * signs[:, None]
