"""Run `Collection.index` in this process and SIGKILL it at a chosen point (for test_crash.py).

    python tests/crash_driver.py ROOT POINT [DELAY] [reembed]

POINT is where the process kills itself, with no chance to clean up:
  scan:N          after the N-th changed file is committed
  file-txn:N      inside the N-th file's transaction (old chunks deleted, new ones not written)
  encode:N        while the N-th group of chunks is being encoded (nothing of it committed)
  embed:N         right after the N-th group of vectors is committed
  faiss-write     with the new FAISS file written to its temporary name, not yet renamed
  faiss-renamed   right after the rename, before anything else
  unlinked        --reembed: the old FAISS file deleted, the vectors not yet dropped
  cleared         --reembed: inside the transaction that drops the vectors
  migrate         inside the transaction of the last schema step (creating or upgrading)
  none            not at all (the run completes)
  sigint          not at all, but print "embedding" after the first group of vectors is
                  committed, for the parent to send SIGINT (Ctrl-C) while the run is busy
DELAY (seconds, default 0) slows each encode call, for the parent to kill at random times.
With `reembed`, the run is `tpsearch index --reembed`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tests.fakes import HashingEncoder
from tpsearch.collection import Collection
from tpsearch.collection.store import Store


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(root: Path, point: str, delay: float, reembed: bool) -> None:
    kind, _, count = point.partition(":")
    target = int(count or 0)

    class Encoder(HashingEncoder):
        def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
            time.sleep(delay)
            if kind == "encode" and self.calls + 1 == target:
                die()
            return super().encode(texts, batch_size)

    class Progress:
        def __init__(self) -> None:
            self.seen = {"scan": 0, "embed": 0}

        def start(self, phase: str, total: int | None) -> None:
            pass

        def advance(self, phase: str, amount: int = 1) -> None:
            if phase in self.seen:
                self.seen[phase] += 1
                if kind == phase and self.seen[phase] == target:
                    die()
                if kind == "sigint" and phase == "embed" and self.seen[phase] == 1:
                    print("embedding", flush=True)

        def finish(self, phase: str) -> None:
            pass

    if kind == "file-txn":
        real_insert = Store.replace_file
        calls = [0]

        def replace_file(self, file, chunks):  # type: ignore[no-untyped-def]
            calls[0] += 1
            if calls[0] != target:
                return real_insert(self, file, chunks)
            with self.db.atomic():
                self.db.execute("DELETE FROM files WHERE path = ?", [file["path"]])
                self.db.table("files").insert(file)
                die()

        Store.replace_file = replace_file  # type: ignore[method-assign]
    if kind in ("faiss-write", "faiss-renamed"):
        import tpsearch.collection.vector_index as vectors

        real_replace = os.replace

        def replace(src, dst):  # type: ignore[no-untyped-def]
            if kind == "faiss-write":
                die()
            real_replace(src, dst)
            die()

        vectors.os.replace = replace  # type: ignore[attr-defined]

    if kind == "unlinked":
        from tpsearch.collection.vector_cache import VectorCache

        VectorCache.forget = lambda self: die()  # type: ignore[method-assign]
    if kind == "cleared":
        real_clear = Store.clear_vectors

        def clear_vectors(self):  # type: ignore[no-untyped-def]
            real_clear(self)
            die()

        Store.clear_vectors = clear_vectors  # type: ignore[method-assign]
    if kind == "migrate":
        from tpsearch.collection.schema import migrations

        step = migrations._migrations[-1]  # sqlite-utils' list of steps
        real_step = step.fn

        def dying_step(db):  # type: ignore[no-untyped-def]
            real_step(db)
            die()

        step.fn = dying_step

    encoder = Encoder()
    first = not (root / ".tpsearch").exists()
    with Collection.locate(root, create=True) as col:
        col.index(
            [root / "docs"] if first else None,  # else the remembered folder
            encoder_factory=lambda settings: encoder,
            progress=Progress(),
            batch_size=1,
            reembed=reembed,
        )
    print("completed")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        sys.argv[2],
        float(sys.argv[3]) if len(sys.argv) > 3 else 0.0,
        len(sys.argv) > 4 and sys.argv[4] == "reembed",
    )
