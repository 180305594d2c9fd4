"""Keep the memory of freed tensors for the next batch (glibc's malloc, on Linux).

Embedding on the CPU allocates the same few-megabyte activations for every layer of every
batch. With glibc's defaults such blocks go back to the kernel when freed (blocks past its
mmap threshold, and a heap top past its trim threshold) and come back page by page, each
page faulted in and zero-filled: 50,000-120,000 page faults per batch of 32 chunks for
SmolLM2-135M, 0.1-0.3 s of kernel time per ~1.4 s batch. `keep_freed_memory` raises both
thresholds once, at the first bulk batch (`BULK_TOKENS`), so the process reuses its blocks:
the faults drop to 0-500 per batch, in the main thread and in the embedding thread of
`tpsearch index` alike (115,000 there before), and a batch takes ~7% less time (A/B runs of
benchmarks/real_speed.py's measurement). What it costs: up to `TRIM_THRESHOLD` of freed
memory stays with each malloc arena until the process exits. Queries never reach it, and a
user's own malloc settings (MALLOC_*_ or GLIBC_TUNABLES in the environment) are left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

# A batch of at least this many tokens is bulk work (an index run's, 32 chunks of 48 tokens
# are ~1,900), not a query's: the engine tunes the process for it (here, lite_stack.pack_weights).
BULK_TOKENS = 512
MMAP_THRESHOLD = 32 << 20  # blocks this large and larger are still mapped (glibc < 2.35: max)
TRIM_THRESHOLD = 256 << 20  # freed memory at the heap's top kept for reuse
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_tuned: bool | None = None  # once per process


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); whether they are set."""
    global _tuned
    if _tuned is None:
        _tuned = _tune()
    return _tuned


def _tune() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  # glibc's, not musl's (whose mallopt is inert)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mapped = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    trimmed = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(mapped and trimmed)
