"""probebench.allocator: a loop that allocates and frees the same buffers stops
faulting them in afresh every time (glibc; this project's machines run it)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "reuse":
    from probebench.allocator import reuse_freed_memory
    assert reuse_freed_memory()
def step():  # ten 10 MiB blocks alive together, then freed: a training step's activations
    blocks = [np.ones(10 * 2**20 // 8) for _ in range(10)]
    return sum(float(b[-1]) for b in blocks)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def minor_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_reused_memory_is_not_faulted_in_again():
    default, reused = minor_faults("default"), minor_faults("reuse")
    pages_per_step = 100 * 2**20 // 4096
    # glibc's own thresholds give part of the 100 MiB back to the kernel, step after step (~20% here)
    assert default > 2 * pages_per_step
    assert reused < default / 20
