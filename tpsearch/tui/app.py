"""`tpsearch query -i`: a search screen that answers as you type (Textual).

Keywords (BM25) answer at once on every keystroke, from this thread's connection; when typing
pauses, the hybrid or semantic query runs in one worker thread that owns its own connection
and keeps the model loaded, so typing never waits for the model. Results arriving for an older
query are dropped. The preview shows the highlighted passage in its file, its own lines marked.
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.markup import escape
from rich.text import Text
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from tpsearch.collection.passages import passage, similar
from tpsearch.collection.search import MODES, Hit, Mode, QueryResult, query_terms
from tpsearch.collection.visible import visible
from tpsearch.errors import TpsearchError
from tpsearch.tui.preview import hit_row, passage_text

if TYPE_CHECKING:
    from tpsearch.collection import Collection, EncoderFactory

PAUSE_SECONDS = 0.35  # typing paused this long: the semantic query runs
NO_VECTORS = (
    "lexical only: no chunk has a vector yet (`tpsearch index` with a model that loads adds them)"
)


def editor_command(environ: Mapping[str, str]) -> list[str] | None:
    """The user's editor ($VISUAL, else $EDITOR) as an argument list; None when unset."""
    value = environ.get("VISUAL") or environ.get("EDITOR")
    return shlex.split(value) if value and value.strip() else None


class _ModelThread:
    """One thread that owns a second connection to the collection, and the loaded model."""

    def __init__(
        self, folder: Path, overrides: dict[str, Any], factory: EncoderFactory | None
    ) -> None:
        self.folder, self.overrides, self.factory = folder, overrides, factory
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tpsearch-model")
        self._col: Collection | None = None

    def _collection(self) -> Collection:
        from tpsearch.collection import Collection

        if self._col is None:
            self._col = Collection.open(self.folder)
        return self._col

    def query(self, text: str, mode: str, path: str | None, k: int) -> QueryResult:
        return self._collection().query(
            text, k=k, mode=mode, path=path, overrides=self.overrides, encoder_factory=self.factory
        )

    def close(self) -> None:
        def close() -> None:
            if self._col is not None:
                self._col.close()

        self.pool.submit(close)
        self.pool.shutdown(wait=False)


