"""`tpsearch index` progress on stderr: a bar per phase, with a rate and a time left early on.

Rich estimates speed from updates of the last 30 s, and shows nothing until two of them: on a
slow machine, where one batch takes seconds, the bar said `-:--:--` for minutes. Here the rate
is the texts done over the time since the phase started (the embed phase starts once the model
has loaded), so it shows from the first batch and steadies as the run goes on; the time left
follows from it. While the model loads, the load line says what it is doing (reading,
checking, converting a GGUF once).
"""

from __future__ import annotations

from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from tpsearch.collection.indexing import Phase

PHASE_LABELS = {  # description, unit of the rate column
    "scan": ("Reading changed files", "files"),
    "load": ("Loading the model", ""),
    "embed": ("Embedding", "chunks"),
    "vectors": ("Saving the vector index", ""),
}


def mean_rate(task: Task) -> float | None:
    """Items per second since the task started; None before the first item is done."""
    if task.finished_speed:
        return task.finished_speed
    elapsed = task.elapsed
    if not task.completed or not elapsed:
        return None
    return task.completed / elapsed


class _Count(ProgressColumn):
    """`64/92` for phases that count something; nothing for a step such as loading."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("unit"):
            return Text("")
        total = "?" if task.total is None else f"{task.total:.0f}"
        return Text(f"{task.completed:.0f}/{total}", style="progress.download")


class _Rate(ProgressColumn):
    """Items per second, in the task's own unit."""

    def render(self, task: Task) -> Text:
        speed = mean_rate(task)
        unit = task.fields.get("unit", "")
        return Text(f"{speed:,.1f} {unit}/s" if speed and unit else "", style="cyan")


class _TimeLeft(ProgressColumn):
    """`eta 1:02:03` from the mean rate, once the total is known and a first item is done."""

    def render(self, task: Task) -> Text:
        speed = mean_rate(task)
        if task.finished or not speed or task.total is None or not task.fields.get("unit"):
            return Text("")
        left = max(0.0, (task.total - task.completed) / speed)
        return Text(f"eta {timedelta(seconds=round(left))}", style="cyan")


class RichProgress:
    """The library's progress protocol drawn as Rich bars on stderr."""

    def __init__(self, console: Console) -> None:
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),  # names from files
            BarColumn(),
            _Count(),
            _Rate(),
            TimeElapsedColumn(),
            _TimeLeft(),
            console=console,
            transient=True,
            refresh_per_second=4,
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

    def note(self, phase: Phase, message: str) -> None:
        """A step of a phase: it becomes the phase's line, and stays above the bars."""
        if phase in self.tasks:
            self.bars.update(self.tasks[phase], description=message[:1].upper() + message[1:])
        self.bars.console.print(
            Text(f"tpsearch: {message}", style="dim"), highlight=False, soft_wrap=True
        )

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
