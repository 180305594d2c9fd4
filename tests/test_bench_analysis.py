"""The analysis benchmark still runs (at a small size): scripts nobody runs quietly rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_analysis.py"


@pytest.mark.slow
def test_benchmark_runs_and_finds_the_planted_duplicates() -> None:
    args = ["--n", "6000", "--dim", "64", "--topics", "10", "--planted", "100"]
    out = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, check=True
    ).stdout
    assert "recall of planted pairs 1.0000, groups without a planted pair 0" in out
    assert "semantic dedupe" in out and "MISSED" not in out
