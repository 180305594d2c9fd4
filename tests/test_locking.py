"""One writer at a time; a killed writer never leaves the collection locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tpsearch.collection.locking import WriterLock
from tpsearch.errors import CollectionError

HOLD = """
import sys, time
from pathlib import Path
from tpsearch.collection.locking import WriterLock
lock = WriterLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_told_who_holds_the_lock(tmp_path: Path) -> None:
    with WriterLock(tmp_path), pytest.raises(CollectionError) as caught:
        WriterLock(tmp_path).acquire()
    assert f"pid {os.getpid()}" in str(caught.value)
    with WriterLock(tmp_path):  # released on exit: the next writer gets it
        pass


@pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")
def test_a_killed_writer_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(CollectionError, match=f"pid {holder.pid}"):
            WriterLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with WriterLock(tmp_path):  # the dead owner's lock went with it
        pass
