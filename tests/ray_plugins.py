"""Scorers for the Ray executor's tests, registered in-process (their module
name goes in a registry's plugin list, with ``--allow-module``).

``slow-msp`` is MSP that writes its process id to ``pid_file`` and then
sleeps, so a test can kill the worker in the middle of a task; ``raises``
fails on every cell, as a broken third-party scorer does.
"""

from __future__ import annotations

import os
import time

from probebench.hookspecs import hookimpl


class SlowMsp:
    """Maximum softmax probability, after ``seconds`` of sleep; writes its pid to ``pid_file`` first."""

    name = "slow-msp"
    option_help = {"pid_file": "where to write the process id", "seconds": "how long to sleep"}

    def __init__(self, pid_file: str = "", seconds: float = 0.0):
        self.pid_file, self.seconds = pid_file, seconds

    def score(self, ctx, batch):
        if self.pid_file:
            with open(self.pid_file, "a") as f:
                f.write(f"{os.getpid()}\n")
        time.sleep(self.seconds)
        return batch.probs.max(dim=1).values


class Raises:
    """A scorer that always raises."""

    name = "raises"

    def score(self, ctx, batch):
        raise RuntimeError("this scorer is broken")


@hookimpl
def register_scorers():
    return [SlowMsp, Raises]
