"""The real `tpsearch` CLI with a slow encoder, for tests that watch it on a terminal.

    python tests/slow_driver.py SECONDS_PER_BATCH LOAD_SECONDS tpsearch-arguments...

The encoder reports each batch as the real one does (`encode(..., progress=...)`) and takes
SECONDS_PER_BATCH per batch, as a 135M model does on a slow 2-core machine; loading it takes
LOAD_SECONDS and reports a one-time step through the factory's `phase` callback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from tests.fakes import HashingEncoder
from tpsearch.collection import facade
from tpsearch.engine.settings import EncoderSettings


class SlowEncoder(HashingEncoder):
    def __init__(self, seconds_per_batch: float) -> None:
        super().__init__()
        self.seconds_per_batch = seconds_per_batch

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        for start in range(0, len(texts), batch_size):
            time.sleep(self.seconds_per_batch)
            if progress is not None:
                progress(len(texts[start : start + batch_size]))
        return super().encode(texts, batch_size)


def main(seconds_per_batch: float, load_seconds: float, arguments: list[str]) -> None:
    def factory(
        settings: EncoderSettings, phase: Callable[[str], None] | None = None
    ) -> SlowEncoder:
        if phase is not None:
            phase("converting the test model (once)")
        time.sleep(load_seconds)
        return SlowEncoder(seconds_per_batch)

    facade.default_encoder_factory = factory  # type: ignore[assignment]
    from tpsearch.cli import app

    sys.argv = ["tpsearch", *arguments]
    app()


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:])
