"""CPU seconds, system seconds and minor page faults of each fit task of a
suite's seed (default: mnist-quick, seed 0), trained one after another on one
torch thread, as a fit worker trains them, into an empty cache of its own.

    OMP_NUM_THREADS=1 python tests/benchmarks/fit_task_seconds.py [--reuse] [--only realnvp,cnn-seed0]

``--reuse`` first calls ``probebench.allocator.reuse_freed_memory`` (as
``probebench run`` and its workers do); without it glibc keeps its own
thresholds. A profile, not a test: the README's Performance section quotes it.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="mnist-quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="fix glibc's malloc thresholds first")
    parser.add_argument("--only", default="", help="comma-separated parts of fit task names to run")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    if args.reuse:
        from probebench.allocator import reuse_freed_memory

        assert reuse_freed_memory(), "not glibc"
    from probebench.cache import ArtifactStore
    from probebench.pipeline.data import load_splits
    from probebench.pipeline.fit import fit_task, seed_fits
    from probebench.pipeline.stage import Run
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite

    config = load_config(None)
    registry = Registry(config.builtin)
    suite = parse_suite(config, args.suite, registry)
    root = Path(tempfile.mkdtemp(prefix="fit-task-seconds-"))
    store = ArtifactStore(root / "cache")
    with store.active():
        splits = load_splits(registry, suite.dataset, suite.data_root, suite.validation, 0, suite.new_classes)
    run = Run(suite, registry, store, splits, root / "out")
    wanted = [part for part in args.only.split(",") if part]
    for fit in seed_fits(run, args.seed):
        if wanted and not any(part in fit.name for part in wanted):
            continue
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        with store.active():
            fit_task(run, fit=fit, device=torch.device("cpu"))
        after = resource.getrusage(resource.RUSAGE_SELF)
        user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
        print(
            f"{fit.name}: CPU {user + system:.1f} s (system {system:.1f} s), "
            f"{after.ru_minflt - before.ru_minflt} minor page faults, wall {time.perf_counter() - started:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
