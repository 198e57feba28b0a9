"""Process-level tuning for the run command: the allocator, the interpreter's thread switch
interval, and the peak memory the run summary reports. Nothing here changes what is shipped."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# The stream's items and decisions hold their org's run object, so the cyclic collector keeps
# them tracked and a young-generation collection every 700 allocations walks each page's
# events again and again; they are freed by reference counting, not by the collector, so a
# larger first threshold changes no memory bound, only how often that walk happens.
GC_FIRST_THRESHOLD = 50_000

# three threads share the GIL (fetch+parse, batch, post+record); a short switch interval lets
# the I/O threads resume soon after their socket answers
SWITCH_INTERVAL_S = 0.001


def tame_malloc() -> None:
    """Keep RSS flat on glibc: a fixed mmap threshold (so every page-sized buffer goes back
    to the kernel when freed, instead of glibc raising the threshold and growing the heap)
    and few per-thread arenas. Best effort; a no-op elsewhere."""
    if os.environ.get("DI2SIEM_NO_MALLOPT"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 4 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-1, 16 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


@contextmanager
def tuned_process() -> Iterator[None]:
    """The allocator tamed for good; while the block runs, the switch interval short and the
    cyclic collector's first threshold high (what start-up made moved out of its sight)."""
    tame_malloc()
    switch = sys.getswitchinterval()
    thresholds = gc.get_threshold()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.freeze()
    gc.set_threshold(GC_FIRST_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        sys.setswitchinterval(switch)


def peak_rss_mb() -> float | None:
    """This process's own peak RSS (VmHWM; unlike ru_maxrss it excludes the pre-exec image
    of the parent that forked us)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None
