"""The engine's commands as a user runs them: inspect, embed, eval sts, calibrate, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tpsearch.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TPSEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def model_args(path: Path) -> list[str]:
    return ["--model", str(path), "--precision", "fp32"]


def tp_model_args(path: Path) -> list[str]:
    """The tiny model with TP layers given: a model without a preset gets the plain prompt."""
    return [*model_args(path), "--tp-start", "1", "--tp-end", "2"]


def test_inspect_marks_the_slot_and_the_pooled_token(tiny_model: Callable[[str], Path]) -> None:
    result = runner.invoke(app, ["inspect", "A cat sat.", "--json", *tp_model_args(tiny_model())])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    tokens = view["tokens"]
    assert tokens[view["pst_index"]]["text"] == "<PST>"
    assert [t["position"] for t in tokens if t["pooled"]] == [view["last_index"]]
    assert "".join(t["text"] for t in tokens if t["part"] == "text").strip() == "A cat sat."


def test_inspect_reads_no_weights(
    tiny_model: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tpsearch.engine.backbone

    def no_weights(*_: object, **__: object) -> None:
        raise AssertionError("inspect must not load the model's weights")

    monkeypatch.setattr(tpsearch.engine.backbone, "load_backbone", no_weights)
    monkeypatch.setattr("tpsearch.engine.token_prepending.load_backbone", no_weights)
    result = runner.invoke(app, ["inspect", "A cat sat.", "--json", *tp_model_args(tiny_model())])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["model"] == str(tiny_model().resolve())


def test_embed_prints_unit_vectors(tiny_model: Callable[[str], Path]) -> None:
    result = runner.invoke(app, ["embed", *model_args(tiny_model())], input="one\ntwo\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == ["one", "two"]
    norms = np.linalg.norm([row["vector"] for row in rows], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_eval_sts_shows_both_methods(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    data = tmp_path / "pairs.tsv"
    data.write_text(
        "A man plays a guitar.\tA man is playing guitar.\t4.8\n"
        "A dog runs.\tThe stock market fell.\t0.1\n"
        "A woman cuts onions.\tA woman is slicing an onion.\t4.2\n"
        "bad line\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["eval", "sts", str(data), "--json", *tp_model_args(tiny_model())])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pairs"] == 3 and report["skipped"] == 1 and report["pairs_used"] == "3 pairs"
    assert report["tp"] is not None and report["baseline"] is not None
    interval = report["tp_minus_plain"]
    assert interval["low"] <= interval["difference"] <= interval["high"]
    assert interval["difference"] == pytest.approx(report["tp"] - report["baseline"], abs=2e-3)
    assert interval["resamples"] == 1000 and interval["confidence"] == 0.95


def test_eval_sts_says_when_it_samples_and_takes_no_tp(tiny_model: Callable[[str], Path]) -> None:
    dev = "data/sts/sts-dev.csv"
    sampled = runner.invoke(
        app, ["eval", "sts", dev, "--pairs", "30", *tp_model_args(tiny_model())]
    )
    assert sampled.exit_code == 0, sampled.output
    assert "STS, 30 of 1500 pairs" in sampled.stdout
    assert "TP minus plain prompt:" in sampled.stdout and "95% interval" in sampled.stdout
    args = ["eval", "sts", dev, "--pairs", "30", "--no-tp", *model_args(tiny_model())]
    plain = runner.invoke(app, [*args, "--json"])
    assert plain.exit_code == 0, plain.output
    report = json.loads(plain.stdout)
    assert report["pairs_used"] == "30 of 1500 pairs" and report["sampled_from"] == 1500
    assert report["tp"] is None and report["tp_minus_plain"] is None
    assert report["tp_note"] == "--no-tp: the plain prompt only"
    shown = runner.invoke(app, args)
    assert "with TP" not in shown.stdout and "plain prompt" in shown.stdout
    assert "TP not scored: --no-tp" in shown.stdout


def test_calibrate_saves_and_later_runs_use_it(
    tiny_model: Callable[[str], Path], private_home: Path
) -> None:
    args = ["calibrate", "--pairs", "20", "--tp-ends", "2-3", "--json", *model_args(tiny_model())]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    chosen = report["chosen"]
    assert report["pairs_used"] == "20 of 1500 pairs" and report["saved"]["tp"] == chosen["tp"]
    assert chosen["tp"] == (report["outcome"] == "tp")
    interval = report["tp_minus_plain"]
    assert interval == report["best"]["minus_plain"] and interval["low"] <= interval["high"]
    assert len(report["grid"][0][0]) == 2 and len(report["baseline"][0]) == 6
    saved = json.loads((private_home / "calibrations.json").read_text())
    (record,) = saved.values()
    assert (record["tp"], record["exit_layer"]) == (chosen["tp"], chosen["exit_layer"])
    again = runner.invoke(app, [*args[:-5], *model_args(tiny_model())], env={"COLUMNS": "80"})
    message = " ".join(again.stdout.split())
    assert (
        f"Saved for {tiny_model().resolve()} (last pooling) in "
        f"{private_home / 'calibrations.json'}: later runs with this model use it unless you "
        "pass --template/--tp-start/--tp-end/--exit-layer."
    ) in message
    shown = runner.invoke(app, ["inspect", "x", "--json", *model_args(tiny_model())])
    settings = json.loads(shown.stdout)["settings"]
    assert settings["layer settings from"].startswith("calibrated")
    assert settings["exit_layer"].startswith(f"{chosen['exit_layer']} of")

    mean = runner.invoke(app, ["inspect", "x", "--pooling", "mean", *model_args(tiny_model())])
    assert mean.exit_code == 0, mean.output
    assert mean.stderr.count("was made with last pooling and is not used with mean pooling") == 1
    assert "run tpsearch calibrate --pooling mean" in mean.stderr


def test_calibrate_no_tp_saves_the_plain_prompt(
    tiny_model: Callable[[str], Path], private_home: Path
) -> None:
    args = ["calibrate", "--pairs", "20", "--no-tp", "--templates", "prompteol,pcot"]
    result = runner.invoke(app, [*args, "--json", *model_args(tiny_model())])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["outcome"] == "no-tp" and report["ranking"] == [] and report["passes"] == 2
    assert report["chosen"]["tp"] is False and report["saved"]["tp"] is False
    (record,) = json.loads((private_home / "calibrations.json").read_text()).values()
    assert record["tp"] is False and record["template"] == report["chosen"]["template"]
    shown = runner.invoke(app, ["inspect", "x", "--json", *model_args(tiny_model())])
    settings = json.loads(shown.stdout)["settings"]
    assert "(plain prompt)" in settings["layer settings from"]


def test_calibrate_reads_at_80_columns_best_first_with_a_heat_map(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    png = tmp_path / "grid.png"
    args = ["calibrate", "--pairs", "30", "--tp-starts", "0-1", "--templates", "eol,pcot"]
    args.append("--no-save")  # the saved message names a file, as long as its path
    result = runner.invoke(
        app, [*args, "--plot", str(png), *model_args(tiny_model())], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    assert lines[0].startswith("Best settings on 30 of 1500 pairs")
    ranked = [line.split("│") for line in lines if line.lstrip()[:2].strip().isdigit()]
    scores = [float(cells[4]) for cells in ranked]
    assert len(scores) == 10 and scores == sorted(scores, reverse=True)
    best = next(line for line in lines if line.startswith("best TP:"))
    assert best.endswith(f"{scores[0]:.2f}")
    text = " ".join(lines)
    assert "swept: 2 templates (prompteol, pcot), tp_start 0-1, tp_end 1-2, exit 1-6" in text
    assert "the one to use (not saved)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"heat map written to {png}" in result.stderr


def test_calibrate_checks_the_plot_path_before_the_sweep(
    tiny_model: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tpsearch.engine.evaluation

    def no_sweep(*_: object, **__: object) -> None:
        raise AssertionError("the plot path must be checked before the sweep")

    monkeypatch.setattr(tpsearch.engine.evaluation, "calibrate", no_sweep)
    for bad, message in [
        (tmp_path / "missing" / "grid.png", "does not exist"),
        (tmp_path / "grid.pdf", "name it *.png"),
    ]:
        args = ["calibrate", "--plot", str(bad), *model_args(tiny_model())]
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.stderr
    both = runner.invoke(app, ["calibrate", "--tp-start", "1", "--tp-starts", "0-2"])
    assert both.exit_code == 2 and "pass --tp-start or --tp-starts, not both" in both.stderr


def test_terminal_output_of_the_engine_commands(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    shown = runner.invoke(app, ["inspect", "A cat sat.", *tp_model_args(tiny_model())])
    assert shown.exit_code == 0
    assert "<PST>" in shown.stdout and "◀ pooled" in shown.stdout and "kv cache" in shown.stdout
    data = tmp_path / "pairs.tsv"
    data.write_text(
        "A man plays.\tA man is playing.\t4.8\nA dog runs.\tMarkets fell.\t0.1\n"
        "A cat sleeps.\tA cat is asleep.\t4.5\nbroken\n",
        encoding="utf-8",
    )
    scored = runner.invoke(app, ["eval", "sts", str(data), *tp_model_args(tiny_model())])
    assert scored.exit_code == 0
    assert "with TP" in scored.stdout and "plain prompt" in scored.stdout
    assert "1 malformed rows skipped" in scored.stdout
    swept = runner.invoke(
        app, ["calibrate", "--data", str(data), "--tp-ends", "2", *model_args(tiny_model())]
    )
    assert swept.exit_code == 0, swept.output
    assert "best TP:     prompteol, TP layers [1, 2)" in swept.stdout
    assert "best plain:  prompteol, exit" in swept.stdout
    assert "3 pairs" in swept.stdout and "of 1500" not in swept.stdout
    as_array = runner.invoke(
        app, ["embed", "a", "b", "--format", "json", *model_args(tiny_model())]
    )
    assert np.array(json.loads(as_array.stdout)).shape == (2, 64)


def test_calibrating_on_unusable_data_is_one_clear_line(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    data = tmp_path / "one.tsv"
    data.write_text("A.\tB.\t3\n", encoding="utf-8")
    result = runner.invoke(app, ["calibrate", "--data", str(data), *model_args(tiny_model())])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Spearman needs at least 3 pairs" in result.stderr


def test_truncation_is_reported_on_stderr(tiny_model: Callable[[str], Path]) -> None:
    long_text = "word " * 100
    args = ["embed", long_text, "--max-length", "24", *model_args(tiny_model())]
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "tpsearch: warning: 1 of 1 texts were longer than max length 24" in result.stderr


def test_bad_values_are_one_clear_line(tiny_model: Callable[[str], Path]) -> None:
    result = runner.invoke(app, ["inspect", "x", "--precision", "3bit"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("tpsearch: invalid precision '3bit': choose one of")
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["inspect", "x", "--model", "./no-such-model"])
    assert result.exit_code == 2 and "no model directory at ./no-such-model" in result.stderr


def test_an_uncached_hub_model_offline_says_how_to_use_a_local_path(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run(
        [sys.executable, "-m", "tpsearch", "inspect", "x", "--model", "Qwen/Qwen2.5-0.5B"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2
    problem, fix = out.stderr.strip().splitlines()  # two short lines: what, then how to fix
    assert "not in the local Hugging Face cache" in problem and len(problem) < 110
    assert fix.startswith("  `hf download Qwen/Qwen2.5-0.5B`") and "--model" in fix
    assert len(fix) < 110
    assert "Traceback" not in out.stderr
