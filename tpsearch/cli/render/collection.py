"""How results look: Rich text for people, JSON for programs (progress bars: progress.py).

Rich prints plain text when its output is not a terminal (piped, redirected) and honours
NO_COLOR, so the same code serves both; paths are terminal hyperlinks only on a terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.style import Style
from rich.text import Text

from tpsearch.collection.sources import where

SNIPPET_INDENT = 4  # snippet lines, and the lines the terminal wraps them into

if TYPE_CHECKING:
    from tpsearch.collection import CollectionStatus
    from tpsearch.collection.hits import Hit, QueryResult
    from tpsearch.collection.indexing import IndexSummary


def _hit_lines(hit: Hit, shown: str, link: Path) -> tuple[Text, Text]:
    """The head line (rank, score, place, title › section) and the snippet under it, wrapped
    to the console's width with a hanging indent; code keeps its line breaks."""
    head = Text()
    head.append(f"{hit.rank:>2}  ", style="bold")
    head.append(f"{hit.score:.3f}  ", style="cyan")
    place = f"{shown}:{hit.start_line}-{hit.end_line}"
    head.append(place, style=Style(color="magenta", link=link.as_uri()))
    title, section = _title_and_section(hit)
    if title:
        head.append(f"  {title}", style="bold")
    if section:
        head.append(f"{' › ' if title else '  '}{section}", style="dim")
    snippet = Text(hit.snippet)
    for start, end in hit.highlights:
        snippet.stylize("bold yellow", start, end)
    return head, snippet


def _indented(console: Console, snippet: Text) -> list[Text]:
    """The snippet's lines wrapped to the console's width, each under a hanging indent (words
    are kept whole; a word longer than a line is folded)."""
    width = max(20, console.width - SNIPPET_INDENT)
    lines = []
    for line in snippet.wrap(console, width, overflow="fold"):
        line.rstrip()
        lines.append(Text(" " * SNIPPET_INDENT) + line)
    return lines


def _title_and_section(hit: Hit) -> tuple[str, str]:
    """The document's title, and the hit's heading path below it (without the title)."""
    parts = [part for part in hit.heading.split(" > ") if part]
    if hit.title and parts and parts[0] == hit.title:
        parts = parts[1:]
    return hit.title, " › ".join(parts)


def render_hits(console: Console, result: QueryResult, root: Path, cwd: Path, files: bool) -> None:
    for hit in result.hits:
        link, shown = where(root, hit.path, cwd)
        if files:
            line = Text(shown, style=Style(link=link.as_uri()))
            if hit.title and console.is_terminal:  # piped: paths only, as grep -l
                line.append(f"  {hit.title}", style="dim")
            console.print(line, highlight=False)
            continue
        head, snippet = _hit_lines(hit, shown, link)
        console.print(head, highlight=False, soft_wrap=True)
        for line in _indented(console, snippet):
            console.print(line, highlight=False, soft_wrap=True)


def hits_json(result: QueryResult, root: Path, cwd: Path, lines: bool) -> str:
    records = [h.to_dict(where(root, h.path, cwd)[1]) for h in result.hits]
    if lines:
        return "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    return json.dumps(records, ensure_ascii=False, indent=2)


def render_summary(
    console: Console, summary: IndexSummary, verbose: bool, line: bool = True
) -> None:
    """With `verbose`, each skip and its reason; then (`line`) the one-line summary."""
    if verbose:
        for skip in summary.skips:
            detail = f"  ({skip.detail})" if skip.detail else ""
            console.print(Text(f"skipped  {skip.reason:<12} {skip.rel}{detail}"), highlight=False)
    if line:
        console.print(Text(summary.line()), highlight=False)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


