"""A pool of Ray actors that each load the encoder once and turn groups of texts into vectors.

The pool looks like one encoder to the indexing code (`model_id`, `dim`, `fingerprint`,
`settings`, `encode`), plus `encode_groups`, which keeps every worker busy with the groups of
one length-sorted window and hands back each group's vectors as soon as it is done. The driver
commits them in the same groups, one transaction each, as a local run would.

Faults are Ray's to handle: an actor that dies (killed, out of memory, its node lost) is
restarted up to `max_restarts` times and the calls it had not answered are retried on it
(`max_task_retries`), so a group is never lost, and since the driver commits a group only
once, never stored twice. Every answer carries the fingerprint of the worker that computed it:
a restarted worker that loaded something else stops the run before its vectors are stored.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from tpsearch.collection.facade import EncoderFactory, default_encoder_factory
from tpsearch.engine.settings import EncoderSettings
from tpsearch.errors import ConfigError, EncodingError, ModelLoadError, TruncationWarning

if TYPE_CHECKING:
    from tpsearch.collection import Collection
    from tpsearch.collection.indexing import IndexSummary

POLL_SECONDS = 0.05  # how often a waiting driver looks at `stop` (Ctrl-C, an error)
IN_FLIGHT_PER_WORKER = 2  # a worker starts its next group while its last vectors travel back


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide to embed."""

    address: str = "auto"  # auto: ray.init() (the cluster in RAY_ADDRESS, else a local one)
    workers: int | None = None  # None: one per GPU of the cluster, or 2 CPU workers without
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0
    max_restarts: int = 3  # per worker; its unanswered groups are retried as often

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--ray-workers must be at least 1, got {self.workers}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ConfigError(f"GPUs per worker cannot be negative, got {self.gpus_per_worker}")


@dataclass(frozen=True)
class WorkerReport:
    """What a worker loaded, or why it could not."""

    fingerprint: str
    model_id: str
    dim: int
    settings: dict[str, Any]
    resolved: EncoderSettings | None
    host: str
    failure: str | None = None


class EncoderWorker:
    """The actor: one encoder, loaded when the actor starts (and again if Ray restarts it)."""

    def __init__(self, factory: EncoderFactory, settings: EncoderSettings) -> None:
        import socket

        self.host = socket.gethostname()
        self.failure: str | None = None
        try:
            self.encoder = factory(settings)
        except Exception as error:  # reported by `describe`, with the driver's wording
            self.failure = str(error) or type(error).__name__

    def describe(self) -> WorkerReport:
        if self.failure is not None:
            return WorkerReport("", "", 0, {}, None, self.host, self.failure)
        encoder = self.encoder
        resolved = getattr(encoder, "resolved_settings", None)
        return WorkerReport(
            encoder.fingerprint,
            encoder.model_id,
            encoder.dim,
            dict(encoder.settings),
            resolved if isinstance(resolved, EncoderSettings) else None,
            self.host,
        )

    def encode(self, texts: Sequence[str], batch_size: int) -> tuple[str, np.ndarray, int]:
        """(fingerprint, vectors, truncated texts) for one group."""
        if self.failure is not None:
            raise ModelLoadError(self.failure)
        with warnings.catch_warnings():  # counted and reported once, by the driver
            warnings.filterwarnings("ignore", category=TruncationWarning)
            vectors = self.encoder.encode(texts, batch_size)
        stats = getattr(self.encoder, "last_stats", None)
        return self.encoder.fingerprint, vectors, int(getattr(stats, "truncated", 0))


