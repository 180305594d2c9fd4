"""What a user reads: help that tells the truth, status in the user's units, two-line errors,
readable snippets, and progress that shows a rate on a slow machine."""

from __future__ import annotations

import io
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.corpus import using
from tests.fakes import HashingEncoder
from tpsearch.cli import app

WIDE = {"COLUMNS": "200"}
REPO = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


@pytest.mark.parametrize("command", ["index", "query", "status", "cluster", "dedupe", "embed"])
def test_help_shows_no_python_type_markers(command: str) -> None:
    shown = run(*command.split(), "--help", env=WIDE).stdout
    assert shown.count("--") > 3  # the options are there
    assert not re.search(r"<(bool|str|int|float|path|list\[\w+\])>", shown, re.I), shown


def test_help_shows_a_plain_word_for_options_that_take_a_value() -> None:
    lines = run("index", "--help", env=WIDE).stdout.splitlines()
    batch = next(line for line in lines if "--batch-size" in line)
    reembed = next(line for line in lines if "--reembed" in line)
    assert "INTEGER" in batch and "[default: 32]" in batch
    assert re.search(r"--reembed\s+Drop every vector", reembed)  # a flag: no type at all


def test_cluster_level_speaks_of_topics_not_of_repeated_passages() -> None:
    cluster = run("cluster", "--help", env=WIDE).stdout
    line = next(line for line in cluster.splitlines() if "--level" in line)
    assert "topics" in line and "repeated passages" not in line
    dedupe = run("dedupe", "--help", env=WIDE).stdout
    assert "repeated passages" in dedupe


def test_index_help_shows_the_model_and_layer_defaults_it_will_use() -> None:
    shown = " ".join(run("index", "--help", env=WIDE).stdout.split())
    shown = re.sub(r" ?│ ?", " ", shown)
    shown = " ".join(shown.split())
    assert "Default: smollm2-135m" in shown
    assert "smollm2-135m: plain prompt, exit 28" in shown
    assert "gemma3-270m: plain prompt, exit 18" in shown
    assert "else the plain prompt at exit -2" in shown


def test_status_shows_the_size_limit_as_the_flag_takes_it(project: Path) -> None:
    run("index", "docs", "--max-file-size", "500k")
    assert "filters      --max-file-size 500k" in run("status").stdout
    run("index", "--max-file-size", "1.5M")
    assert "--max-file-size 1.5M" in run("status").stdout
    run("index", "--max-file-size", "1000")
    assert "--max-file-size 1000" in run("status").stdout


def test_status_shows_the_last_run_that_changed_something(project: Path) -> None:
    run("index", "docs")
    first = run("status").stdout
    assert "last run     " in first and "3 new" in first and "last change" not in first
    run("index")  # nothing to do
    rows = dict(
        (line[:12].strip(), line[12:].strip()) for line in run("status").stdout.splitlines()
    )
    assert "completed: 0 new, 0 updated, 3 unchanged" in rows["last run"]
    assert "3 new" in rows["last change"] and "chunks embedded" in rows["last change"]


def test_a_model_that_is_not_there_is_two_short_lines(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tpsearch.engine.packaged import PACKAGED_MODELS, part_files

    missing = PACKAGED_MODELS[0].__class__(
        **{**PACKAGED_MODELS[0].__dict__, "parts": (("no-such-dist-tpsearch", "x.gguf"),)}
    )

    def not_installed(settings: object) -> object:
        part_files(missing)
        raise AssertionError("unreachable")

    monkeypatch.setattr("tpsearch.collection.facade.default_encoder_factory", not_installed)
    result = run("index", "docs")
    assert result.exit_code == 2
    problem, fix = result.stderr.strip().splitlines()[-2:]
    assert problem.startswith("tpsearch: the packaged model smollm2-135m is not installed")
    assert "keywords only" in problem and len(problem) < 130
    assert fix.startswith("  `pip install") and fix.endswith("then run `tpsearch index` again")


# --- on a terminal: progress while indexing, a loading line while a query loads the model ---

DRIVER = Path(__file__).with_name("slow_driver.py")
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def on_a_terminal(
    cwd: Path, driver: list[str], until: re.Pattern[str], seconds: float
) -> tuple[str, float | None]:
    """Run the CLI with stderr on a pseudo-terminal; what it drew there (escapes removed) and
    how many seconds after the start `until` first showed (None: not within `seconds`)."""
    master, slave = os.openpty()
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "COLUMNS": "120",
        "PYTHONPATH": str(REPO),
        "TPSEARCH_INDEX": "",
    }
    env.pop("TPSEARCH_INDEX")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(DRIVER), *driver],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    drawn, seen = "", None
    try:
        while time.monotonic() - started < seconds:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    drawn += ESCAPES.sub("", os.read(master, 65536).decode(errors="replace"))
                except OSError:  # the process ended and closed the terminal
                    break
                if until.search(drawn):
                    seen = time.monotonic() - started
                    break
            elif process.poll() is not None:
                break
    finally:
        process.kill()
        process.wait()
        os.close(master)
    return drawn, seen


