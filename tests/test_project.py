"""Promises to a newcomer: a fast --help, no torch at import, CI runs the README's command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.fakes import HashingEncoder
from tpsearch.encoder import Encoder

REPO = Path(__file__).resolve().parents[1]


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tpsearch.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = ('torch', 'transformers', 'faiss', 'bitsandbytes')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"--help imported {out.stdout.strip()}"


def test_package_import_is_light() -> None:
    code = "import sys, tpsearch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = next(
        line.strip() for line in readme.splitlines() if 'pip install -e ".[test]"' in line
    )
    assert command in ci.splitlines(), f"{command!r} is not a line of .ci/run"


def test_fake_encoder_satisfies_the_encoder_interface() -> None:
    encoder = HashingEncoder()
    assert isinstance(encoder, Encoder)
    vectors = encoder.encode(["a cat sat", "a cat sat", "stock markets fell"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert vectors[0] @ vectors[1] > 0.99 > vectors[0] @ vectors[2]
