"""Steady host-memory allocation for CPU inference: glibc malloc's dynamic mmap threshold.

Floor 1 of the engine, called once by `ModelRunner` on a CPU device. A CPU decode step
allocates and frees temporaries of a few MB (the block gathers of paged attention,
attention workspaces). glibc serves blocks above its mmap threshold with a fresh
`mmap` and returns them with `munmap`, so every step pays page faults to zero them again;
and the threshold moves by itself (it rises to the size of the largest block freed),
so the same step can take 2x longer in one run than in the next depending on what ran
before. Measured here (tiny model, 32 sequences of 200 tokens, one thread): a decode
step took 21 ms before and 12.4 ms after, and step time became close to linear in the
batch size, which the simulator's step-time model assumes. vLLM's CPU backend gets the
same effect by preloading tcmalloc; this needs no extra library.

Fixing both thresholds keeps freed memory in the heap for reuse: resident memory stays
near its peak instead of shrinking after a burst, which is what a serving process wants.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

@functools.cache
def steady_malloc() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once; later calls are no-ops).

    Returns:
        True when the thresholds are set (Linux with glibc), False elsewhere (macOS,
        Windows, musl), where nothing is changed.
    """
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
                mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return ok
