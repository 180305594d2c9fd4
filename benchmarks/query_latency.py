"""Warm query latency of a collection of 100k chunks (synthetic text, synthetic vectors).

    python benchmarks/query_latency.py                 # 100k chunks, dim 896 (~2 GB of disk)
    python benchmarks/query_latency.py --chunks 20000 --dim 256

Builds a real collection through `Collection.index`: files of Markdown sections whose words
follow a Zipf law (so BM25 meets short and long posting lists), embedded by a fast encoder that
gives each text a pseudo-random unit vector (the vector part is synthetic; the FAISS search over
it is real). Then one `Collection` object answers queries of 2-5 words, as the Python API does
between calls: the model and the vector index stay loaded ("warm"). Reported per mode: p50,
p90, p99 in milliseconds, query encoding included (here almost free: with the real model, add
one forward pass of a short text). Target: hybrid p50 <= 50 ms at 100k chunks on a CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tpsearch.collection import Collection  # noqa: E402
from tpsearch.engine.encoder import fingerprint_of, l2_normalise  # noqa: E402

SECTIONS_PER_FILE = 50


class RandomEncoder:
    """A unit vector per text, seeded by the text: deterministic, fast, meaningless."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.model_id = "synthetic/random"
        self.settings = {"model": self.model_id, "dim": dim}
        self.fingerprint = fingerprint_of(self.settings)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        rows = [
            np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim) for t in texts
        ]
        return l2_normalise(np.asarray(rows, dtype=np.float32))


def vocabulary(size: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "pa", "zu", "ro"]
    words = []
    for i in range(size):
        word, n = "", i + 1
        while n:
            word += syllables[n % len(syllables)]
            n //= len(syllables)
        words.append(word)
    return words


def write_corpus(root: Path, chunks: int, rng: np.random.Generator, words: list[str]) -> None:
    cdf = np.cumsum(1.0 / np.arange(1, len(words) + 1))  # Zipf
    cdf /= cdf[-1]
    for f in range(chunks // SECTIONS_PER_FILE):
        parts = [f"# Document {f}\n"]
        for s in range(SECTIONS_PER_FILE):
            picks = np.searchsorted(cdf, rng.random(int(rng.integers(40, 90))))
            body = " ".join(words[i] for i in picks)
            parts.append(f"## Section {s}\n\n{body}.\n")
        path = root / "docs" / f"{f // 100:03}" / f"doc{f:05}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(parts), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=896)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    words = vocabulary(20_000)
    encoder = RandomEncoder(args.dim)

    with tempfile.TemporaryDirectory(prefix="tpsearch-latency-") as tmp:
        root = Path(tmp)
        write_corpus(root, args.chunks, rng, words)
        started = time.perf_counter()
        with Collection.locate(root, create=True) as col:
            summary = col.index([root / "docs"], encoder_factory=lambda s: encoder, batch_size=64)
        build_s = time.perf_counter() - started
        queries = [
            " ".join(rng.choice(words[20:5000], size=int(rng.integers(2, 6))))
            for _ in range(args.queries)
        ]
        with Collection.locate(root) as col:
            counts = col.store.counts()
            kind = None
            results = {}
            for mode in ("hybrid", "lexical", "semantic"):
                for text in queries[:5]:  # warm: model, vector index, SQLite pages
                    col.query(text, k=args.k, mode=mode, encoder_factory=lambda s: encoder)
                times = []
                for text in queries:
                    started = time.perf_counter()
                    col.query(text, k=args.k, mode=mode, encoder_factory=lambda s: encoder)
                    times.append((time.perf_counter() - started) * 1000)
                results[mode] = np.percentile(times, [50, 90, 99])
            status = col.status()
            kind = status.vector_index
            sizes = status.bytes_on_disk

    database_mb = sizes["database"] / 1e6
    print(f"collection: {counts['chunks']} chunks in {summary.new} files, dim {args.dim}")
    print(f"vector index {kind}; built in {build_s:.0f} s; database {database_mb:.0f} MB")
    print(f"{args.queries} warm queries of 2-5 words, k={args.k}:")
    for mode, (p50, p90, p99) in results.items():
        print(f"  {mode:<9} p50 {p50:7.1f} ms   p90 {p90:7.1f} ms   p99 {p99:7.1f} ms")
    print(f"hybrid p50 {results['hybrid'][0]:.1f} ms  (target <= 50 ms)")


if __name__ == "__main__":
    main()
