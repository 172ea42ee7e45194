"""Keep freed memory in the process for reuse (glibc's malloc only).

glibc serves a block larger than its mmap threshold with a fresh mapping and,
once more than its trim threshold lies free at the top of the heap, hands
that memory back to the kernel. Both thresholds start small (128 KiB) and
move with the allocation pattern. A training step allocates and frees tens
of MiB of activations and gradients: under those moving thresholds glibc
ended up returning them to the kernel every step and faulting them back in as
zeroed pages the next. Measured when this module was written, on the
default suite's cnn (1 torch thread, 80 steps of batch 128,
``tests/benchmarks/test_allocator_speed.py``): 594,000 minor page faults and
1.17 s of system time with glibc's defaults, 43,000 and 0.19 s with the
thresholds fixed here (0.85x the CPU seconds). Since the cnn pools through
``MaxPool2x2`` its allocations no longer set glibc off (the same benchmark,
nothing else running: 44,000 faults with glibc's defaults, 48,000 with
these, and no CPU seconds saved: 1.05x), but the RealNVP's still do: its fit
task in the default suite took 26.7 CPU s with 887,000 faults and 2.1 s of
system time under glibc's defaults, 24.9 s with 75,000 faults and 0.2 s with
these thresholds (``OMP_NUM_THREADS=1 python
tests/benchmarks/fit_task_seconds.py --only realnvp``, with and without
``--reuse``). The weights are the same to the bit either
way (where a tensor lives does not change how torch computes it).

``reuse_freed_memory`` fixes the mmap threshold at its largest value
(32 MiB: bigger blocks are still mapped and unmapped) and the trim threshold
at ``TRIM_BYTES``. Freed memory then stays in the heap up to that much; the
peak resident size is that of the largest working set, as before.
"""

from __future__ import annotations

import ctypes
import functools
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_BYTES = 32 * 1024 * 1024  # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit systems
TRIM_BYTES = 1024 * 1024 * 1024


@functools.cache
def reuse_freed_memory() -> bool:
    """Fix glibc's malloc thresholds in this process (see the module's
    docstring), once; False, and nothing changed, where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:  # the process's own symbols, libc's among them (no library search: it runs ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
