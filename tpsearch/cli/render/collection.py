"""How results look: Rich text for people, JSON for programs, progress bars on stderr.

Rich prints plain text when its output is not a terminal (piped, redirected) and honours
NO_COLOR, so the same code serves both; paths are terminal hyperlinks only on a terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.style import Style
from rich.text import Text

from tpsearch.collection.sources import where

if TYPE_CHECKING:
    from tpsearch.collection import CollectionStatus
    from tpsearch.collection.indexing import IndexSummary, Phase
    from tpsearch.collection.search import Hit, QueryResult


def _hit_lines(hit: Hit, shown: str, link: Path) -> tuple[Text, Text]:
    head = Text()
    head.append(f"{hit.rank:>2}  ", style="bold")
    head.append(f"{hit.score:.3f}  ", style="cyan")
    place = f"{shown}:{hit.start_line}-{hit.end_line}"
    head.append(place, style=Style(color="magenta", link=link.as_uri()))
    if hit.heading:
        head.append(f"  {hit.heading}", style="dim")
    snippet = Text("    " + hit.snippet)
    for start, end in hit.highlights:
        snippet.stylize("bold yellow", start + 4, end + 4)
    return head, snippet


def render_hits(console: Console, result: QueryResult, root: Path, cwd: Path, files: bool) -> None:
    for hit in result.hits:
        link, shown = where(root, hit.path, cwd)
        if files:
            console.print(Text(shown, style=Style(link=link.as_uri())), highlight=False)
            continue
        for line in _hit_lines(hit, shown, link):
            console.print(line, highlight=False)


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
    last = status.last_run
    last_text = "never"
    if last:
        line = (last.get("summary") or {}).get("line", "")
        last_text = f"{last['started_at']} {last['status']}" + (f": {line}" if line else "")
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
        ("last run", last_text),
    ]
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


def _filters(scan: dict[str, Any]) -> str:
    """The remembered --include/--exclude/--max-file-size, as a user would give them."""
    parts = [f"--include {p!r}" for p in scan.get("include", [])]
    parts += [f"--exclude {p!r}" for p in scan.get("exclude", [])]
    if "max_file_bytes" in scan:
        parts.append(f"--max-file-size {scan['max_file_bytes']}")
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


PHASE_LABELS = {  # description, unit of the rate column
    "scan": ("Reading changed files", "files"),
    "load": ("Loading the model", ""),
    "embed": ("Embedding", "chunks"),
    "vectors": ("Saving the vector index", ""),
}


class _Rate(ProgressColumn):
    """Items per second, in the task's own unit."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "")
        return Text(f"{speed:,.1f} {unit}/s" if speed and unit else "", style="cyan")


class RichProgress:
    """The library's progress protocol drawn as Rich bars on stderr."""

    def __init__(self, console: Console) -> None:
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}

    def start(self, phase: Phase, total: int | None) -> None:
        if phase in self.tasks:
            self.bars.update(self.tasks[phase], total=total)
            return
        label, unit = PHASE_LABELS[phase]
        self.tasks[phase] = self.bars.add_task(label, total=total, unit=unit)

    def advance(self, phase: Phase, amount: int = 1) -> None:
        self.bars.advance(self.tasks[phase], amount)

    def finish(self, phase: Phase) -> None:
        task = self.tasks.pop(phase, None)
        if task is not None:
            self.bars.remove_task(task)

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bars.stop()
