from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tinymodels import save_tiny_model


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
