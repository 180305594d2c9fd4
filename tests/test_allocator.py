"""Freed memory kept for the next batch (engine/allocator.py): fewer page faults in bulk work,
a user's own malloc settings respected. Each case runs in a process of its own (the setting
is the process's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

_FAULTS = """
import json, resource, sys
import torch
from tpsearch.engine import allocator

def step():  # a layer's worth of large activations (28 MB each): made, used, freed
    x = torch.ones(7 << 20); y = x * 2; z = y + x
    return float(z[0])

def faults():  # page faults of eight steps, after three to settle
    for _ in range(3): step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8): step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = faults()
tuned = allocator.keep_freed_memory()
print(json.dumps([first, tuned, faults()]))
"""


def _run(script: str, **env: str) -> list[object]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_freed_block_is_reused_instead_of_faulted_in_again() -> None:
    before, tuned, after = _run(_FAULTS)
    assert tuned is True
    assert before > 0, "glibc's default: 28 MB blocks go back to the kernel and come again"
    # kept: freed blocks serve the next ones (no fault at all in most runs; where an aligned
    # request does not fit the block freed before it, the heap grows once more)
    assert after < before / 4


def test_a_users_own_malloc_settings_are_left_alone() -> None:
    before, tuned, after = _run(_FAULTS, MALLOC_TRIM_THRESHOLD_="131072")
    assert tuned is False
    assert after > before / 2


def test_only_a_bulk_batch_tunes_the_process(tmp_path: Path) -> None:
    from tests.tinymodels import save_tiny_model

    folder = save_tiny_model(tmp_path / "m", "llama", dtype="bfloat16")
    script = f"""
import json
from tpsearch import EncoderSettings, TPEncoder
from tpsearch.engine import allocator
encoder = TPEncoder(EncoderSettings(model={str(folder)!r}, precision="bf16", device="cpu"))
encoder.encode(["one short query"])
query = allocator._tuned
encoder.encode(["a passage of an index run, several words long"] * 64, batch_size=64)
print(json.dumps([query, allocator._tuned]))
"""
    assert _run(script) == [None, True]
