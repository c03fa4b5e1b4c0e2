"""``tune_allocator()``: let a consumer process reuse its large buffers instead of faulting them in again.

Why: a consumer moves buffers of 0.1-4 MB all the time (pulled bodies, decompressed batches, PutLogs bodies).
With several in flight at once, glibc's malloc (default thresholds) hands the freed top of its heap back to
the kernel each time they are all freed, so the next buffers are page-faulted in and zero-filled again
(tests/unit/test_memory.py: eight 4 MB buffers held and freed 20 times fault 20x as often as tuned). Dispatching 400 MB cost ~100,000 minor page faults and a
fifth of the process's CPU was kernel time. With freed memory kept for reuse (mmap threshold 64 MB, trim
threshold 128 MB) the faults halved and CPU per MB dropped by 8-12% (three interleaved runs each,
bench/consumer.py's dispatch handler).

The price: up to ``trim_threshold`` of freed memory may stay with the process instead of going back to the
OS. The setting is process-wide, so sluice never applies it behind a program's back: ``sluice run`` calls it
for its own process; a program using ``AsyncConsumer`` opts in by calling it once (docs/consumer.md).
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["tune_allocator"]

log = logging.getLogger("sluice.consumer")

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


def tune_allocator(mmap_threshold: int = 64 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Raise glibc malloc's mmap and trim thresholds for this process. Returns whether they were applied
    (False on other C libraries and platforms, where it does nothing)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    if not ok:  # e.g. musl, whose mallopt is a stub returning 0
        log.debug("mallopt not supported by this C library; allocator left as it is")
    return ok
