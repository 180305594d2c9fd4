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


def test_inspect_marks_the_slot_and_the_pooled_token(tiny_model: Callable[[str], Path]) -> None:
    result = runner.invoke(app, ["inspect", "A cat sat.", "--json", *model_args(tiny_model())])
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
    result = runner.invoke(app, ["inspect", "A cat sat.", "--json", *model_args(tiny_model())])
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
    result = runner.invoke(app, ["eval", "sts", str(data), "--json", *model_args(tiny_model())])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pairs"] == 3 and report["skipped"] == 1
    assert report["tp"] is not None and report["baseline"] is not None


def test_calibrate_saves_and_later_runs_use_it(
    tiny_model: Callable[[str], Path], private_home: Path
) -> None:
    args = ["calibrate", "--pairs", "20", "--tp-ends", "2-3", "--json", *model_args(tiny_model())]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)["best"]
    saved = json.loads((private_home / "calibrations.json").read_text())
    (record,) = saved.values()
    assert (record["tp_end"], record["exit_layer"]) == (best["tp_end"], best["exit_layer"])
    shown = runner.invoke(app, ["inspect", "x", "--json", *model_args(tiny_model())])
    settings = json.loads(shown.stdout)["settings"]
    assert settings["layer settings from"].startswith("calibrated")
    assert settings["exit_layer"].startswith(f"{best['exit_layer']} of")


def test_terminal_output_of_the_engine_commands(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    shown = runner.invoke(app, ["inspect", "A cat sat.", *model_args(tiny_model())])
    assert shown.exit_code == 0
    assert "<PST>" in shown.stdout and "◀ pooled" in shown.stdout and "kv cache" in shown.stdout
    data = tmp_path / "pairs.tsv"
    data.write_text(
        "A man plays.\tA man is playing.\t4.8\nA dog runs.\tMarkets fell.\t0.1\n"
        "A cat sleeps.\tA cat is asleep.\t4.5\nbroken\n",
        encoding="utf-8",
    )
    scored = runner.invoke(app, ["eval", "sts", str(data), *model_args(tiny_model())])
    assert scored.exit_code == 0
    assert "with TP" in scored.stdout and "without TP" in scored.stdout
    assert "1 malformed rows skipped" in scored.stdout
    swept = runner.invoke(
        app, ["calibrate", "--data", str(data), "--tp-ends", "2", *model_args(tiny_model())]
    )
    assert swept.exit_code == 0, swept.output
    assert "best: TP layers [1, 2)" in swept.stdout and "no TP" in swept.stdout
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
    assert "not in the local Hugging Face cache" in out.stderr
    assert "--model ./path/to/model" in out.stderr
    assert "Traceback" not in out.stderr
