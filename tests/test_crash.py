"""kill -9 at any moment: the collection reopens consistent, and the next run completes it.

A real indexing process (tests/crash_driver.py) kills itself with SIGKILL at chosen points:
inside a file's transaction, between files, while a group of chunks is being encoded, after
a group of vectors is committed, and on either side of the FAISS file's rename. Each time the
collection must reopen with every invariant holding, answer queries, and be brought by one
more run to exactly the state of a clean index of the same files: nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.corpus import LONG_AGO, using
from tests.fakes import HashingEncoder
from tpsearch.chunking import embedding_text
from tpsearch.collection import Collection
from tpsearch.vectors import VectorIndex

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")
REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "crash_driver.py"
ENCODER = HashingEncoder()


def page(name: str, version: int) -> str:
    def sentence(n: int, s: int) -> str:
        return f"{name} v{version} part {n} sentence {s} about topic{(s * 7 + n) % 13}."

    sections = [f"## Part {n}\n\n" + " ".join(sentence(n, s) for s in range(9)) for n in range(3)]
    return f"# Page {name}\n\n" + "\n\n".join(sections) + "\n"


def write(root: Path, name: str, version: int, mtime: int) -> None:
    path = root / "docs" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(name, version), encoding="utf-8")
    os.utime(path, (mtime, mtime))


def final_corpus(root: Path) -> None:
    """The files as they are after the edits: 15 kept, 5 changed, 5 new (5 deleted)."""
    for i in range(25):
        if i < 5:
            write(root, f"f{i:02}", 2, LONG_AGO + 100)
        elif i >= 10:
            write(root, f"f{i:02}", 1, LONG_AGO)
    for i in range(5):
        write(root, f"n{i:02}", 1, LONG_AGO + 100)


def indexed_then_edited(root: Path) -> Path:
    """A collection of 25 files, then 5 of them changed, 5 deleted and 5 added on disk."""
    for i in range(25):
        write(root, f"f{i:02}", 1, LONG_AGO)
    with Collection.locate(root, create=True) as col:
        col.index([root / "docs"], encoder_factory=using(ENCODER))
    for i in range(5, 10):
        (root / "docs" / f"f{i:02}.md").unlink()
    final_corpus(root)
    return root


def contents(col: Collection) -> list[tuple[object, ...]]:
    return col.store.query(
        "SELECT f.path, c.seq, c.start_line, c.end_line, c.start_byte, c.end_byte, c.heading,"
        " c.text FROM chunks c JOIN files f ON f.id = c.file_id ORDER BY f.path, c.seq"
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[object, ...]]:
    root = tmp_path_factory.mktemp("clean")
    final_corpus(root)
    with Collection.locate(root, create=True) as col:
        col.index([root / "docs"], encoder_factory=using(ENCODER))
        return contents(col)


def assert_consistent(col: Collection) -> None:
    """The invariants that must hold after any crash, before anything repairs them."""
    assert col.problems() == []  # integrity, no orphan vectors or chunks, FTS in step
    counts = col.store.counts()
    assert counts["embedded"] + counts["pending"] == counts["chunks"]
    rows = col.store.query(
        "SELECT c.heading, c.text, v.vector FROM vectors v JOIN chunks c ON c.id = v.chunk_id"
    )
    if rows:  # every stored vector is the vector of its chunk's current text
        texts = [embedding_text(heading, text) for heading, text, _ in rows]
        stored = np.stack([np.frombuffer(blob, dtype="<f4") for _, _, blob in rows])
        np.testing.assert_allclose(stored, ENCODER.encode(texts), atol=1e-6)
    with col.store.snapshot():
        index = col.vector_index(col.store.get_meta("dim"))
        assert index.ids().tolist() == col.store.vector_ids().tolist()
    assert col.query("topic3 sentence", mode="lexical", encoder_factory=using(ENCODER)).hits


def assert_complete(col: Collection, clean: list[tuple[object, ...]]) -> None:
    assert contents(col) == clean  # every file, every chunk, once
    assert col.store.counts()["pending"] == 0
    saved = VectorIndex.load(col.vectors_path())
    chunk_ids = [r[0] for r in col.store.query("SELECT id FROM chunks ORDER BY id")]
    assert saved is not None and saved.ids().tolist() == chunk_ids
    assert sorted(p.name for p in col.folder.iterdir() if "faiss" in p.name) == [
        "vectors-1.faiss"
    ]  # no temporary file left behind
    assert_consistent(col)


def run_driver(root: Path, point: str, delay: float = 0.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(DRIVER), str(root), point, str(delay)]
    pipe = subprocess.PIPE
    return subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe, text=True)


@pytest.mark.parametrize(
    "point",
    ["file-txn:3", "scan:7", "encode:2", "embed:1", "faiss-write", "faiss-renamed"],
)
def test_killed_at_a_point_reopens_consistent_and_finishes(
    tmp_path: Path, point: str, clean: list[tuple[object, ...]]
) -> None:
    root = indexed_then_edited(tmp_path)
    process = run_driver(root, point)
    _, err = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, err
    if point == "faiss-write":  # it died with the new index under its temporary name
        assert any(".tmp-" in p.name for p in (root / ".tpsearch").iterdir())
    with Collection.open(root / ".tpsearch") as col:
        assert_consistent(col)
        assert col.store.last_run()["status"] == "running"  # type: ignore[index]
        summary = col.index(encoder_factory=using(ENCODER))
        assert summary.pending == 0
        assert_complete(col, clean)
        assert col.store.query("SELECT status FROM runs ORDER BY id")[-2:] == [
            ("killed",),
            ("completed",),
        ]


def test_an_uninterrupted_driver_run_matches_the_clean_index(
    tmp_path: Path, clean: list[tuple[object, ...]]
) -> None:
    root = indexed_then_edited(tmp_path)
    out, err = run_driver(root, "none").communicate(timeout=120)
    assert out.strip() == "completed", err
    with Collection.open(root / ".tpsearch") as col:
        assert_complete(col, clean)


@pytest.mark.slow
def test_killed_at_random_moments_again_and_again(
    tmp_path: Path, clean: list[tuple[object, ...]]
) -> None:
    """Edits between runs keep each run busy; kills land wherever they land."""
    root = indexed_then_edited(tmp_path)
    rng = random.Random(7)
    killed = 0
    for round_ in range(12):
        for name in rng.sample([f"f{i:02}" for i in range(10, 25)], 4):
            write(root, name, 10 + round_, LONG_AGO + 1000 + round_)
        process = run_driver(root, "none", delay=0.3)
        time.sleep(rng.uniform(0.2, 1.6))  # imports take ~0.5 s: kills land all over the run
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        killed += process.returncode == -signal.SIGKILL
        with Collection.open(root / ".tpsearch") as col:
            assert_consistent(col)
    assert killed >= 6  # most runs were cut short somewhere
    final_corpus(root)  # the edits undone, with new mtimes: the last run must notice
    for i in range(10, 25):
        os.utime(root / "docs" / f"f{i:02}.md", (LONG_AGO + 5000, LONG_AGO + 5000))
    with Collection.open(root / ".tpsearch") as col:
        col.index(encoder_factory=using(ENCODER))
        assert_complete(col, clean)