def test_a_slow_machine_sees_a_rate_and_time_left_within_seconds(tmp_path: Path) -> None:
    """2 s a batch of 2 chunks, 16 chunks per group: progress per group would first move after
    16 s; per batch, a rate and a time left show within the first 10 s."""
    for n in range(40):
        write = tmp_path / "notes" / f"note{n:02}.md"
        write.parent.mkdir(exist_ok=True)
        write.write_text(f"# Note {n}\n\nA paragraph about topic number {n} and its details.\n")
    rate = re.compile(r"Embedding.*\d+/40\s+\d+\.\d chunks/s.*eta 0:\d\d:\d\d")
    drawn, seen = on_a_terminal(
        tmp_path, ["2", "0.5", "index", "notes", "--batch-size", "2"], rate, 10
    )
    assert seen is not None, drawn[-2000:]
    assert "converting the test model (once)" in drawn  # the load phase said what it did


def test_a_semantic_query_on_a_terminal_says_it_is_loading_the_model(project: Path) -> None:
    run("index", "docs")
    loading = re.compile(r"loading model smollm2-135m\.\.\.|converting the test model")
    drawn, seen = on_a_terminal(
        project, ["0", "1.5", "query", "firewall", "--mode", "semantic"], loading, 30
    )
    assert seen is not None, drawn
    piped = run("query", "firewall", "--mode", "semantic")  # stderr not a terminal: silent
    assert piped.exit_code == 0 and "loading" not in piped.stderr


# --- results people can read ------------------------------------------------------------------

PEP = """PEP: 557
Title: Data Classes
Author: Eric V. Smith

Abstract
========

This PEP describes an addition to the standard library called Data Classes. Although they
use a very different mechanism, Data Classes can be thought of as mutable namedtuples with
defaults, declared with a decorator.
"""

GUIDE = """# Deployment guide

Use the deploy command to ship the service; it makes the image first, then rolls it out to
every replica one at a time so that the service keeps answering requests while it deploys.

```python
def deploy(service):
    build(service)
    roll_out(service)
```
"""