def status_rows(status: CollectionStatus) -> list[tuple[str, str]]:
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(status.skipped.items()))
    sizes = status.bytes_on_disk
    index = status.vector_index
    vectors = _size(sizes["vectors"])
    if index:
        probe = f", {index['nlist']} cells, nprobe {index['nprobe']}" if index["nlist"] else ""
        vectors += f" ({index['kind']}, {index['vectors']} vectors{probe})"
    encoder = ", ".join(f"{k}={v}" for k, v in sorted(status.encoder.items()))
    chunker = status.chunker
    rows = [
        ("collection", f"{status.folder} (paths relative to {status.root})"),
        ("files", str(status.files)),
        ("chunks", f"{status.chunks} ({status.embedded} embedded, {status.pending} pending)"),
        ("skipped", skipped or "none"),
        ("model", status.model_id or "none yet"),
        ("fingerprint", status.fingerprint or "none yet"),
        ("encoder", encoder or "none yet"),
        (
            "chunker",
            f"{chunker.get('max_tokens')} tokens, overlap {chunker.get('overlap_tokens')}"
            if chunker
            else "none yet",
        ),
        ("sources", ", ".join(status.sources) or "none"),
        ("filters", _filters(status.filters)),
        ("on disk", f"database {_size(sizes['database'])}, vectors {vectors}"),
        ("space", _space(status.space)),
        ("last run", _run_text(status.last_run)),
    ]
    if status.last_change != status.last_run:  # the latest run found nothing to do
        rows.append(("last change", _run_text(status.last_change)))
    if status.problems is not None:
        rows.append(("problems", "; ".join(status.problems) or "none"))
    if status.unchecked:
        rows.append(("not checked", "; ".join(status.unchecked)))
    return rows


def _space(space: dict[str, Any] | None) -> str:
    if not space:
        return "none yet (fitted by the next `tpsearch index`)"
    if not space["current"]:
        return "stale (of other vectors; refitted by the next `tpsearch index`)"
    text = f"{space['kind']} on the mean of {space['fitted_on']} vectors"
    added = space.get("added_since_fit") or 0
    return text + (f", {added} added since" if added else "")


def _run_text(run: dict[str, Any] | None) -> str:
    if not run:
        return "never"
    line = (run.get("summary") or {}).get("line", "")
    return f"{run['started_at']} {run['status']}" + (f": {line}" if line else "")


def size_flag(count: int) -> str:
    """Bytes as --max-file-size takes them: 1M, 500k, 1.5G; bytes when no unit fits."""
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("k", 1024)):
        if count >= factor and (count * 10) % factor == 0:  # exact to one decimal
            return f"{count / factor:g}{unit}"
    return str(count)


def _filters(scan: dict[str, Any]) -> str:
    """The remembered --include/--exclude/--max-file-size, as a user would give them."""
    parts = [f"--include {p!r}" for p in scan.get("include", [])]
    parts += [f"--exclude {p!r}" for p in scan.get("exclude", [])]
    if "max_file_bytes" in scan:
        parts.append(f"--max-file-size {size_flag(scan['max_file_bytes'])}")
    return " ".join(parts) or "none"


def render_status(
    console: Console, status: CollectionStatus, server: dict[str, Any] | None = None
) -> None:
    for name, value in [*status_rows(status), ("server", server_line(server))]:
        line = Text(f"{name:<12} ", style="bold")
        line.append(value, style="")
        console.print(line, highlight=False)


def server_line(server: dict[str, Any] | None) -> str:
    """Whether a warm server answers queries for this collection (`tpsearch serve`)."""
    if server is None:
        return "none: queries load the model in-process (`tpsearch serve` keeps it warm)"
    model = "model loaded" if server.get("encoder_loaded") else "model not loaded yet"
    return (
        f"tpsearch serve, pid {server.get('pid')}, version {server.get('version')}, {model}, "
        f"{server.get('calls', 0)} queries answered; `tpsearch serve --stop` stops it"
    )


def render_notice(console: Console, message: str) -> None:
    console.print(Text(f"tpsearch: {message}", style="yellow"), soft_wrap=True, highlight=False)


def status_json(status: CollectionStatus, server: dict[str, Any] | None = None) -> str:
    data = {**status.to_dict(), "server": server}
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)
