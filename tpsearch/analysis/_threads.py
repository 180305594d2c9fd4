"""How many threads FAISS may use for a piece of work.

FAISS parallelises each call with OpenMP. For one big call that pays; for many small calls
(one per IVF cell, k-means on a few thousand points) the threads mostly wait for each other,
and on a machine whose cores are busy with other work the waiting dominates: measured on a
shared 2-core machine, k-means of 100 points took 0.6 s on two threads and 0.25 ms on one,
and the cell-by-cell range search over 30k vectors 6.2 s against 1.6 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# Multiply-adds per FAISS call below which one thread is faster than several.
SMALL_CALL = 2e8


@contextmanager
def threads_for(work_per_call: float) -> Iterator[None]:
    """One FAISS thread while the calls inside are small; the setting is restored after.

    FAISS's thread count is process-wide, so this is not safe to nest across threads; the
    analysis runs in the caller's thread, as the CLI does.
    """
    import faiss

    before = faiss.omp_get_max_threads()
    if work_per_call < SMALL_CALL:
        faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