class SearchApp(App[None]):
    """The search screen over an open collection (opened in this thread)."""

    TITLE = "tpsearch"
    CSS = """
    #inputs { height: 3; }
    #query { width: 2fr; }
    #path { width: 1fr; }
    #status { height: 1; padding: 0 1; color: $text-muted; }
    #results { height: 1fr; min-height: 3; border: none; }
    #preview-box { height: 1fr; border-top: solid $primary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t", "cycle_mode", "Mode", priority=True),
        Binding("ctrl+f", "narrow", "Path", priority=True),
        Binding("ctrl+o", "open", "Open", priority=True),
        Binding("ctrl+y", "copy", "Copy", priority=True),
        Binding("ctrl+s", "similar", "Similar", priority=True),
        Binding("down", "move(1)", "Next", show=False, priority=True),
        Binding("up", "move(-1)", "Previous", show=False, priority=True),
        Binding("escape", "to_query", "Back", show=False),
    ]

    def __init__(
        self,
        collection: Collection,
        *,
        text: str = "",
        mode: str = "hybrid",
        path: str | None = None,
        k: int = 20,
        editor: list[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        encoder_factory: EncoderFactory | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            from tpsearch.errors import choice_error

            raise choice_error("mode", mode, MODES)
        self.col = collection
        self.mode = cast(Mode, mode)
        self.k = k
        self.editor = editor
        self.result: QueryResult | None = None  # what the list shows
        self.hits: list[Hit] = []
        self.opened: list[str] = []  # editor commands run, for the user's record (and tests)
        self._first_text, self._first_path = text, path or ""
        self._model = _ModelThread(collection.folder, dict(overrides or {}), encoder_factory)
        self._generation = 0
        self._timer: Timer | None = None
        self._note = ""

    def compose(self) -> ComposeResult:
        with Horizontal(id="inputs"):
            yield Input(self._first_text, placeholder="search…", id="query")
            yield Input(self._first_path, placeholder="narrow by path: docs/*.md", id="path")
        yield Static("", id="status")
        yield OptionList(id="results")
        with VerticalScroll(id="preview-box"):
            yield Static("", id="preview")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#query", Input).focus()
        self._search()

    def on_unmount(self) -> None:
        self._model.close()

    # --- searching ---------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        self._search()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.hits:  # Enter in a box: to the results (Enter there opens one)
            self.query_one("#results", OptionList).focus()

    def _vectors(self) -> bool:
        with self.col.store.snapshot():
            return self.col.store.has_vectors()

    def _search(self) -> None:
        """Keywords now; the chosen mode when typing pauses (if there are vectors)."""
        self._generation += 1
        if self._timer is not None:
            self._timer.stop()
        text = self.query_one("#query", Input).value
        path = self.query_one("#path", Input).value.strip() or None
        if not query_terms(text):
            self._show(None, "type to search")
            return
        try:
            quick = self.col.query(text, k=self.k, mode="lexical", path=path)
        except TpsearchError as error:
            self._show(None, str(error))
            return
        if self.mode == "lexical" or not self._vectors():
            self._show(quick, "" if self.mode == "lexical" else NO_VECTORS)
            return
        self._show(quick, f"keywords; {self.mode} when you pause")
        generation = self._generation
        self._timer = self.set_timer(
            PAUSE_SECONDS,
            lambda: self.run_worker(
                self._deep(generation, text, path),
                group="model",
                exclusive=True,
                exit_on_error=False,
            ),
        )

    async def _deep(self, generation: int, text: str, path: str | None) -> None:
        loop = asyncio.get_running_loop()
        if self.result is None or self.result.used == "lexical":
            self._status("loading the model…" if not self._note else self._note)
        try:
            result = await loop.run_in_executor(
                self._model.pool, self._model.query, text, self.mode, path, self.k
            )
        except TpsearchError as error:
            if generation == self._generation:
                self._status(str(error))
            return
        if generation == self._generation:
            self._show(result, "")

    def _show(self, result: QueryResult | None, note: str) -> None:
        self.result = result
        self.hits = result.hits if result is not None else []
        results = self.query_one("#results", OptionList)
        results.clear_options()
        results.add_options([Option(hit_row(hit)) for hit in self.hits])
        if self.hits:
            results.highlighted = 0
        else:
            self.query_one("#preview", Static).update("")
        notes = [note] if note else []
        notes += result.notices if result is not None else []
        self._status(" · ".join(notes))

    def _status(self, note: str) -> None:
        self._note = note
        shown = self.result.used if self.result is not None else self.mode
        count = f"{len(self.hits)} results" if self.result is not None else ""
        parts = [f"mode {self.mode}" + (f" (showing {shown})" if shown != self.mode else "")]
        parts += [count] if count else []
        parts += [note] if note else []
        self.query_one("#status", Static).update(Text(" · ".join(parts)))  # literal, no markup

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        hit = self._current()
        preview = self.query_one("#preview", Static)
        found = passage(self.col, hit.chunk_id) if hit is not None else None
        if found is None:
            preview.update("")
            return
        terms = query_terms(self.query_one("#query", Input).value)
        preview.update(passage_text(found, terms))
        self.query_one("#preview-box", VerticalScroll).scroll_home(animate=False)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_open()

    def _current(self) -> Hit | None:
        index = self.query_one("#results", OptionList).highlighted
        return self.hits[index] if index is not None and index < len(self.hits) else None

    # --- keys --------------------------------------------------------------------------------

    def action_cycle_mode(self) -> None:
        self.mode = cast(Mode, MODES[(MODES.index(self.mode) + 1) % len(MODES)])
        self._search()

    def action_narrow(self) -> None:
        self.query_one("#path", Input).focus()

    def action_to_query(self) -> None:
        self.query_one("#query", Input).focus()
        self._search()

    def action_move(self, step: int) -> None:
        results = self.query_one("#results", OptionList)
        if self.hits:
            now = results.highlighted if results.highlighted is not None else -step
            results.highlighted = max(0, min(len(self.hits) - 1, now + step))

    def action_open(self) -> None:
        hit = self._current()
        if hit is None:
            return
        if not self.editor:
            self.notify("set $EDITOR (or $VISUAL) to open files", severity="warning")
            return
        command = [*self.editor, f"+{hit.start_line}", str(self.col.root / hit.path)]
        self.opened.append(shlex.join(command))
        try:
            with self.suspend():
                subprocess.run(command, check=False)
        except SuspendNotSupported:  # no terminal to hand over (a test, a web console)
            subprocess.run(command, check=False, stdin=subprocess.DEVNULL)
        except OSError as error:
            self.notify(escape(f"cannot run {command[0]}: {error.strerror}"), severity="error")

    def action_copy(self) -> None:
        hit = self._current()
        if hit is not None:
            where = f"{hit.path}:{hit.start_line}"
            self.copy_to_clipboard(where)
            self.notify(escape(f"copied {visible(where)}"))  # a file name is not markup

    def action_similar(self) -> None:
        hit = self._current()
        if hit is None:
            return
        self._generation += 1  # a semantic answer on its way is no longer wanted
        result = similar(self.col, hit.chunk_id, self.k)
        self._show(result, f"passages {result.text} (Esc: back)")
