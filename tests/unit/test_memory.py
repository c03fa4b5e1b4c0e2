"""``tune_allocator()`` (src/sluice/consumer/memory.py): freed large buffers are reused, not faulted in again.

Checked by what it is for: a process that, 20 times over, holds eight 4 MB buffers at once (batches in
flight) and frees them takes a page fault per page every time with glibc's defaults (the freed heap top is
trimmed back to the kernel), and once per page after tuning.
Each variant runs in a fresh interpreter, so the setting (process-wide) cannot leak into other tests.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHURN = """
import resource, sys
from sluice.consumer import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tuned" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(20):
    live = [bytearray(4 << 20) for _ in range(8)]  # zero-filled: every page is touched
    del live
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt; elsewhere it is a no-op")
def test_tuned_process_reuses_freed_buffers() -> None:
    _, default = _faults("default")
    applied, tuned = _faults("tuned")
    assert applied == "True"
    pages = 8 * (4 << 20) // 4096
    # By default glibc returns the freed heap top (or the mmapped buffers) to the kernel in many of the 20 rounds;
    # how many depends on its dynamic mmap threshold and on where the heap top lies after the imports (9 of 20
    # with sluice byte-compiled, every round without): what matters is several rounds against one.
    assert default > 4 * pages, f"expected the pages to be faulted in again round after round by default, saw {default}"
    assert tuned < 2 * pages, f"after tuning the freed pages should be reused, saw {tuned} faults"
