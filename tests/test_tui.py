"""`tpsearch query -i` driven by Textual's own test harness: keys in, rows and preview out."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList, Static

from tests.corpus import failing_to_load, using, write_corpus
from tests.fakes import HashingEncoder
from tpsearch.collection import Collection
from tpsearch.tui import SearchApp, editor_command

ENCODER = HashingEncoder()


def collection(tmp_path: Path, vectors: bool = True) -> Collection:
    write_corpus(tmp_path)
    col = Collection.open(tmp_path / ".tpsearch", write=True)
    factory = using(ENCODER) if vectors else failing_to_load
    try:
        col.index([tmp_path / "docs"], encoder_factory=factory)
    except Exception:
        assert not vectors  # the model "cannot load": keywords only
    return col


def rows(app: SearchApp) -> list[str]:
    results = app.query_one("#results", OptionList)
    return [str(results.get_option_at_index(i).prompt) for i in range(results.option_count)]


def shown(app: SearchApp, widget: str) -> str:
    return str(app.query_one(widget, Static).render())


async def until(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 20) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the screen never showed it")


def drive(app: SearchApp, script: Callable[[Pilot[None]], Awaitable[None]]) -> None:
    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await script(pilot)

    asyncio.run(run())


def test_typing_shows_rows_and_the_passage_then_modes_open_and_similar(tmp_path: Path) -> None:
    record = tmp_path / "editor-args.txt"
    editor = tmp_path / "editor.sh"
    editor.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    col = collection(tmp_path)
    app = SearchApp(
        col,
        editor=editor_command({"EDITOR": str(editor)}),
        encoder_factory=using(ENCODER),
    )

    async def script(pilot: Pilot[None]) -> None:
        await pilot.press(*"firewall port")
        # keywords at once, then the hybrid answer when typing pauses (from the model thread)
        await until(pilot, lambda: app.result is not None and app.result.used == "hybrid")
        assert rows(app)[0].split()[1].startswith("docs/guide.md:")
        assert "Installation guide" in rows(app)[0]  # score, path:lines, heading
        preview = shown(app, "#preview")
        marked = [line for line in preview.splitlines() if "▌" in line]
        assert any("firewall" in line for line in marked)  # the passage's own lines, marked
        assert "mode hybrid" in shown(app, "#status")

        await pilot.press("ctrl+t")  # hybrid -> semantic
        await until(pilot, lambda: app.result is not None and app.result.used == "semantic")
        assert "mode semantic" in shown(app, "#status")
        await pilot.press("ctrl+t")  # -> lexical: answered at once
        assert app.result is not None and app.result.used == "lexical"
        assert "mode lexical" in shown(app, "#status")

        await pilot.press("ctrl+o")  # open the highlighted hit at its line
        start = app.hits[0].start_line
        assert record.read_text().split() == [f"+{start}", str(tmp_path / "docs" / "guide.md")]
        record.unlink()
        await pilot.press("down", "enter", "enter")  # to the results, the second one, open it
        second = app.hits[1]
        assert record.read_text().split() == [
            f"+{second.start_line}",
            str(tmp_path / second.path),
        ]

        await pilot.press("ctrl+s")  # passages like the highlighted one, itself left out
        here = f"{second.path}:{second.start_line}"
        assert f"passages like {here}" in shown(app, "#status")
        assert rows(app) and all(f"{here}-" not in r for r in rows(app))

        await pilot.press("escape")  # back to the query's results
        assert "docs/guide.md:" in rows(app)[0]
        await pilot.press("ctrl+f", *"api*")  # narrow by path
        await until(pilot, lambda: bool(rows(app)) and "docs/api.md" in rows(app)[0])
        assert all("docs/api.md" in r for r in rows(app))

    drive(app, script)
    col.close()


def test_without_vectors_it_searches_keywords_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    col = collection(tmp_path, vectors=False)
    app = SearchApp(col, text="pip install", encoder_factory=failing_to_load)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: bool(rows(app)))
        assert "lexical only" in shown(app, "#status")
        assert rows(app)[0].split()[1].startswith("docs/guide.md:1-")
        assert any("▌" in line for line in shown(app, "#preview").splitlines())
        await pilot.pause(0.6)  # no semantic query is started: nothing to wait for
        assert app.result is not None and app.result.used == "lexical"
        await pilot.press("ctrl+o")  # no editor set: a notice, no crash

    drive(app, script)
    col.close()


def test_query_needs_words_unless_interactive(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tpsearch.cli import app

    collection(tmp_path).close()
    result = CliRunner().invoke(app, ["query", "--index", str(tmp_path / ".tpsearch")])
    assert result.exit_code == 2 and "tpsearch query -i" in result.stderr


def test_the_editor_comes_from_visual_then_editor() -> None:
    assert editor_command({"EDITOR": "code --wait"}) == ["code", "--wait"]
    assert editor_command({"VISUAL": "nvim", "EDITOR": "vi"}) == ["nvim"]
    assert editor_command({"EDITOR": " "}) is None and editor_command(dict(os.environ)) != []


def test_text_from_settings_and_files_is_shown_literally_not_as_markup(tmp_path: Path) -> None:
    """A model name (stored with a shared collection) or a file name that looks like Textual
    markup is shown as it is: neither styles the screen nor crashes it ("[/b]" closes a tag
    that was never opened)."""
    from tpsearch.engine.settings import EncoderSettings
    from tpsearch.errors import ModelLoadError

    col = collection(tmp_path)

    def broken(settings: EncoderSettings) -> HashingEncoder:
        raise ModelLoadError("cannot load [/b]weights[b] from [red]here")

    app = SearchApp(col, text="pip install", encoder_factory=broken)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "[/b]weights[b] from [red]here" in shown(app, "#status"))
        assert rows(app)  # the keyword results stay

    drive(app, script)
    col.close()
