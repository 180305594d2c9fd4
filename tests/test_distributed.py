"""`tpsearch index --ray` on a real local Ray runtime (2 CPUs), no mocks of Ray.

The runtime starts once for this module (about 6 s); workers find this checkout through
PYTHONPATH in the job's runtime environment.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.corpus import write_corpus
from tests.fakes import HashingEncoder
from tpsearch.cli import app
from tpsearch.collection import Collection
from tpsearch.collection.schema import DB_NAME
from tpsearch.engine.settings import EncoderSettings
from tpsearch.errors import ConfigError, ModelLoadError

ray = pytest.importorskip("ray")

from tpsearch.distributed import RayEncoders, RaySettings, index_on_ray  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
TWO_CPU_WORKERS = RaySettings(workers=2, gpus_per_worker=0)


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[str]:
    """A local Ray runtime with 2 CPUs; yields its address for other processes."""
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="warning",
        runtime_env={"env_vars": {"PYTHONPATH": PYTHONPATH}},
    )
    yield context.address_info["address"]
    ray.shutdown()


class SlowHashingEncoder(HashingEncoder):
    """The hashing encoder, `delay` seconds per group; with `marker`, the first worker to reach
    its second group kills its own process (SIGKILL: no cleanup), once for the whole run."""

    def __init__(self, delay: float, marker: Path | None) -> None:
        super().__init__()
        self.delay, self.marker = delay, marker

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        time.sleep(self.delay)
        if self.marker is not None and self.calls == 1:
            try:
                with open(self.marker, "x") as handle:  # only one worker ever wins
                    handle.write(str(os.getpid()))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().encode(texts, batch_size)


def slow_factory(delay: float, marker: Path | None, settings: EncoderSettings) -> HashingEncoder:
    return SlowHashingEncoder(delay, marker)


def write_pages(root: Path, files: int = 24, paragraphs: int = 6) -> Path:
    docs = root / "docs"
    docs.mkdir(parents=True)
    for f in range(files):
        body = "\n\n".join(
            f"## Part {p}\n\n" + " ".join(f"word{f}x{p}x{w} topic{w % 7}" for w in range(30))
            for p in range(paragraphs)
        )
        (docs / f"page{f:02d}.md").write_text(f"# Page {f}\n\n{body}\n", encoding="utf-8")
    return docs


def stored(col: Collection) -> dict[str, np.ndarray]:
    """Chunk text -> its vector (chunk texts of this corpus are unique)."""
    dim = col.store.get_meta("dim")
    ids, vectors = col.store.all_vectors(dim)
    rows = col.store.chunk_rows(ids.tolist())
    return {rows[int(i)].text: v for i, v in zip(ids, vectors, strict=True)}


def assert_stopped(actors: list[object]) -> None:
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.describe.remote(), timeout=30)  # type: ignore[attr-defined]


def test_cli_index_on_two_ray_workers_equals_the_local_run(
    ray_runtime: str,
    tiny_model: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model("qwen2")
    flags = {"model": str(model), "precision": "fp32", "device": "cpu"}
    local_root, ray_root = tmp_path / "local", tmp_path / "ray"
    write_corpus(local_root)
    write_corpus(ray_root)
    with Collection.locate(local_root, create=True) as col:
        col.index([local_root / "docs"], overrides=flags)
        expected = stored(col)

    monkeypatch.chdir(ray_root)
    monkeypatch.delenv("TPSEARCH_INDEX", raising=False)
    args = ["index", "docs", "--model", str(model), "--precision", "fp32", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--ray", "auto", "--ray-workers", "2"])
    assert result.exit_code == 0, result.output
    assert "3 new" in result.stdout
    with Collection.open(ray_root / ".tpsearch") as col:
        got = stored(col)
        assert col.store.counts()["pending"] == 0
        assert col.problems() == []
        hits = col.query("bearer tokens", mode="semantic", encoder_factory=None).hits
        assert hits  # the Ray-made vectors answer a query embedded in-process
    assert sorted(got) == sorted(expected)  # the same chunks
    cosines = [float(got[text] @ expected[text]) for text in expected]
    assert min(cosines) > 1 - 1e-5


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    ray_runtime: str, tmp_path: Path
) -> None:
    with Collection.locate(tmp_path / "local", create=True) as col:
        col.index([write_pages(tmp_path / "local")], encoder_factory=lambda s: HashingEncoder())
        expected = stored(col)
    docs = write_pages(tmp_path / "ray")
    marker = tmp_path / "killed-worker.pid"
    factory = functools.partial(slow_factory, 0.05, marker)
    with Collection.locate(tmp_path / "ray", create=True) as col:
        with RayEncoders(TWO_CPU_WORKERS, factory) as encoders:
            summary = col.index([docs], encoder_factory=encoders, batch_size=2)
            actors = list(encoders.pools[0].actors)
        assert_stopped(actors)
        counts = col.store.counts()
        assert marker.exists()  # a worker did die, with groups in flight
        assert counts["pending"] == 0  # 0 lost
        assert summary.embedded == counts["chunks"] == counts["embedded"]  # 0 stored twice
        assert col.problems() == []
        got = stored(col)
    assert sorted(got) == sorted(expected)
    for text, vector in got.items():  # each vector is its own chunk's
        assert float(vector @ expected[text]) > 1 - 1e-6


@pytest.mark.slow
def test_a_worker_that_cannot_load_the_model_fails_the_run_cleanly(
    ray_runtime: str, tmp_path: Path
) -> None:
    docs = write_corpus(tmp_path)
    flags = {"model": str(tmp_path / "no-such-model"), "precision": "fp32", "device": "cpu"}
    with Collection.locate(tmp_path, create=True) as col:
        with pytest.raises(ModelLoadError, match=r"Ray worker .* cannot load the model"):
            index_on_ray(col, [docs], ray=TWO_CPU_WORKERS, overrides=flags)
        counts = col.store.counts()
        assert counts["files"] == 3 and counts["embedded"] == 0  # the scan is kept, no vector
        assert counts["pending"] == counts["chunks"] > 0


class CtrlC:
    """Progress that raises KeyboardInterrupt (what Ctrl-C raises) after the first group."""

    def start(self, phase: str, total: int | None) -> None:
        pass

    def advance(self, phase: str, amount: int = 1) -> None:
        if phase == "embed":
            raise KeyboardInterrupt

    def finish(self, phase: str) -> None:
        pass


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_keeps_what_was_committed(
    ray_runtime: str, tmp_path: Path
) -> None:
    docs = write_pages(tmp_path)
    factory = functools.partial(slow_factory, 0.2, None)
    with Collection.locate(tmp_path, create=True) as col:
        with pytest.raises(KeyboardInterrupt), RayEncoders(TWO_CPU_WORKERS, factory) as encoders:
            try:
                col.index([docs], encoder_factory=encoders, batch_size=2, progress=CtrlC())
            finally:
                actors = list(encoders.pools[0].actors)
        assert_stopped(actors)
        counts = col.store.counts()
        assert 0 < counts["embedded"] < counts["chunks"] and col.problems() == []
        col.index(encoder_factory=lambda settings: HashingEncoder())  # the rest, in process
        assert col.store.counts()["pending"] == 0


DRIVER = """
import functools, sys
from pathlib import Path
import ray
from tests.test_distributed import slow_factory, TWO_CPU_WORKERS, PYTHONPATH
from tpsearch.collection import Collection
from tpsearch.distributed import index_on_ray

