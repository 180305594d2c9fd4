"""Embedding throughput of `tpsearch index --ray` against in process, same corpus and model.

    python benchmarks/ray_throughput.py --limit-files 40 --standin 256     # a 6-layer stand-in
    python benchmarks/ray_throughput.py --limit-files 20                   # smollm2-135m (slow)

Each run indexes a fresh copy of the corpus (the first --limit-files files, sorted) with the
same encoder settings; throughput is chunks per second of encoding, from the moment the model
is loaded (in process) or every worker has loaded it (Ray) to the last group committed, so
model and actor start-up are reported apart. Order: in process, Ray with 1 worker, twice, then
Ray with 2 workers (this shared machine drifts: the best run of each is compared).
`--standin H` uses a random-weight Qwen2 of hidden size H and 6 layers (tests/tinymodels.py)
through the real engine instead of --model: groups take seconds, not minutes, on a CPU.
Ray runs on a local runtime, `ray.init(num_cpus=N)` with N = --cpus; one worker gets all N
cores, two get N/2 each. Target: 1 worker / in process >= 0.85.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tpsearch.collection import Collection  # noqa: E402
from tpsearch.distributed import RaySettings, index_on_ray  # noqa: E402


class Clock:
    """Progress that timestamps the end of loading and of embedding."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def start(self, phase: str, total: int | None) -> None:
        self.times.setdefault(f"{phase}-start", time.perf_counter())

    def advance(self, phase: str, amount: int = 1) -> None:
        pass

    def finish(self, phase: str) -> None:
        self.times[f"{phase}-end"] = time.perf_counter()


def run(corpus: list[Path], flags: dict[str, str], batch: int, workers: int | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for path in corpus:
            shutil.copy(path, root / path.name)
        clock = Clock()
        with Collection.locate(root, create=True) as col:
            started = time.perf_counter()
            options = {"overrides": flags, "batch_size": batch, "progress": clock}
            if workers is None:
                summary = col.index([root], **options)
            else:
                ray = RaySettings(workers=workers, gpus_per_worker=0)
                summary = index_on_ray(col, [root], ray=ray, **options)
            encode_s = clock.times["embed-end"] - clock.times["load-end"]
            return {
                "chunks": summary.embedded,
                "load_s": clock.times["load-end"] - started,
                "encode_s": encode_s,
                "rate": summary.embedded / encode_s,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "data" / "fastapi-docs")
    parser.add_argument("--limit-files", type=int, default=20)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--standin", type=int, default=0, help="hidden size of a stand-in")
    args = parser.parse_args()
    corpus = sorted(p for p in args.corpus.rglob("*.md") if p.is_file())[: args.limit_files]
    model = args.model
    if args.standin:
        from tests.tinymodels import save_tiny_model

        shape = {"hidden_size": args.standin, "intermediate_size": 4 * args.standin}
        shape |= {"num_hidden_layers": 6, "num_attention_heads": args.standin // 32}
        shape |= {"num_key_value_heads": args.standin // 64}
        model = str(save_tiny_model(Path(tempfile.mkdtemp()) / "standin", "qwen2", **shape))
    flags = {"model": model, "precision": args.precision, "device": "cpu"}

    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="warning")
    results = []
    order = [("in process", None), ("ray 1", 1)] * 2 + [("ray 2", 2)]
    for name, workers in order:
        result = run(corpus, flags, args.batch_size, workers)
        results.append((name, result))
        line = f"{name:<11} {result['chunks']} chunks  load {result['load_s']:5.1f} s  "
        line += f"encode {result['encode_s']:6.1f} s  {result['rate']:6.2f} chunks/s"
        print(line, flush=True)
    ray.shutdown()
    best = {name: max(r["rate"] for n, r in results if n == name) for name, _ in order}
    for name in ("ray 1", "ray 2"):
        print(f"{name} / in process (best runs): {best[name] / best['in process']:.3f}")
    print("target: ray 1 / in process >= 0.85")


if __name__ == "__main__":
    main()
