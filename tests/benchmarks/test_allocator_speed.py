"""The default suite's ``cnn`` trained with glibc's own malloc thresholds and
with ``probebench.allocator.reuse_freed_memory``, each in a child process on
one torch thread (as a fit worker trains it), in one run.

80 steps of batch 128 (10 steps per epoch, 8 epochs: the default suite's
epochs and one-cycle schedule on fewer images). Tracked (extra_info):
``ratio_cpu_reuse_over_default`` (user + system seconds),
``ratio_faults_reuse_over_default`` (minor page faults) and each way's
seconds and faults. Asserted: both ways give the same weights to the bit.
Run with `pytest tests/benchmarks/test_allocator_speed.py --benchmark-only -s`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

TRAIN = """
import hashlib, json, resource, sys
import torch
torch.set_num_threads(1)
if sys.argv[1] == "reuse":
    from probebench.allocator import reuse_freed_memory
    assert reuse_freed_memory()
from probebench.pipeline.train import fit
from probebench.plugins.classifiers.cnn import CNN
from probebench.plugins.datasets.mnist5k import Mnist5k
images, labels = Mnist5k().load("train")
component = CNN()
torch.manual_seed(0)
model = component.build(10, (1, 28, 28))
before = resource.getrusage(resource.RUSAGE_SELF)
fit(component, model, images[:1280], labels[:1280], 0, "cpu", "cnn")
after = resource.getrusage(resource.RUSAGE_SELF)
weights = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
print(json.dumps({
    "cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
    "system": after.ru_stime - before.ru_stime,
    "faults": after.ru_minflt - before.ru_minflt,
    "weights": weights,
}))
"""


def train(mode: str) -> dict:
    env = {**os.environ, "PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-c", TRAIN, mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cnn_training_with_reused_memory(benchmark):
    measured = {}

    def both():
        measured["default"], measured["reuse"] = train("default"), train("reuse")

    benchmark.pedantic(both, rounds=1, iterations=1)
    default, reuse = measured["default"], measured["reuse"]
    assert default["weights"] == reuse["weights"]
    benchmark.extra_info.update(
        {
            "ratio_cpu_reuse_over_default": reuse["cpu"] / default["cpu"],
            "ratio_faults_reuse_over_default": reuse["faults"] / max(default["faults"], 1),
            **{f"{way}_{k}": v for way in ("default", "reuse") for k, v in measured[way].items() if k != "weights"},
        }
    )