ray.init(address=sys.argv[1], runtime_env={"env_vars": {"PYTHONPATH": PYTHONPATH}})
root = Path(sys.argv[2])
with Collection.locate(root, create=True) as col:
    index_on_ray(col, [root / "docs"], ray=TWO_CPU_WORKERS,
                 encoder_factory=functools.partial(slow_factory, 0.3, None), batch_size=2)
"""


@pytest.mark.slow
def test_driver_killed_then_a_plain_index_finishes(ray_runtime: str, tmp_path: Path) -> None:
    write_pages(tmp_path)
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, ray_runtime, str(tmp_path)], env=env, cwd=REPO
    )
    database = tmp_path / ".tpsearch"
    try:
        deadline = time.monotonic() + 120
        embedded = 0
        while embedded == 0 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
            if (database / DB_NAME).exists():
                with Collection.open(database) as col:
                    embedded = col.store.counts()["embedded"]
        assert embedded > 0, "the driver never committed a group"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    with Collection.open(database) as col:
        before = col.store.counts()
        assert 0 < before["embedded"] < before["chunks"]  # killed mid-run
    with Collection.locate(tmp_path) as col:
        encoder = HashingEncoder()
        col.index(encoder_factory=lambda settings: encoder)  # plain, in-process
        counts = col.store.counts()
        assert counts["pending"] == 0 and counts["embedded"] == counts["chunks"]
        assert col.problems() == []
        assert encoder.texts_encoded == before["chunks"] - before["embedded"]  # only the rest


def test_one_worker_per_gpu_else_two_cpu_workers() -> None:
    from tpsearch.distributed.pool import _worker_options

    count, options = _worker_options(RaySettings(), {"CPU": 2.0})
    assert (count, options["num_gpus"], options["num_cpus"]) == (2, 0.0, 1)
    count, options = _worker_options(RaySettings(), {"CPU": 64.0, "GPU": 8.0})
    assert (count, options["num_gpus"]) == (8, 1.0)
    assert options["max_restarts"] == options["max_task_retries"] == 3
    count, options = _worker_options(RaySettings(), {"CPU": 1.0})  # a one-core cluster
    assert (count, options["num_cpus"]) == (1, 1)
    with pytest.raises(ConfigError, match=r"3 CPU workers need a core each; .* has 2"):
        _worker_options(RaySettings(workers=3), {"CPU": 2.0})  # Ray would wait forever