@pytest.fixture
def readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "peps").mkdir()
    (tmp_path / "peps" / "pep-0557.rst").write_text(PEP)
    (tmp_path / "peps" / "guide.md").write_text(GUIDE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TPSEARCH_INDEX", raising=False)
    monkeypatch.setattr(
        "tpsearch.collection.facade.default_encoder_factory", using(HashingEncoder())
    )
    assert run("index", "peps").exit_code == 0
    return tmp_path


def test_snippets_wrap_under_a_hanging_indent_and_drop_underlines(readable: Path) -> None:
    shown = run("query", "mutable namedtuples", "--mode", "lexical", env={"COLUMNS": "60"})
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(" 1  ") and "peps/pep-0557.rst:" in lines[0]
    snippet = lines[1:]
    assert len(snippet) >= 3  # one paragraph, wrapped by width, not one long line
    assert all(line.startswith("    ") and len(line) <= 60 for line in snippet), lines
    assert all(line == line.rstrip() for line in snippet)  # no padding to the width
    words = " ".join(" ".join(snippet).split())
    assert "mutable namedtuples with defaults" in words  # words are whole, none cut
    assert "====" not in shown.stdout


def test_code_in_a_snippet_keeps_its_line_breaks(readable: Path) -> None:
    shown = run("query", "deploy roll_out", "--mode", "lexical", env={"COLUMNS": "100"})
    lines = shown.stdout.splitlines()
    assert "    def deploy(service):" in lines
    assert "        build(service)" in lines and "        roll_out(service)" in lines
    assert "```" not in shown.stdout


def test_the_document_title_is_shown_beside_the_path(readable: Path) -> None:
    shown = run("query", "mutable namedtuples", "--mode", "lexical", env=WIDE).stdout
    head = shown.splitlines()[0]
    assert re.search(r"peps/pep-0557\.rst:\d+-\d+  Data Classes$", head), head  # Title:
    guide = run("query", "replica", "--mode", "lexical", env=WIDE).stdout.splitlines()[0]
    assert guide.endswith("  Deployment guide"), guide  # a first heading is the title
    record = json.loads(run("query", "replica", "--json").stdout)[0]
    assert record["title"] == "Deployment guide"


def test_context_shows_the_best_line_and_n_lines_around_it(readable: Path) -> None:
    shown = run("query", "build", "--mode", "lexical", "--context", "1", env=WIDE).stdout
    assert shown.splitlines()[1:] == [
        "    def deploy(service):",
        "        build(service)",
        "        roll_out(service)",
    ]
    zero = run("query", "build", "--mode", "lexical", "-C", "0", env=WIDE).stdout
    assert zero.splitlines()[1:] == ["        build(service)"]
    refused = run("query", "build", "--context", "-1")
    assert refused.exit_code == 2 and "--context" in refused.stderr


def test_files_gives_k_distinct_files_when_that_many_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two long files fill every candidate slot; the third, short one still comes back."""
    long_text = "\n\n".join(f"## Part {n}\n\nThe kettle boils water, part {n}." for n in range(80))
    (tmp_path / "a.md").write_text("# A\n\n" + long_text)
    (tmp_path / "b.md").write_text("# B\n\n" + long_text.replace("kettle", "pot kettle"))
    (tmp_path / "c.md").write_text("# C\n\nAn old kettle.\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TPSEARCH_INDEX", raising=False)
    monkeypatch.setattr(
        "tpsearch.collection.facade.default_encoder_factory", using(HashingEncoder())
    )
    assert run("index", ".").exit_code == 0
    for mode in ("hybrid", "semantic", "lexical"):
        shown = run("query", "kettle boils water", "--files", "-k", "3", "--mode", mode)
        assert sorted(shown.stdout.split()) == ["a.md", "b.md", "c.md"], (mode, shown.stdout)


def test_the_summary_line_gives_the_time_and_the_rate(project: Path) -> None:
    last = run("index", "docs").stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"3 new, 0 updated, 0 unchanged, 0 removed, 2 skipped · \d+ chunks embedded "
        r"\([\d,]+\.\d chunks/s\) · \d+\.\d s",
        last,
    ), last
    again = run("index").stdout.strip()  # nothing embedded: no rate to give
    assert "chunks/s" not in again and again.endswith(" s")


def test_files_shows_titles_on_a_terminal_and_paths_only_in_a_pipe() -> None:
    from rich.console import Console

    from tpsearch.cli.render.collection import render_hits
    from tpsearch.collection.search import Hit, QueryResult

    hit = Hit(1, 0.5, 7, "peps/pep-0557.rst", 1, 9, "", "text", (), "Data Classes")
    result = QueryResult("x", "hybrid", "hybrid", [hit], [])

    def draw(terminal: bool) -> str:
        console = Console(
            file=io.StringIO(), width=80, record=True, force_terminal=terminal, color_system=None
        )
        render_hits(console, result, Path("/r"), Path("/r"), files=True)
        return console.export_text()

    assert draw(terminal=True).strip() == "peps/pep-0557.rst  Data Classes"
    assert draw(terminal=False).strip() == "peps/pep-0557.rst"
