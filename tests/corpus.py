"""A small corpus written into a temporary folder, and encoders for collection tests."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tests.fakes import HashingEncoder
from tpsearch.engine.encoder import Encoder
from tpsearch.engine.settings import EncoderSettings
from tpsearch.errors import ModelLoadError

GUIDE = """# Installation guide

Install the package with pip inside a virtual environment. Upgrading works the same way.

## Configuration

Settings are read from a TOML file in your home folder. Environment variables override them.

## Troubleshooting

If the server refuses connections, check the firewall and the port number.
"""

API = """# HTTP API

The server answers JSON requests on port 8080. Authentication uses bearer tokens.

## Endpoints

GET /items lists the items. POST /items creates one; DELETE /items/{id} removes it.
"""

NOTES = """Meeting notes, Tuesday.

We agreed to rewrite the billing module in Rust and to drop the legacy invoices.

Next meeting: quarterly planning and the hiring budget.
"""

FILES = {"docs/guide.md": GUIDE, "docs/api.md": API, "docs/notes.txt": NOTES}
LONG_AGO = 1_600_000_000  # a fixed mtime in the past: files not "racy", stats trusted


def write_corpus(root: Path, files: dict[str, str] | None = None) -> Path:
    for rel, text in (files or FILES).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        os.utime(path, (LONG_AGO, LONG_AGO))
    (root / "docs" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (root / "docs" / ".draft.md").write_text("hidden draft", encoding="utf-8")
    return root / "docs"


def edit(path: Path, text: str, mtime: int = LONG_AGO + 100) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))


def downgrade_to_first_schema(database: Path) -> None:
    """Make a collection's database look as the first schema (m001) left it."""
    connection = sqlite3.connect(database)
    for table in ("files", "skipped"):
        for column in ("ctime_ns", "inode", "device"):
            connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    connection.execute("DELETE FROM _sqlite_migrations WHERE name != 'm001_initial'")
    connection.commit()
    connection.close()


def using(encoder: Encoder) -> Callable[[EncoderSettings], Encoder]:
    """A factory that ignores the settings and hands out one encoder."""
    return lambda settings: encoder


def failing_to_load(settings: EncoderSettings) -> Encoder:
    raise ModelLoadError(f"cannot load {settings.model}: offline and not in the cache")


class FlakyEncoder(HashingEncoder):
    """Fails on the n-th call to encode, as a model running out of memory would."""

    def __init__(self, fail_on_call: int, error: BaseException, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fail_on_call = fail_on_call
        self.error = error

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if self.calls + 1 == self.fail_on_call:
            self.calls += 1
            raise self.error
        return super().encode(texts, batch_size)
