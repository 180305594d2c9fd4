"""STS reading, Spearman and the paired bootstrap, evaluation, calibration and its choice."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from tpsearch import EncoderSettings, TPEncoder
from tpsearch.engine.bootstrap import paired_bootstrap, paired_bootstraps
from tpsearch.engine.calibration import CalibrationStore
from tpsearch.engine.evaluation import (
    calibrate,
    evaluate_sts,
    read_pairs,
    shipped_sts_dev,
    spearman,
)
from tpsearch.engine.sweep import CalibrationResult, summarise_sweep
from tpsearch.errors import ConfigError, DataError, TpsearchWarning


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


def test_a_sample_says_how_many_pairs_of_how_many() -> None:
    pairs = read_pairs(shipped_sts_dev())
    assert pairs.describe() == "1500 pairs" and pairs.sample(0) is pairs
    sample = pairs.sample(300)
    assert (len(sample), sample.sampled_from, sample.describe()) == (300, 1500, "300 of 1500 pairs")


def test_the_paired_bootstrap_separates_a_real_difference_from_noise() -> None:
    rng = np.random.default_rng(7)
    gold = rng.normal(size=400)
    sharp = gold + rng.normal(0, 0.5, 400)
    blurred = gold + rng.normal(0, 1.5, 400)
    clear = paired_bootstrap(sharp, blurred, gold)
    expected = 100 * (spearmanr(sharp, gold).statistic - spearmanr(blurred, gold).statistic)
    assert clear.difference == pytest.approx(expected)
    assert clear.low > 0 and clear.excludes_zero and clear.verdict == "better"
    assert clear.low < clear.difference < clear.high
    worse = paired_bootstrap(blurred, sharp, gold)
    assert worse.high < 0 and worse.verdict == "worse"

    twin = gold + rng.normal(0, 1.0, 400)  # as good as `other`, different noise
    other = gold + rng.normal(0, 1.0, 400)
    noise = paired_bootstrap(twin, other, gold)
    assert noise.low < 0 < noise.high and not noise.excludes_zero
    assert noise.verdict == "no clear difference"
    assert paired_bootstrap(twin, other, gold) == noise, "a fixed seed: the same interval"
    assert paired_bootstraps([sharp, twin], other, gold)[1] == noise


def test_the_bootstrap_ranks_ties_as_scipy_does_on_each_resample() -> None:
    """The vectorised resamples equal a plain loop of scipy Spearmans on the same draws."""
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 6, 60).astype(float)  # ties, and more of them once resampled
    a, b = gold + rng.normal(0, 2, 60), np.round(gold + rng.normal(0, 2, 60))
    result = paired_bootstrap(a, b, gold, resamples=200, seed=11)
    draws = np.random.default_rng(11).integers(0, 60, size=(200, 60))
    loop = [
        100 * (spearmanr(a[d], gold[d]).statistic - spearmanr(b[d], gold[d]).statistic)
        for d in draws
    ]
    np.testing.assert_allclose([result.low, result.high], np.percentile(loop, [2.5, 97.5]))


def test_evaluate_reports_tp_the_plain_prompt_and_their_interval(
    tiny_model: Callable[[str], Path],
) -> None:
    settings = EncoderSettings(
        model=str(tiny_model("qwen2")), precision="fp32", tp_start=1, tp_end=2
    )
    encoder = TPEncoder(settings)
    pairs = read_pairs(shipped_sts_dev()).sample(40)
    result = evaluate_sts(encoder, pairs)
    assert (result.pairs, result.sampled_from) == (40, 1500) and result.tp is not None
    assert -100 <= result.baseline <= 100 and result.tp != result.baseline
    assert result.tp_settings is not None and "TP layers [1, 2)" in result.tp_settings
    assert "no TP" in result.baseline_settings
    difference = result.tp_minus_plain
    assert difference is not None and difference.resamples == 1000
    assert difference.difference == pytest.approx(result.tp - result.baseline)
    assert difference.low <= difference.difference <= difference.high

    plain = evaluate_sts(encoder.variant(tp=False), pairs)
    assert plain.tp is None and plain.tp_minus_plain is None
    assert plain.baseline == pytest.approx(result.baseline, abs=1e-6)
    assert plain.tp_note == "--no-tp: the plain prompt only"


def count_passes(encoder: TPEncoder) -> tuple[list[int], Callable[[], None]]:
    passes: list[int] = []
    handle = encoder.backbone.layers[-1].register_forward_hook(lambda *_: passes.append(1))
    return passes, handle.remove


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
    passes, stop = count_passes(encoder)
    try:
        result = calibrate(encoder, pairs, tp_ends=[2, 3, 4], batch_size=64)
    finally:
        stop()
    assert len(passes) == 4, "one forward pass per TP end layer, plus one without TP"
    assert result.passes == 4 and result.sampled_from == 1500
    assert result.grid.shape == (1, 1, 3, 6) and result.baseline.shape == (1, 6)
    assert np.isnan(result.grid[0, 0, 2, :3]).all() and np.isfinite(result.grid[0, 0, 2, 3:]).all()
    best = result.best
    assert best is not None and best.spearman == np.nanmax(result.grid)
    assert [r.spearman for r in result.ranking] == sorted(
        (r.spearman for r in result.ranking), reverse=True
    )
    assert len(result.ranking) == 10 and all(r.versus_plain for r in result.ranking)
    cached = calibrate(encoder.variant(prefix_cache="on"), pairs, tp_ends=[2, 3, 4])
    np.testing.assert_allclose(cached.grid, result.grid, atol=1e-3)  # Spearman x100
    np.testing.assert_allclose(cached.baseline, result.baseline, atol=1e-3)

    record = result.record(encoder.model_id, "last", "dev.tsv")
    assert record.tp == (result.outcome == "tp")
    CalibrationStore(store).put(record)
    again = TPEncoder(settings)
    chosen = result.chosen
    assert (again.tp.tp, again.tp.exit_layer) == (chosen.tp, chosen.exit_layer)
    assert again.tp.source.startswith("calibrated on dev.tsv")
    with pytest.warns(TpsearchWarning, match="made with last pooling and is not used with mean"):
        mean_pooling = TPEncoder(settings.with_overrides(pooling="mean"))
    assert not mean_pooling.tp.source.startswith("calibrated"), "calibrations are per pooling"


def test_a_wider_sweep_templates_tp_starts_and_the_plain_prompt_only(
    tiny_model: Callable[[str], Path],
) -> None:
    settings = EncoderSettings(model=str(tiny_model("qwen2")), precision="fp32")
    encoder = TPEncoder(settings.with_overrides(prefix_cache="off"))  # the head is a pass too
    pairs = read_pairs(shipped_sts_dev()).sample(30)
    passes, stop = count_passes(encoder)
    try:
        wide = calibrate(encoder, pairs, [1, 2], 64, tp_starts=[0, 1], templates=["pcot", "eol"])
        plain = calibrate(
            encoder.variant(tp=False), pairs, None, 64, templates=["eol", "knowledge"]
        )
    finally:
        stop()
    # (start 0: ends 1 and 2; start 1: end 2) per template, and one plain pass per template
    assert len(passes) == 2 * 3 + 2 + 2 and wide.passes == 8
    assert wide.templates == ("pcot", "prompteol") and wide.grid.shape == (2, 2, 2, 6)
    assert np.isnan(wide.grid[:, 1, 0]).all(), "no TP layers [1, 1)"
    assert np.isfinite(wide.grid[:, 0, 0]).all(), "TP layers [0, 1) then any exit"
    assert {(r.template, r.tp_start) for r in wide.ranking} <= {
        (t, s) for t in ("pcot", "prompteol") for s in (0, 1)
    }
    assert plain.outcome == "no-tp" and not plain.chosen.tp and plain.ranking == ()
    assert plain.grid.shape == (2, 0, 0, 6) and plain.chosen.spearman == np.nanmax(plain.baseline)
    with pytest.raises(ConfigError, match="no TP end layer lies after tp_start 2"):
        calibrate(encoder, pairs, [1, 2], tp_starts=[0, 2])
    with pytest.raises(ConfigError, match="pass --no-tp"):
        calibrate(encoder, pairs, templates=['"{text}" means in one word:"'])


def synthetic_sweep(tp_gain: float) -> CalibrationResult:
    """A sweep of one template, tp_start 1, tp_end 2-3 and 3 exits on 300 pairs, where the
    best TP setting is the plain prompt plus `tp_gain` of signal."""
    rng = np.random.default_rng(5)
    gold = rng.normal(size=300)
    noise = rng.normal(size=(3, 300))
    plain = np.stack([gold + 2.0 * noise[0], gold + 1.0 * noise[0], gold + 3.0 * noise[0]])
    best = gold + (1.0 - tp_gain) * noise[0]
    worse = gold + 2.5 * noise[1]
    tp = {(0, 0, 0): np.stack([worse, best, worse]), (0, 0, 1): np.stack([worse] * 3)}
    grid = np.full((1, 1, 2, 3), np.nan)
    for (_, _, e), rows in tp.items():
        for x in range(3):
            if x + 1 >= e + 2:
                grid[0, 0, e, x] = 100 * spearman(rows[x], gold)
    baseline = np.array([[100 * spearman(row, gold) for row in plain]])
    return summarise_sweep(
        ("prompteol",), (1,), (2, 3), grid, baseline, tp, {0: plain}, gold, sampled_from=1500
    )


def test_tp_is_saved_only_when_its_interval_over_the_plain_prompt_excludes_zero() -> None:
    wins = synthetic_sweep(0.5)
    assert wins.outcome == "tp" and wins.chosen == wins.best
    assert wins.best is not None and wins.best.versus_plain is not None
    assert (wins.best.tp_end, wins.best.exit_layer) == (2, 2)
    assert wins.best.versus_plain.low > 0
    record = wins.record("m", "last", "dev.tsv")
    assert (record.tp, record.tp_start, record.tp_end, record.exit_layer) == (True, 1, 2, 2)

    ties = synthetic_sweep(0.0)  # the best TP cell equals the plain prompt at exit 2
    assert ties.outcome == "tp-not-better" and not ties.chosen.tp
    assert ties.chosen == ties.best_plain and ties.best_plain.exit_layer == 2
    record = ties.record("m", "last", "dev.tsv")
    assert (record.tp, record.exit_layer, record.tp_end) == (False, 2, 0)
    assert record.tp_minus_plain is not None and record.tp_minus_plain_low is not None
    assert record.tp_minus_plain_low <= 0 <= (record.tp_minus_plain_high or 0)


def test_a_calibrated_plain_prompt_is_honoured_unless_tp_layers_are_given(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    store = tmp_path / "calibrations.json"
    settings = EncoderSettings(
        model=str(tiny_model("qwen2")), precision="fp32", calibration_file=store
    )
    encoder = TPEncoder(settings)
    record = synthetic_sweep(0.0).record(encoder.model_id, "last", "dev.tsv")
    record = replace(record, num_layers=encoder.tp.num_layers)  # 3 exits swept, 6 layers here
    CalibrationStore(store).put(record)
    plain = encoder.variant()
    assert (plain.tp.tp, plain.tp.exit_layer) == (False, 2)
    assert plain.tp.source == "calibrated on dev.tsv (plain prompt)"
    evaluated = evaluate_sts(plain, read_pairs(shipped_sts_dev()).sample(20))
    assert evaluated.tp is None and "chose the plain prompt" in (evaluated.tp_note or "")
    with_layers = encoder.variant(tp_start=1, tp_end=2)
    assert (with_layers.tp.tp, with_layers.tp.tp_end, with_layers.tp.exit_layer) == (True, 2, 2)

    newer = {"tp", "tp_minus_plain", "tp_minus_plain_low", "tp_minus_plain_high"}
    old = {k: v for k, v in record.__dict__.items() if k not in newer}  # a record made before
    store.write_text(json.dumps({CalibrationStore.key(encoder.model_id, "last"): old}))
    assert encoder.variant().tp.tp, "records without the tp field meant TP on"


def test_the_pooling_warning_is_said_once(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    store = tmp_path / "calibrations.json"
    settings = EncoderSettings(
        model=str(tiny_model("qwen2")), precision="fp32", calibration_file=store, pooling="mean"
    )
    encoder = TPEncoder(settings)
    CalibrationStore(store).put(synthetic_sweep(0.5).record(encoder.model_id, "last", "d.tsv"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.variant()
        encoder.variant(tp=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, TpsearchWarning)]
    assert messages == [
        f"the calibration of {encoder.model_id} was made with last pooling and is not used "
        "with mean pooling: run tpsearch calibrate --pooling mean"
    ]


def test_calibration_output_is_best_first_and_fits_80_columns() -> None:
    from rich.console import Console

    from tpsearch.cli.render.evaluation import render_calibration

    def shown(result: CalibrationResult) -> list[str]:
        console = Console(width=80, record=True, color_system=None)
        render_calibration(console, result, False, saved_to="/x/c.json", model="m")
        lines = console.export_text().splitlines()
        assert max(len(line) for line in lines) <= 80 and not any("…" in x for x in lines)
        return lines

    wins = shown(synthetic_sweep(0.5))
    first_row = next(line for line in wins if line.lstrip().startswith("1 "))
    assert "[1, 2)" in first_row and "2/3" in first_row
    text = " ".join(wins)
    assert "TP beat the plain prompt here: saved TP layers [1, 2), exit 2" in text
    assert "Saved for m (last pooling) in /x/c.json: later runs with this model use it" in text
    ties = " ".join(shown(synthetic_sweep(0.0)))
    assert "TP did not beat the plain prompt here: saved the plain prompt, exit 2" in ties
    assert "3 of 1500 pairs" not in ties and "300 of 1500 pairs" in ties


def test_a_model_without_settings_is_scored_with_the_plain_prompt_and_says_why(
    tiny_model: Callable[[str], Path],
) -> None:
    encoder = TPEncoder(EncoderSettings(model=str(tiny_model("qwen2")), precision="fp32"))
    evaluated = evaluate_sts(encoder, read_pairs(shipped_sts_dev()).sample(20))
    assert evaluated.tp is None and evaluated.tp_minus_plain is None
    assert "default: plain prompt, exit -2" in (evaluated.tp_note or "")
    assert "--tp-start and --tp-end" in (evaluated.tp_note or "")