class RayEncoderPool:
    """Started Ray actors that all report the same fingerprint; `close()` stops them."""

    def __init__(self, actors: list[Any], report: WorkerReport, restarts: int) -> None:
        self.actors = actors
        self.report = report
        self.restarts = restarts
        self.resolved_settings = report.resolved

    @property
    def model_id(self) -> str:
        return self.report.model_id

    @property
    def dim(self) -> int:
        return self.report.dim

    @property
    def fingerprint(self) -> str:
        return self.report.fingerprint

    @property
    def settings(self) -> Mapping[str, object]:
        return self.report.settings

    @property
    def parallel(self) -> int:
        return len(self.actors)

    @classmethod
    def start(
        cls, ray_settings: RaySettings, factory: EncoderFactory, settings: EncoderSettings
    ) -> RayEncoderPool:
        """Start the workers and wait until each has loaded the encoder.

        Raises ModelLoadError when a worker cannot load it, or when workers disagree on the
        fingerprint (different model files or library versions on different nodes).
        """
        import ray

        count, options = _worker_options(ray_settings, ray.cluster_resources())
        actor_class: Any = ray.remote(EncoderWorker).options(**options)
        actors = [actor_class.remote(factory, settings) for _ in range(count)]
        try:
            reports: list[WorkerReport] = ray.get([a.describe.remote() for a in actors])
            failed = [r for r in reports if r.failure is not None]
            if failed:
                raise ModelLoadError(
                    f"a Ray worker on {failed[0].host} cannot load the model: "
                    f"{failed[0].failure} (a local path must be visible to every worker)"
                )
            prints = sorted({f"{r.fingerprint} on {r.host}" for r in reports})
            if len({r.fingerprint for r in reports}) > 1:
                raise ModelLoadError(
                    "the Ray workers loaded different encoders (fingerprints "
                    + ", ".join(prints)
                    + "): give every node the same model files and tpsearch version"
                )
        except BaseException:
            _kill(actors)
            raise
        return cls(actors, reports[0], ray_settings.max_restarts)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """One group, on one worker (the pool also works as a plain encoder)."""
        results = list(self.encode_groups([list(texts)], batch_size, threading.Event()))
        return results[0][1] if results else np.zeros((0, self.dim), np.float32)

    def encode_groups(
        self, groups: Sequence[list[str]], batch_size: int, stop: threading.Event
    ) -> Iterator[tuple[int, np.ndarray, int]]:
        """(position, vectors, truncated) for each group, in the order they finish."""
        import ray

        waiting = list(range(len(groups)))[::-1]  # popped from the end: in window order
        running: dict[Any, tuple[int, Any]] = {}  # reference -> (position, actor)

        def submit(actor: Any) -> None:
            position = waiting.pop()
            running[actor.encode.remote(groups[position], batch_size)] = (position, actor)

        for _ in range(IN_FLIGHT_PER_WORKER):
            for actor in self.actors:
                if waiting:
                    submit(actor)
        while running:
            if stop.is_set():
                for reference in running:  # queued ones; close() kills the rest
                    with contextlib.suppress(Exception):  # one that has just finished
                        ray.cancel(reference)
                return
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            for reference in done:
                position, actor = running.pop(reference)
                fingerprint, vectors, truncated = self._answer(reference)
                if fingerprint != self.fingerprint:
                    raise ModelLoadError(
                        f"a restarted Ray worker loaded another encoder (fingerprint "
                        f"{fingerprint}, the run's is {self.fingerprint}): nothing of its "
                        "work was stored"
                    )
                yield position, vectors, truncated
                if waiting:
                    submit(actor)

    def _answer(self, reference: Any) -> tuple[str, np.ndarray, int]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            answer: tuple[str, np.ndarray, int] = ray.get(reference)
        except RayActorError as error:
            raise EncodingError(
                f"a Ray worker died and was restarted {self.restarts} times already, or "
                f"cannot be restarted ({_last_line(error)}); the groups it had not finished "
                "stay pending: run `tpsearch index` again"
            ) from None
        except RayTaskError as error:
            cause = error.cause if isinstance(error.cause, Exception) else None
            if cause is not None:
                raise cause from None  # the encoder's own error, as a local run raises it
            raise
        return answer

    def close(self) -> None:
        _kill(self.actors)
        self.actors = []


