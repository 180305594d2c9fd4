"""Promises to a newcomer: a fast --help, no torch at import, CI runs the README's command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.fakes import HashingEncoder
from tpsearch.engine.encoder import Encoder

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


# Which packages each room may import from (besides itself and tpsearch.errors): dependencies
# point down, cli -> collection/analysis -> engine, and the collection sees the engine only
# through the encoder protocol and its settings record.
ALLOWED_IMPORTS = {
    "engine": (),
    "analysis": (),
    "collection": ("tpsearch.analysis", "tpsearch.engine.encoder", "tpsearch.engine.settings"),
    "tui": ("tpsearch.collection",),
    "server": ("tpsearch.collection", "tpsearch.engine.encoder", "tpsearch.engine.settings"),
    "distributed": ("tpsearch.collection", "tpsearch.engine.encoder", "tpsearch.engine.settings"),
    "cli": (
        "tpsearch.analysis",
        "tpsearch.collection",
        "tpsearch.engine",
        "tpsearch.tui",
        "tpsearch.server",
        "tpsearch.distributed",
    ),
}
# The one place the collection names the real engine: the default encoder, imported lazily.
LAZY_ENGINE_IMPORT = ("collection/facade.py", "tpsearch.engine.token_prepending")


def _tpsearch_imports(path: Path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "tpsearch" or name.startswith("tpsearch.")}


def test_packages_import_only_downwards() -> None:
    package = REPO / "tpsearch"
    wrong = []
    for room, allowed in ALLOWED_IMPORTS.items():
        for path in sorted((package / room).rglob("*.py")):
            rel = path.relative_to(package).as_posix()
            for name in _tpsearch_imports(path):
                ok = (
                    name.startswith((f"tpsearch.{room}", "tpsearch.errors", *allowed))
                    or (room in ("cli", "server") and name == "tpsearch")
                    or (rel, name) == LAZY_ENGINE_IMPORT
                )
                if not ok:
                    wrong.append(f"{rel} imports {name}")
    below_cli = [p for p in package.rglob("*.py") if "cli" not in p.relative_to(package).parts]
    wrong += [
        f"{p.relative_to(package)} imports {name}"
        for p in below_cli
        for name in _tpsearch_imports(p)
        if name.startswith("tpsearch.cli") and p.name != "__main__.py"
    ]
    assert wrong == []


def test_no_module_outgrows_one_sitting() -> None:
    # store.py is one class over one database, its sections marked; it reads better whole.
    exceptions = {"collection/store.py"}
    package = REPO / "tpsearch"
    long = [
        f"{p.relative_to(package)}: {n} lines"
        for p in package.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
        and p.relative_to(package).as_posix() not in exceptions
    ]
    assert long == []
