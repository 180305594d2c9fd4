"""`tpsearch eval retrieval`: a table of the metrics per mode, or JSON with every query's ranks.

The table keeps to 80 columns: one row per mode, one column per metric. A mode that could
not run shows dashes and, under the table, why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tpsearch.analysis.ranking import METRIC_LABELS

if TYPE_CHECKING:
    from tpsearch.collection.retrieval_eval import ModeOutcome, QueryOutcome, RetrievalReport


def _shown(path: Path, cwd: Path) -> str:
    try:
        return path.relative_to(cwd).as_posix() or "."
    except ValueError:
        return str(path)


def retrieval_warnings(report: RetrievalReport) -> list[str]:
    """What the user should fix in the judged file or the collection (for stderr)."""
    lines = []
    if report.skipped:
        at = ", ".join(str(n) for n in report.skipped_lines)
        more = ", ..." if report.skipped > len(report.skipped_lines) else ""
        lines.append(
            f"{report.source}: skipped {report.skipped} malformed lines ({at}{more}): write "
            "query<TAB>path[<TAB>path ...]"
        )
    if report.missing:
        named = ", ".join(report.missing[:3]) + (", ..." if len(report.missing) > 3 else "")
        lines.append(
            f"{len(report.missing)} judged paths are in no file of the collection ({named}); "
            f"they count as never found. Index {report.root} or pass --root DIR"
        )
    return lines


def render_retrieval(console: Console, report: RetrievalReport, cwd: Path) -> None:
    console.print(
        Text(
            f"{report.queries} judged queries from {report.source}, "
            f"pages under {_shown(report.root, cwd)}",
            style="dim",
        ),
        highlight=False,
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("mode")
    table.add_column("queries", justify="right")
    for label in METRIC_LABELS.values():
        table.add_column(label, justify="right")
    for outcome in report.modes:
        if outcome.means is None:
            table.add_row(outcome.mode, "-", *("-" for _ in METRIC_LABELS), style="dim")
            continue
        values = outcome.means.as_dict().values()
        table.add_row(outcome.mode, str(len(outcome.queries)), *(f"{v:.3f}" for v in values))
    console.print(table)
    for outcome in report.modes:
        if not outcome.available:
            console.print(
                Text(f"{outcome.mode} unavailable: {outcome.reason}", style="yellow"),
                highlight=False,
            )
        for notice in outcome.notices:
            console.print(Text(f"{outcome.mode}: {notice}", style="dim"), highlight=False)
    misses = _missed_everywhere(report.modes)
    if misses:
        console.print(
            Text(
                f"{misses} queries found no relevant file in the top {report.depth} of any mode "
                "(--json shows each query's places)",
                style="dim",
            ),
            highlight=False,
        )


def _missed_everywhere(modes: tuple[ModeOutcome, ...]) -> int:
    ran = [m for m in modes if m.available]
    if not ran:
        return 0
    return sum(
        all(m.queries[i].first_place is None for m in ran) for i in range(len(ran[0].queries))
    )


def _query_json(outcome: QueryOutcome) -> dict[str, Any]:
    return {
        "line": outcome.query.line,
        "query": outcome.query.text,
        "relevant": dict(outcome.places),  # judged path -> 1-based place, null if not ranked
        "first_place": outcome.first_place,
        **{label: round(value, 6) for label, value in outcome.scores.as_dict().items()},
        "top": list(outcome.ranked),  # the collection's paths, best first
    }


def retrieval_json(report: RetrievalReport) -> str:
    modes: dict[str, Any] = {}
    for outcome in report.modes:
        means = outcome.means.as_dict() if outcome.means is not None else {}
        modes[outcome.mode] = {
            "available": outcome.available,
            "reason": outcome.reason,
            "queries": len(outcome.queries),
            **{label: round(value, 6) for label, value in means.items()},
            "notices": list(outcome.notices),
            "per_query": [_query_json(q) for q in outcome.queries],
        }
    data = {
        "source": report.source,
        "root": str(report.root),
        "queries": report.queries,
        "skipped": report.skipped,
        "missing": list(report.missing),
        "depth": report.depth,
        "modes": modes,
    }
    return json.dumps(data, indent=2, ensure_ascii=False)
