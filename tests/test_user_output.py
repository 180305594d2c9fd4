"""What a user reads: help that tells the truth, status in the user's units, two-line errors,
readable snippets, and progress that shows a rate on a slow machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.corpus import using, write_corpus
from tests.fakes import HashingEncoder
from tpsearch.cli import app

WIDE = {"COLUMNS": "200"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_corpus(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TPSEARCH_INDEX", raising=False)
    monkeypatch.setattr(
        "tpsearch.collection.facade.default_encoder_factory", using(HashingEncoder())
    )
    return tmp_path


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
