"""The one status line of `tpsearch watch`: a Rich spinner on a terminal, plain lines otherwise.

On a terminal the line is redrawn in place for every change of phase. When stderr is a file
or a pipe (a service, a test), a line is written each time the watch settles ("watching ...",
"waiting ...", "stopped ..."), so a log shows every batch without the in-between states.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from rich.status import Status

    from tpsearch.collection.watching import WatchState


class WatchLine:
    """`with WatchLine(console) as line:` then `line.show(state)` for each state."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None
        self._last = ""

    def show(self, state: WatchState) -> None:
        text = self._last = state.line()
        if self._status is not None:
            self._status.update(Text(text))
        elif state.phase != "indexing":
            self.console.print(Text(text), soft_wrap=True, highlight=False)

    def __enter__(self) -> WatchLine:
        if self.console.is_terminal:
            self._status = self.console.status(Text("starting"), spinner="dots")
            self._status.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()  # the spinner line goes; its last words stay
            self._status = None
            if self._last:
                self.console.print(Text(self._last), soft_wrap=True, highlight=False)
