"""`tpsearch index` throughput against the encoder alone, and the cost of a no-change re-run.

    python benchmarks/index_throughput.py --corpus ../shared/data/corpus/fastapi-docs
    python benchmarks/index_throughput.py --encoder standin --standin-layers 8 --limit-files 40

Measured in one run, on a copy of the corpus in a temporary folder:
  1. end to end: a fresh `Collection.index` (walk, read, chunk, SQLite + FTS5, encode, FAISS);
  2. the encoder alone on the same chunks, in one `encode` call (one global sort by length);
     1 and 2 alternate (--rounds, each 1 on a fresh collection), 2 first and last: this
     machine's speed drifts by 10-15% within minutes, so the best time of each is compared,
     and each end-to-end run also with the encoder runs just before and after it;
  3. a no-change re-run, in process and as a real `python -m tpsearch index` process.
The model is loaded once, before 1, and its load time is reported apart: both throughputs are
for encoding, not loading. Ratios printed: throughput (target >= 0.90), re-run (target < 0.05).

Encoders: `tp` (the Token Prepending engine; --model/--precision as for tpsearch), `standin` (a
random-weight Qwen2 model of a chosen size through plain transformers with mean pooling: the
cost of a decoder forward pass without the engine; smaller than the real model, so its ratio is
a lower bound), `hashing` (no model at all: the harshest case, pure overhead).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes import HashingEncoder  # noqa: E402
from tpsearch.collection import Collection  # noqa: E402
from tpsearch.collection.chunking import embedding_text  # noqa: E402
from tpsearch.engine.encoder import Encoder, fingerprint_of, l2_normalise  # noqa: E402
from tpsearch.engine.settings import EncoderSettings  # noqa: E402


class StandInEncoder:
    """Plain transformers forward + mean pooling over a random-weight model: cost only."""

    def __init__(self, path: Path, max_length: int = 512) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
        self.max_length = max_length
        self.model_id = f"standin:{path.name}"
        self.dim = int(self.model.config.hidden_size)
        self.settings = {"model": self.model_id, "pooling": "mean"}
        self.fingerprint = fingerprint_of(self.settings)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        import torch

        with torch.inference_mode():  # per call: grad mode is per thread, and tpsearch
            return self._encode(texts, batch_size)  # encodes on a worker thread

    def _encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[rows] = pooled.float().numpy()
        return l2_normalise(out)


def make_encoder(args: argparse.Namespace, workdir: Path) -> Encoder:
    if args.encoder == "hashing":
        return HashingEncoder(dim=args.dim)
    if args.encoder == "standin":
        from tests.tinymodels import save_tiny_model

        shape = {
            "hidden_size": args.standin_hidden,
            "intermediate_size": args.standin_hidden * 4,
            "num_hidden_layers": args.standin_layers,
            "num_attention_heads": max(2, args.standin_hidden // 64),
            "num_key_value_heads": max(1, args.standin_hidden // 128),
        }
        return StandInEncoder(save_tiny_model(workdir / "standin", "qwen2", **shape))
    from tpsearch.engine.token_prepending import TPEncoder

    settings = EncoderSettings().with_overrides(
        model=args.model, precision=args.precision, device=args.device
    )
    encoder: Encoder = TPEncoder(settings)
    return encoder


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def copy_corpus(corpus: Path, target: Path, limit: int | None) -> Path:
    if limit is None:
        shutil.copytree(corpus, target)
        return target
    texts = sorted(p for p in corpus.rglob("*.md") if p.is_file())[:limit]
    for path in texts:
        dest = target / path.relative_to(corpus)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "../shared/data/corpus/fastapi-docs")
    parser.add_argument("--encoder", choices=["tp", "standin", "hashing"], default="tp")
    parser.add_argument("--model", default=None, help="for --encoder tp")
    parser.add_argument("--precision", default=None, help="for --encoder tp")
    parser.add_argument("--device", default=None, help="for --encoder tp")
    parser.add_argument("--dim", type=int, default=896, help="for --encoder hashing")
    parser.add_argument("--standin-layers", type=int, default=8)
    parser.add_argument("--standin-hidden", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit-files", type=int, default=None, help="only the first N .md")
    parser.add_argument("--rounds", type=int, default=2, help="end-to-end runs (>= 1)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    with tempfile.TemporaryDirectory(prefix="tpsearch-bench-") as tmp:
        workdir = Path(tmp)
        docs = copy_corpus(args.corpus.resolve(), workdir / "docs", args.limit_files)
        started = time.perf_counter()
        encoder = make_encoder(args, workdir)
        load_s = time.perf_counter() - started
        encoder.encode(["warm up the encoder once"], args.batch_size)

        # The chunks, from a throwaway index with the hashing encoder (cheap): the encoder alone
        # is timed on them before and after the real run, and the faster time is kept, so
        # that a busy machine cannot flatter the ratio.
        with Collection.locate(workdir / "chunks-only", create=True) as col:
            col.index([docs], encoder_factory=lambda s: HashingEncoder(), batch_size=256)
            rows = col.store.query("SELECT heading, text FROM chunks ORDER BY id")
        texts = [embedding_text(heading, text) for heading, text in rows]
        encoder_times = [timed(lambda: encoder.encode(texts, args.batch_size))]
        end_to_end_times = []
        for round_ in range(args.rounds):
            collection = workdir / f"run{round_}"
            collection.mkdir()
            with Collection.locate(collection, create=True) as col:
                started = time.perf_counter()
                first = col.index(
                    [docs], encoder_factory=lambda s: encoder, batch_size=args.batch_size
                )
                end_to_end_times.append(time.perf_counter() - started)
                assert col.store.query("SELECT count(*) FROM chunks")[0][0] == len(texts)
            encoder_times.append(timed(lambda: encoder.encode(texts, args.batch_size)))
        encoder_s, end_to_end_s = min(encoder_times), min(end_to_end_times)
        paired = [
            (encoder_times[i] + encoder_times[i + 1]) / 2 / end_to_end_times[i]
            for i in range(args.rounds)
        ]

        with Collection.locate(collection) as col:  # a fresh object, as a new process would open
            started = time.perf_counter()
            again = col.index(encoder_factory=lambda s: encoder)
            rerun_s = time.perf_counter() - started
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "tpsearch", "index", "--quiet"],
            cwd=collection,
            env=env,
            check=True,
            capture_output=True,
        )
        rerun_process_s = time.perf_counter() - started

    chunks = len(texts)
    print(f"encoder: {args.encoder} ({encoder.model_id}, dim {encoder.dim}); load {load_s:.1f} s")
    print(f"corpus: {first.new} files, {chunks} chunks; first run: {first.line()}")
    print(f"re-run: {again.line()}")
    print(
        f"end to end      {end_to_end_s:8.2f} s  {chunks / end_to_end_s:8.1f} chunks/s  (best of "
        f"{', '.join(f'{t:.2f}' for t in end_to_end_times)} s)"
    )
    print(
        f"encoder alone   {encoder_s:8.2f} s  {chunks / encoder_s:8.1f} chunks/s  (best of "
        f"{', '.join(f'{t:.2f}' for t in encoder_times)} s)"
    )
    print(f"re-run          {rerun_s:8.2f} s  in process")
    print(f"re-run          {rerun_process_s:8.2f} s  as `python -m tpsearch index`")
    print(
        f"throughput ratio (end to end / encoder alone): {encoder_s / end_to_end_s:.3f}  (>= 0.90)"
        f"  best against best"
    )
    print(
        f"  each end-to-end run against the encoder runs beside it: "
        f"{', '.join(f'{r:.3f}' for r in paired)}"
    )
    print(f"re-run ratio (in process / first run):         {rerun_s / end_to_end_s:.4f}  (< 0.05)")
    process_ratio = rerun_process_s / end_to_end_s
    print(f"re-run ratio (process / first run):            {process_ratio:.4f}  (< 0.05)")


if __name__ == "__main__":
    main()
