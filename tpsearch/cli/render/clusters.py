"""How cluster results look: a Rich table for people, a plain dict for `--json`.

Items carry the paths the collection stores (relative to its root); `show` turns one into the
path to print. The 2-D map is drawn by `cluster_map.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tpsearch.analysis.clustering import Cluster, ClusterReport
from tpsearch.analysis.items import TextItem
from tpsearch.cli.render.items import ShowPath, as_stored, item_dict, location


def clusters_renderable(report: ClusterReport, show: ShowPath = as_stored) -> RenderableType:
    """A table of clusters, largest first: keywords, size, the members nearest the centre."""
    if not report.clusters:
        message = "Nothing to cluster: no embedded items."
        if report.unembedded:
            message += f" {report.unembedded} are waiting to be embedded: run `tpsearch index`."
        return Text(message)
    table = Table(box=box.SIMPLE_HEAD, caption=_cluster_caption(report), caption_justify="left")
    table.add_column("#", justify="right", style="bold")
    table.add_column("Topic", overflow="fold")
    table.add_column("Size", justify="right")
    table.add_column("Cohesion", justify="right")
    table.add_column("Closest to the centre", overflow="fold")
    for cluster in report.clusters:
        topic = Text(cluster.label, style="bold")
        if len(cluster.keywords) > 3:
            topic.append("\n" + ", ".join(cluster.keywords[3:]), style="dim")
        closest = "\n".join(location(r.item, show) for r in cluster.representatives)
        table.add_row(
            str(cluster.index + 1), topic, str(cluster.size), f"{cluster.cohesion:.2f}", closest
        )
    parts: list[RenderableType] = [table]
    if report.note:
        parts.append(Text(report.note, style="dim"))
    if report.unembedded:
        parts.append(
            Text(
                f"{report.unembedded} items not embedded yet were left out: run `tpsearch index`.",
                style="dim",
            )
        )
    return Group(*parts)


def _cluster_caption(report: ClusterReport) -> str:
    settings = report.settings
    quality = f"silhouette {report.silhouette:.2f}" if report.silhouette is not None else ""
    by_k, baseline = report.silhouette_by_k, report.baseline_by_k
    if by_k:
        tried = f"k={settings.k_min}..{max(by_k)}"
        best = max(by_k, key=lambda k: by_k[k] - baseline.get(k, 0.0))
        how = (
            f"k={report.k} chosen among {tried}: silhouette {by_k[best]:.2f} against "
            f"{baseline.get(best, 0.0):.2f} for data without topics"
        )
    else:
        how = f"k={report.k}" + (f", {quality}" if quality else "")
    return f"{report.clustered} items · {how} · seed {settings.seed}"


def clusters_as_dict(
    report: ClusterReport, items: Sequence[TextItem] = (), show: ShowPath = as_stored
) -> dict[str, Any]:
    """The cluster report as JSON-ready data (`--json`); with the clustered `items`, each
    cluster lists its members (as the representatives: path, lines, ...), representatives first."""
    by_id = {item.id: item for item in items}

    def members(cluster: Cluster) -> list[dict[str, Any]]:
        if not by_id:
            return []
        first = [r.item.id for r in cluster.representatives]
        rest = sorted(set(cluster.member_ids) - set(first))
        return [item_dict(by_id[i], show) for i in (*first, *rest)]

    return {
        "settings": asdict(report.settings),
        "k": report.k,
        "silhouette": report.silhouette,
        "silhouette_by_k": {str(k): s for k, s in report.silhouette_by_k.items()},
        "baseline_silhouette_by_k": {str(k): s for k, s in report.baseline_by_k.items()},
        "clustered": report.clustered,
        "unembedded": report.unembedded,
        "note": report.note,
        "clusters": [
            {
                "index": c.index,
                "label": c.label,
                "keywords": list(c.keywords),
                "size": c.size,
                "cohesion": c.cohesion,
                "representatives": [
                    {**item_dict(r.item, show), "similarity": r.similarity}
                    for r in c.representatives
                ],
                "member_ids": list(c.member_ids),
                **({"members": members(c)} if by_id else {}),
            }
            for c in report.clusters
        ],
    }
