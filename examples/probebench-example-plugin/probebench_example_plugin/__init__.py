"""probebench-example-plugin: the hooks probebench calls at start-up.

This module is imported by every ``probebench`` command, so it imports only
light modules; torch is imported inside the components' methods.
"""

from __future__ import annotations

from probebench.hookspecs import hookimpl
from probebench_example_plugin.correctors import RunnerUpStep
from probebench_example_plugin.scorers import KNNDistance

__version__ = "0.1.0"


@hookimpl
def register_scorers():
    return [KNNDistance]


@hookimpl
def register_correctors():
    return [RunnerUpStep]