def _worker_options(ray_settings: RaySettings, resources: Mapping[str, float]) -> tuple[int, dict]:
    """How many actors, and the resources and restart policy of each."""
    cluster_gpus = int(resources.get("GPU", 0))
    cluster_cpus = int(resources.get("CPU", 1))
    gpus = ray_settings.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster_gpus and ray_settings.workers is None else 0.0
    if ray_settings.workers is not None:
        count = ray_settings.workers
    else:
        count = max(1, int(cluster_gpus / gpus)) if gpus else min(2, max(1, cluster_cpus))
    if gpus and gpus * count > cluster_gpus:
        raise ConfigError(
            f"{count} workers of {gpus:g} GPU need {gpus * count:g} GPUs; the Ray cluster has "
            f"{cluster_gpus}: lower --ray-workers"
        )
    if not gpus and count > cluster_cpus:  # Ray would wait for cores forever, saying nothing
        raise ConfigError(
            f"{count} CPU workers need a core each; the Ray cluster has {cluster_cpus}: "
            "lower --ray-workers"
        )
    options: dict[str, Any] = {
        "max_restarts": ray_settings.max_restarts,
        "max_task_retries": ray_settings.max_restarts,
        # CPU workers share the cluster's cores (Ray sets each one's thread count to this).
        "num_cpus": 1 if gpus else max(1, cluster_cpus // count),
        "num_gpus": gpus,
    }
    return count, options


def _kill(actors: list[Any], rounds: int = 5) -> None:
    """Stop the workers for good. A kill that reaches a worker while Ray restarts it (after
    it died mid-run) can be lost, the worker coming back up: each is asked once more, and
    killed again while it still answers."""
    import ray

    for _ in range(rounds):
        for actor in actors:
            ray.kill(actor, no_restart=True)
        alive = []
        for actor in actors:
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=10)
            except ray.exceptions.RayActorError:
                continue  # dead, as wanted
            except Exception:  # still starting (a timeout), or an answer from a restarted one
                pass
            alive.append(actor)
        if not alive:
            return
        actors = alive


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class RayEncoders:
    """An encoder factory whose encoders are Ray pools; `with` it, so that they stop.

    Connects to Ray on first use (and disconnects at the end, if it connected): `address`
    "auto" is `ray.init()`, anything else `ray.init(address)`. A runtime already started by
    the caller (`ray.init(...)` in a script or a test) is used as it is.
    """

    def __init__(self, ray_settings: RaySettings, factory: EncoderFactory | None = None) -> None:
        self.ray_settings = ray_settings
        self.factory = factory or default_encoder_factory
        self.pools: list[RayEncoderPool] = []
        self.connected = False
        self.closed = False
        self.lock = threading.Lock()  # pools start in the indexing thread, stop in the caller's

    def __call__(self, settings: EncoderSettings) -> RayEncoderPool:
        self._connect()
        pool = RayEncoderPool.start(self.ray_settings, self.factory, _visible(settings))
        with self.lock:
            if self.closed:  # Ctrl-C while the workers loaded: stop them now, not at exit
                pool.close()
                raise ModelLoadError("the run stopped while the Ray workers loaded the model")
            self.pools.append(pool)
        return pool

    def _connect(self) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                'Ray is not installed: pip install "tpsearch[ray]" (or run without --ray)'
            ) from None
        if ray.is_initialized():
            return
        address = None if self.ray_settings.address == "auto" else self.ray_settings.address
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ConfigError(f"cannot connect to Ray at {address or 'auto'}: {error}") from None
        self.connected = True

    def __enter__(self) -> RayEncoders:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self.lock:
            self.closed = True
            for pool in self.pools:
                pool.close()
            self.pools = []
        if self.connected:
            import ray

            ray.shutdown()
            self.connected = False


def _visible(settings: EncoderSettings) -> EncoderSettings:
    """A model folder given relative to the driver's folder, made absolute for the workers."""
    import dataclasses

    model = Path(settings.model)
    if not model.is_absolute() and model.exists():
        return dataclasses.replace(settings, model=str(model.resolve()))
    return settings


def index_on_ray(
    col: Collection,
    paths: Sequence[Path | str] | None = None,
    *,
    ray: RaySettings | None = None,
    encoder_factory: EncoderFactory | None = None,
    **options: Any,
) -> IndexSummary:
    """`Collection.index`, with the encoding done by a pool of Ray workers (stopped after)."""
    with RayEncoders(ray or RaySettings(), encoder_factory) as factory:
        return col.index(paths, encoder_factory=factory, **options)
