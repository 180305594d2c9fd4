"""kill -9 at any moment: the collection reopens consistent, and the next run completes it.

A real indexing process (tests/crash_driver.py) kills itself with SIGKILL at chosen points:
inside a file's transaction, between files, while a group of chunks is being encoded, after
a group of vectors is committed, on either side of the FAISS file's rename, in --reembed's
dropping of the old vectors, and inside a schema step. Each time the collection must reopen
with every invariant holding (checked on what is stored, the saved FAISS file included, not
on what a later read repairs), answer queries, and be brought by one more run to exactly the
state of a clean index of the same files: nothing lost, nothing twice.
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

from tests.corpus import LONG_AGO, downgrade_to_first_schema, using
from tests.fakes import HashingEncoder
from tpsearch.collection import Collection
from tpsearch.collection.chunking import embedding_text
from tpsearch.collection.schema import DB_NAME
from tpsearch.collection.vector_index import VectorIndex

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


def indexed_then_edited(root: Path) -> Contents:
    """A collection of 25 files, then 5 of them changed, 5 deleted and 5 added on disk; the
    contents of the collection before the edits."""
    for i in range(25):
        write(root, f"f{i:02}", 1, LONG_AGO)
    with Collection.locate(root, create=True) as col:
        col.index([root / "docs"], encoder_factory=using(ENCODER))
        before = contents(col)
    for i in range(5, 10):
        (root / "docs" / f"f{i:02}.md").unlink()
    final_corpus(root)
    return before


Contents = dict[str, list[tuple[object, ...]]]  # path -> its chunks, in order


def contents(col: Collection) -> Contents:
    rows = col.store.query(
        "SELECT f.path, c.seq, c.start_line, c.end_line, c.start_byte, c.end_byte, c.heading,"
        " c.text FROM chunks c JOIN files f ON f.id = c.file_id ORDER BY f.path, c.seq"
    )
    by_path: Contents = {}
    for path, *chunk in rows:
        by_path.setdefault(str(path), []).append(tuple(chunk))
    return by_path


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Contents:
    root = tmp_path_factory.mktemp("clean")
    final_corpus(root)
    with Collection.locate(root, create=True) as col:
        col.index([root / "docs"], encoder_factory=using(ENCODER))
        return contents(col)


def assert_consistent(
    col: Collection, before: Contents | None = None, after: Contents | None = None
) -> None:
    """The invariants that must hold after any crash, before anything repairs them; with
    `before` and `after`, each file must hold the chunks of one of the two versions."""
    assert col.problems() == []  # integrity, no orphan vectors or chunks, FTS in step
    for path, chunks in contents(col).items() if before is not None and after is not None else ():
        assert chunks in (before.get(path), after.get(path)), path
    (pending,) = col.store.query(
        "SELECT count(*) FROM chunks c LEFT JOIN vectors v ON v.chunk_id = c.id"
        " WHERE v.chunk_id IS NULL"
    )[0]
    assert col.store.counts()["pending"] == pending  # what index and status report
    rows = col.store.query(
        "SELECT c.id, c.heading, c.text, v.vector FROM vectors v JOIN chunks c ON c.id = v.chunk_id"
        " ORDER BY c.id"
    )
    stored = {row[0]: np.frombuffer(row[3], dtype="<f4") for row in rows}
    if rows:  # every stored vector is the vector of its chunk's current text
        texts = [embedding_text(heading, text) for _, heading, text, _ in rows]
        np.testing.assert_allclose(
            np.stack(list(stored.values())), ENCODER.encode(texts), atol=1e-6
        )
    assert_saved_index_is_safe(col, stored)
    found = col.query("topic3 sentence", encoder_factory=using(ENCODER))
    assert found.hits and found.used == ("hybrid" if stored else "lexical")


def assert_saved_index_is_safe(col: Collection, stored: dict[int, np.ndarray]) -> None:
    """The saved FAISS file, read as it is: it may lag SQLite (chunks deleted or embedded since
    it was saved), but it never holds an id SQLite has not issued, and each of its ids that
    is still embedded has the vector SQLite has (ids are never reused)."""
    saved = VectorIndex.load(col.vectors_path())
    if saved is None:
        return
    issued = col.store.next_chunk_id() - 1
    for chunk_id in saved.ids().tolist():
        assert chunk_id <= issued
        if chunk_id in stored:
            held = saved.index.reconstruct(chunk_id)  # an exact index: IndexIDMap2
            np.testing.assert_allclose(held, stored[chunk_id], atol=1e-6)


def assert_complete(col: Collection, clean: Contents) -> None:
    assert contents(col) == clean  # every file, every chunk, once
    assert col.store.counts()["pending"] == 0
    saved = VectorIndex.load(col.vectors_path())
    chunk_ids = [r[0] for r in col.store.query("SELECT id FROM chunks ORDER BY id")]
    assert saved is not None and saved.ids().tolist() == chunk_ids
    assert [p.name for p in col.folder.iterdir() if "faiss" in p.name] == [
        col.vectors_path().name
    ]  # no temporary file, no file of an older epoch
    assert_consistent(col, clean, clean)


def run_driver(
    root: Path, point: str, delay: float = 0.0, reembed: bool = False
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(DRIVER), str(root), point, str(delay)]
    command += ["reembed"] if reembed else []
    pipe = subprocess.PIPE
    return subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe, text=True)


@pytest.mark.parametrize(
    "point",
    [
        "file-txn:3",
        "scan:7",
        "encode:2",
        "embed:1",
        "faiss-write",
        "faiss-renamed",
        "unlinked reembed",
        "cleared reembed",
        "scan:2 reembed",
        "embed:2 reembed",
    ],
)
def test_killed_at_a_point_reopens_consistent_and_finishes(
    tmp_path: Path, point: str, clean: Contents
) -> None:
    point, _, reembed = point.partition(" ")
    before = indexed_then_edited(tmp_path)
    process = run_driver(tmp_path, point, reembed=bool(reembed))
    _, err = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, err
    if point == "faiss-write":  # it died with the new index under its temporary name
        assert any(".tmp-" in p.name for p in (tmp_path / ".tpsearch").iterdir())
    with Collection.open(tmp_path / ".tpsearch") as col:
        assert_consistent(col, before, clean)
        assert col.store.last_run()["status"] == "running"  # type: ignore[index]
        summary = col.index(encoder_factory=using(ENCODER))
        assert summary.pending == 0
        assert_complete(col, clean)
        assert col.store.query("SELECT status FROM runs ORDER BY id")[-2:] == [
            ("killed",),
            ("completed",),
        ]


@pytest.mark.parametrize("existing", [False, True], ids=["creating", "upgrading"])
def test_killed_while_the_schema_is_written(
    tmp_path: Path, existing: bool, clean: Contents
) -> None:
    """Each schema step is one transaction with its record: a kill leaves the step undone."""
    before: Contents = {}
    if existing:
        before = indexed_then_edited(tmp_path)
        downgrade_to_first_schema(tmp_path / ".tpsearch" / DB_NAME)
    else:
        final_corpus(tmp_path)
    process = run_driver(tmp_path, "migrate")
    _, err = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, err
    if existing:
        with Collection.open(tmp_path / ".tpsearch") as col:  # still readable, not upgraded
            assert_consistent(col, before, clean)
    with Collection.locate(tmp_path, create=True) as col:
        col.index([tmp_path / "docs"], encoder_factory=using(ENCODER))
        assert_complete(col, clean)


def test_an_uninterrupted_driver_run_matches_the_clean_index(
    tmp_path: Path, clean: Contents
) -> None:
    indexed_then_edited(tmp_path)
    out, err = run_driver(tmp_path, "none").communicate(timeout=120)
    assert out.strip() == "completed", err
    with Collection.open(tmp_path / ".tpsearch") as col:
        assert_complete(col, clean)


def test_ctrl_c_of_a_real_run_keeps_what_was_committed(tmp_path: Path, clean: Contents) -> None:
    """SIGINT, as Ctrl-C sends it, while a real process embeds on its worker thread: the run
    stops, is recorded as interrupted, leaves the collection consistent, and the next run
    completes it."""
    before = indexed_then_edited(tmp_path)
    process = run_driver(tmp_path, "sigint", delay=0.2)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "embedding"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert "completed" not in out and "KeyboardInterrupt" in err
    with Collection.open(tmp_path / ".tpsearch") as col:
        assert_consistent(col, before, clean)
        assert col.store.last_run()["status"] == "interrupted"  # type: ignore[index]
        assert col.index(encoder_factory=using(ENCODER)).pending == 0
        assert_complete(col, clean)


@pytest.mark.slow
def test_killed_at_random_moments_again_and_again(tmp_path: Path, clean: Contents) -> None:
    """Edits between runs keep each run busy; kills land wherever they land."""
    root = tmp_path
    indexed_then_edited(root)
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


def test_queries_and_checks_while_a_real_index_reembeds(tmp_path: Path, clean: Contents) -> None:
    """A real `index --reembed` process drops and re-embeds every vector while this process
    queries and checks: every query answers, every check finds nothing wrong."""
    indexed_then_edited(tmp_path)
    with Collection.open(tmp_path / ".tpsearch") as reader:
        runs = len(reader.store.query("SELECT id FROM runs"))
        process = run_driver(tmp_path, "none", delay=0.05, reembed=True)
        while len(reader.store.query("SELECT id FROM runs")) == runs:  # it holds the lock
            assert process.poll() is None, process.communicate()
            time.sleep(0.01)
        modes: set[str] = set()
        answered = 0
        while process.poll() is None:
            result = reader.query("topic3 sentence", encoder_factory=using(ENCODER))
            assert result.hits
            modes.add(result.used)
            assert reader.status(check=True).problems == []  # the FTS part: "not checked"
            answered += 1
        out, err = process.communicate(timeout=60)
        assert out.strip() == "completed", err
        assert answered >= 3 and modes <= {"hybrid", "lexical"}
        assert_complete(reader, clean)
