"""STS reading, Spearman, evaluation and calibration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from tpsearch import EncoderSettings, TPEncoder
from tpsearch.engine.calibration import CalibrationStore
from tpsearch.engine.evaluation import (
    calibrate,
    evaluate_sts,
    read_pairs,
    shipped_sts_dev,
    spearman,
)
from tpsearch.errors import DataError


def test_the_shipped_sts_dev_set_reads_completely() -> None:
    pairs = read_pairs(shipped_sts_dev())
    assert (len(pairs), pairs.skipped, pairs.format) == (1500, 0, "stsb")
    assert pairs.first[0] == "A man with a hard hat is dancing."
    assert pairs.scores[0] == 5.0
    assert (shipped_sts_dev().parent / "LICENSE-stsbenchmark.txt").is_file()


def test_stsb_rows_with_extra_columns_and_malformed_rows(tmp_path: Path) -> None:
    path = tmp_path / "sts.tsv"
    path.write_text(
        'main-news\tf\t2012\t1\t3.5\tHe said "yes".\tHe agreed.\n'
        "main-news\tf\t2012\t2\t1.0\tA cat.\tA dog.\tsource-a\tsource-b\n"
        "broken row without tabs\n"
        "main-news\tf\t2012\t3\tnot-a-score\tA.\tB.\n",
        encoding="utf-8",
    )
    pairs = read_pairs(path)
    assert pairs.first == ('He said "yes".', "A cat.") and pairs.skipped == 2
    np.testing.assert_array_equal(pairs.scores, [3.5, 1.0])


def test_sick_and_plain_formats(tmp_path: Path) -> None:
    sick = tmp_path / "sick.txt"
    sick.write_text(
        "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
        "1\tA boy runs.\tA kid runs.\t4.5\tENTAILMENT\n2\tA.\tB.\t\tNEUTRAL\n",
        encoding="utf-8",
    )
    pairs = read_pairs(sick)
    assert (pairs.format, pairs.first, pairs.skipped) == ("sick", ("A boy runs.",), 1)
    plain = tmp_path / "plain.tsv"
    plain.write_text("sentence1\tsentence2\tscore\nA.\tB.\t0.5\nC.\tD.\t2\n", encoding="utf-8")
    pairs = read_pairs(plain)
    assert (pairs.format, len(pairs), pairs.skipped) == ("plain", 2, 0)
    empty = tmp_path / "empty.tsv"
    empty.write_text("just text\n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentence pairs"):
        read_pairs(empty)
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "missing.tsv")


def test_too_few_or_constant_gold_scores_are_explained(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    encoder = TPEncoder(EncoderSettings(model=str(tiny_model("qwen2")), precision="fp32"))
    flat = tmp_path / "flat.tsv"
    flat.write_text("A.\tB.\t2\nC.\tD.\t2\nE.\tF.\t2\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 different scores"):
        calibrate(encoder, read_pairs(flat), tp_ends=[2])
    with pytest.raises(DataError, match="at least 3 pairs"):
        evaluate_sts(encoder, read_pairs(shipped_sts_dev()).sample(2))


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 200).astype(float)  # many ties
    y = x + rng.normal(0, 2, 200)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))


def test_evaluate_reports_tp_and_the_same_template_without_tp(
    tiny_model: Callable[[str], Path],
) -> None:
    encoder = TPEncoder(EncoderSettings(model=str(tiny_model("qwen2")), precision="fp32"))
    pairs = read_pairs(shipped_sts_dev()).sample(40)
    result = evaluate_sts(encoder, pairs)
    assert result.pairs == 40 and result.tp is not None
    assert -100 <= result.baseline <= 100 and result.tp != result.baseline
    assert "TP layers [1, 2)" in result.tp_settings and "no TP" in result.baseline_settings


def test_calibration_sweeps_with_one_pass_per_tp_end_and_is_picked_up(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    store = tmp_path / "calibrations.json"
    settings = EncoderSettings(
        model=str(tiny_model("qwen2")),
        precision="fp32",
        prefix_cache="off",
        calibration_file=store,
    )
    encoder = TPEncoder(settings)
    pairs = read_pairs(shipped_sts_dev()).sample(30)
    passes: list[int] = []
    last_layer = encoder.backbone.layers[-1]
    handle = last_layer.register_forward_hook(lambda *_: passes.append(1))
    try:
        result = calibrate(encoder, pairs, tp_ends=[2, 3, 4], batch_size=64)
    finally:
        handle.remove()
    assert len(passes) == 4, "one forward pass per TP end layer, plus one without TP"
    assert result.grid.shape == (3, 6) and result.baseline.shape == (6,)
    assert np.isnan(result.grid[2, :3]).all() and np.isfinite(result.grid[2, 3:]).all()
    tp_end, exit_layer, _ = result.best
    cached = calibrate(encoder.variant(prefix_cache="on"), pairs, tp_ends=[2, 3, 4])
    np.testing.assert_allclose(cached.grid, result.grid, atol=1e-3)  # Spearman x100
    np.testing.assert_allclose(cached.baseline, result.baseline, atol=1e-3)

    CalibrationStore(store).put(result.record(encoder, "dev.tsv"))
    again = TPEncoder(settings)
    assert (again.tp.tp_end, again.tp.exit_layer) == (tp_end, exit_layer)
    assert again.tp.source == "calibrated on dev.tsv"
    mean_pooling = TPEncoder(settings.with_overrides(pooling="mean"))
    assert not mean_pooling.tp.source.startswith("calibrated"), "calibrations are per pooling"


def test_calibration_output_says_when_the_plain_prompt_did_better() -> None:
    from rich.console import Console

    from tpsearch.cli.render.engine import render_calibration
    from tpsearch.engine.evaluation import CalibrationResult

    def shown(baseline: list[float]) -> str:
        result = CalibrationResult(
            tp_start=1,
            tp_ends=(2, 3),
            exits=(1, 2, 3),
            grid=np.array([[np.nan, 50.0, 60.0], [np.nan, np.nan, 55.0]]),
            baseline=np.array(baseline),
            pairs=100,
            skipped=0,
        )
        console = Console(width=120, record=True, color_system=None)
        render_calibration(console, result, None, as_json=False)
        return console.export_text()

    tp_wins = shown([40.0, 45.0, 58.0])
    assert "best: TP layers [1, 2), exit layer 3: 60.00" in tp_wins and "+2.00" in tp_wins
    assert "plain prompt scored higher" not in tp_wins
    plain_wins = shown([40.0, 62.0, 58.0])
    assert "-2.00" in plain_wins
    assert "plain prompt scored higher on this data: `--no-tp --exit-layer 2`" in plain_wins
