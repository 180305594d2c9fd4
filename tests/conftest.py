from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.corpus import using, write_corpus
from tests.fakes import HashingEncoder
from tests.tinymodels import save_tiny_model
from tpsearch.collection import Collection


@pytest.fixture(autouse=True)
def private_user_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real user's calibrations or model cache."""
    monkeypatch.setenv("TPSEARCH_HOME", str(tmp_path / "tpsearch-home"))
    monkeypatch.setenv("TPSEARCH_CACHE", str(tmp_path / "tpsearch-cache"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Path of a tiny random-weight model of a family, built once per test session."""
    built: dict[str, Path] = {}

    def get(family: str = "qwen2") -> Path:
        if family not in built:
            built[family] = save_tiny_model(tmp_path_factory.mktemp(f"tiny-{family}"), family)
        return built[family]

    return get


@pytest.fixture
def tiny_collection(tmp_path: Path, tiny_model: Callable[[str], Path]) -> Path:
    """A small collection embedded with a tiny real model; a secret file beside it."""
    write_corpus(tmp_path / "root")
    (tmp_path / "secret.txt").write_text("the secret password is swordfish\n")
    (tmp_path / "root" / "docs" / "escape.md").symlink_to(tmp_path / "secret.txt")
    with Collection.locate(tmp_path / "root", create=True) as col:
        col.index(
            [tmp_path / "root" / "docs"],
            overrides={"model": str(tiny_model("qwen2")), "precision": "fp32", "device": "cpu"},
        )
        assert "docs/escape.md" not in col.store.file_ids()  # symlinks out are not indexed
        return col.folder


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test corpus in the working folder, as a user's project, indexed with the
    hashing encoder wherever the CLI would load a model."""
    write_corpus(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TPSEARCH_INDEX", raising=False)
    monkeypatch.setattr(
        "tpsearch.collection.facade.default_encoder_factory", using(HashingEncoder())
    )
    return tmp_path


# Modules that run at the default chunk budget: those that check it, and those comparing
# in-process runs with subprocesses (which the monkeypatch below does not reach).
NATIVE_BUDGET = ("test_chunking", "test_real_quality", "test_crash")


@pytest.fixture(autouse=True)
def chunk_budget_these_tests_were_written_for(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Most tests were written when last-token pooling cut 160-token chunks, and their small
    corpora and counts (one chunk per file, ...) assume it; what they check does not depend on
    it. The default budget itself is checked where it matters: test_chunking (the real docs at
    the default budget) and test_real_quality (search, dedupe and clusters on the real model)."""
    if request.module.__name__.rsplit(".", 1)[-1] not in NATIVE_BUDGET:
        monkeypatch.setattr("tpsearch.collection.chunking.LAST_POOLING_TOKENS", 160)
