"""`tpsearch index`, `query` and `status` as a user runs them: output, exit codes, files."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.corpus import failing_to_load, write_corpus
from tpsearch.cli import app
from tpsearch.cli.render.collection import render_hits
from tpsearch.collection import Collection
from tpsearch.collection.search import Hit, QueryResult

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


def test_index_then_query(project: Path) -> None:
    indexed = run("index", "docs")
    assert indexed.exit_code == 0, indexed.output
    assert indexed.stderr == ""  # no progress bars when stderr is not a terminal
    assert (
        indexed.stdout.strip()
        .splitlines()[-1]
        .startswith("3 new, 0 updated, 0 unchanged, 0 removed, 2 skipped")
    )
    assert (project / ".tpsearch" / "tpsearch.db").is_file()
    found = run("query", "firewall port")
    assert found.exit_code == 0, found.output
    first = found.stdout.splitlines()[0]
    assert "docs/guide.md:1-" in first and "Installation guide" in first
    assert "\x1b" not in found.stdout  # plain text when not a terminal
    again = run("index")
    assert again.stdout.strip().startswith("0 new, 0 updated, 3 unchanged")


def test_exit_codes_follow_grep(project: Path) -> None:
    assert run("query", "anything").exit_code == 2  # no collection yet
    run("index", "docs")
    assert run("query", "firewall").exit_code == 0
    assert run("query", "zzzyzzy", "--mode", "lexical").exit_code == 1
    bad = run("query", "firewall", "--mode", "fuzzy")
    assert bad.exit_code == 2 and "'hybrid', 'semantic', 'lexical'" in bad.stderr


def test_without_a_collection_the_user_is_told_what_to_do(project: Path) -> None:
    result = run("status")
    assert result.exit_code == 2
    assert "no collection" in result.stderr and "tpsearch index PATH" in result.stderr


def test_json_and_jsonl(project: Path) -> None:
    run("index", "docs")
    records = json.loads(run("query", "billing rust", "--json", "-k", "2").stdout)
    assert len(records) == 2 and records[0]["path"] == "docs/notes.txt"
    fields = {"path", "start_line", "end_line", "score", "snippet", "chunk_id", "heading", "title"}
    assert set(records[0]) == fields
    lines = run("query", "billing rust", "--jsonl", "-k", "2").stdout.strip().splitlines()
    assert [json.loads(line) for line in lines] == records
    none = run("query", "zzzyzzy", "--mode", "lexical", "--json")
    assert none.exit_code == 1 and json.loads(none.stdout) == []


def test_files_lists_paths_once_relative_to_the_current_folder(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("index", "docs")
    monkeypatch.chdir(project / "docs")  # the collection is found above
    result = run("query", "server port items", "--files")
    paths = result.stdout.split()
    assert len(paths) == len(set(paths)) > 1 and "api.md" in paths


def test_verbose_lists_each_skip_with_its_reason(project: Path) -> None:
    output = run("index", "docs", "--verbose").stdout
    assert "skipped  binary       docs/logo.png" in output
    assert "skipped  hidden       docs/.draft.md" in output


def test_index_location_from_option_and_environment(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "idx"
    assert run("index", "docs", "--index", str(elsewhere)).exit_code == 0
    assert not (project / ".tpsearch").exists() and (elsewhere / "tpsearch.db").is_file()
    status = run("status", env={"TPSEARCH_INDEX": str(elsewhere)})
    assert status.exit_code == 0 and "files        3" in status.stdout


def test_status_text_and_json(project: Path) -> None:
    run("index", "docs")
    text = run("status").stdout
    assert "model        test/hashing" in text and "problems" not in text
    assert "problems     none" in run("status", "--check").stdout
    data = json.loads(run("status", "--json").stdout)
    assert (data["files"], data["pending"], data["skipped"]) == (3, 0, {"binary": 1, "hidden": 1})


def test_a_model_that_cannot_load(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tpsearch.collection.facade.default_encoder_factory", failing_to_load)
    indexed = run("index", "docs")
    assert indexed.exit_code == 2
    assert "offline and not in the cache" in indexed.stderr
    assert "keywords only" in indexed.stderr
    found = run("query", "firewall")
    assert found.exit_code == 0 and "docs/guide.md" in found.stdout
    assert "keyword" in found.stderr


def test_a_flag_that_changes_vectors_asks_for_reembed(project: Path) -> None:
    run("index", "docs")
    refused = run("index", "--pooling", "mean")
    assert refused.exit_code == 2 and "--reembed" in refused.stderr
    accepted = run("index", "--pooling", "mean", "--reembed")
    assert accepted.exit_code == 0 and "3 updated" in accepted.stdout


def test_terminal_output_has_colours_links_and_honours_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hit = Hit(1, 0.5, 7, "docs/a.md", 3, 9, "Intro", "the deploy step", ((4, 10),))
    result = QueryResult("deploy", "hybrid", "hybrid", [hit], [])

    def draw() -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=True, color_system="truecolor")
        render_hits(console, result, Path("/root"), Path("/root"), files=False)
        return buffer.getvalue()

    coloured = draw()
    assert "\x1b]8;" in coloured and "file:///root/docs/a.md" in coloured  # hyperlink
    assert "\x1b[1;33m" in coloured  # the query term, bold yellow
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[1;33m" not in draw()


def test_a_real_process_indexes_without_a_model_and_answers_lexically(tmp_path: Path) -> None:
    """No fakes: the real CLI, a model path that does not exist, exit codes from the shell."""
    write_corpus(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("TPSEARCH_INDEX", None)

    def tpsearch(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tpsearch", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    indexed = tpsearch("index", "docs", "--model", str(tmp_path / "no-such-model"))
    assert indexed.returncode == 2 and "keywords only" in indexed.stderr
    found = tpsearch("query", "firewall", "--json")
    assert found.returncode == 0 and json.loads(found.stdout)[0]["path"] == "docs/guide.md"
    assert tpsearch("query", "zzzyzzy", "--mode", "lexical").returncode == 1

    # `tpsearch query ... | head`: the reader goes away before the results are written.
    command = [sys.executable, "-m", "tpsearch", "query", "firewall", "--jsonl"]
    piped = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert piped.stdout is not None and piped.stderr is not None
    piped.stdout.close()
    assert piped.wait(timeout=60) == 141  # as grep killed by SIGPIPE, not 1 ("no results")
    said = piped.stderr.read().decode()
    assert "Traceback" not in said and "bug" not in said and "results only" in said


def test_a_mistyped_path_is_refused_before_a_collection_is_created(project: Path) -> None:
    result = run("index", "dcos", "--reembed")
    assert result.exit_code == 2 and "no such file or folder" in result.stderr
    assert not (project / ".tpsearch").exists()
    for bad in (["--batch-size", "0"], ["--max-file-size", "lots"]):
        assert run("index", "docs", *bad).exit_code == 2
        assert not (project / ".tpsearch").exists()


def test_filters_are_shown_remembered_and_reset(project: Path) -> None:
    assert run("index", "docs", "--include", "*.md").stdout.startswith("2 new")
    assert "filters      --include '*.md'" in run("status").stdout
    assert run("index").stdout.startswith("0 new, 0 updated, 2 unchanged, 0 removed")
    reset = run("index", "--reset-filters")
    assert reset.exit_code == 0 and reset.stdout.startswith("1 new, 0 updated, 2 unchanged")
    assert "filters      --max-file-size 1M" in run("status").stdout
    empty = run("index", "--include", "")
    assert empty.exit_code == 2 and "empty --include pattern" in empty.stderr
    assert (
        "relative to the collection root" in run("index", "--help", env={"COLUMNS": "400"}).stdout
    )


def test_a_missing_folder_is_kept_until_forgotten(project: Path) -> None:
    run("index", "docs")
    (project / "docs").rename(project / "away")
    kept = run("index")
    assert kept.exit_code == 0 and "docs is missing" in kept.stderr
    assert run("query", "firewall").exit_code == 0
    forgotten = run("index", "--forget", "docs")
    assert forgotten.exit_code == 0 and "3 removed" in forgotten.stdout
    assert run("query", "firewall", "--mode", "lexical").exit_code == 1


def test_status_check_exits_1_when_it_finds_problems(project: Path) -> None:
    run("index", "docs")
    assert run("status", "--check").exit_code == 0
    damage = sqlite3.connect(project / ".tpsearch" / "tpsearch.db")  # foreign keys off
    damage.execute("INSERT INTO vectors (chunk_id, vector) VALUES (999, x'00000000')")
    damage.commit()
    damage.close()
    checked = run("status", "--check")
    assert checked.exit_code == 1 and "1 vectors belong to no chunk" in checked.stdout
    assert run("status").exit_code == 0  # without --check nothing is verified


def test_ctrl_c_exits_130_with_one_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("index", "docs")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Collection, "query", interrupted)
    result = run("query", "firewall")
    assert result.exit_code == 130 and result.stderr.strip() == "tpsearch: interrupted"
    monkeypatch.setattr(Collection, "index", interrupted)
    result = run("index")
    assert result.exit_code == 130 and "the work committed so far is kept" in result.stderr


def test_an_unexpected_error_keeps_its_traceback_and_exits_2(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never 1: for `query` that means "no results", and a script would believe it."""
    run("index", "docs")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Collection, "query", broken)
    result = run("query", "firewall")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "RuntimeError: a bug" in result.stderr
    assert "tpsearch: unexpected error" in result.stderr.splitlines()[-1]


def test_when_the_model_cannot_load_skips_and_notices_come_before_the_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tpsearch.collection.facade.default_encoder_factory", failing_to_load)
    (project / "extra").mkdir()
    (project / "extra" / "x.md").write_text("# Extra\n\nSome extra text.\n")
    assert run("index", "docs", "extra").exit_code == 2
    (project / "extra" / "x.md").unlink()
    (project / "extra").rmdir()
    result = run("index", "--verbose")
    assert result.exit_code == 2
    assert "skipped  binary       docs/logo.png" in result.stdout
    lines = result.stderr.splitlines()
    notice = next(i for i, line in enumerate(lines) if "extra is missing" in line)
    error = next(i for i, line in enumerate(lines) if "offline and not in the cache" in line)
    assert notice < error
