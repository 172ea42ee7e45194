"""Resources per component or suite become the Ray task's num_cpus/num_gpus:
read from the options the Ray executor gives ``ray.remote(...).options``."""

from __future__ import annotations

import pytest
import torch

from probebench.cache import ArtifactStore
from probebench.errors import UserError
from probebench.executors.ray_cluster import ray_options, run_task
from probebench.hookspecs import hookimpl
from probebench.pipeline.data import load_splits
from probebench.pipeline.graph import build_graph
from probebench.pipeline.stage import Run
from probebench.registry import Registry
from probebench.suite import load_config, parse_suite

SUITE = """
[suite.placed]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", "hungry-msp"]
metrics = ["accuracy", "auroc"]
corruptions = [{ name = "cure-noise", severities = [3] }]
seeds = [0, 1]
resources = { train = { num_gpus = 1, num_cpus = 3 } }
"""


class HungryMsp:
    """MSP that asks Ray for two CPUs and half a GPU."""

    name = "hungry-msp"
    resources = {"num_cpus": 2, "num_gpus": 0.5}

    def score(self, ctx, batch):
        return batch.probs.max(dim=1).values


@hookimpl
def register_scorers():
    return [HungryMsp]


def graph_of(tiny_registry, extra: str = SUITE):
    import sys

    config = load_config(tiny_registry(extra))
    registry = Registry(config.builtin)
    registry.add_plugin(sys.modules[__name__])
    suite = parse_suite(config, "placed", registry)
    splits = load_splits(registry, suite.dataset, None, suite.validation)
    return build_graph(Run(suite, registry, ArtifactStore(), splits, config.path.parent), torch.device("cpu"))


def test_a_component_attribute_and_a_suite_key_become_the_ray_tasks_resources(tiny_registry):
    import ray

    graph = graph_of(tiny_registry)
    asked = {}
    for task in graph:
        if task.id == graph.target:
            continue
        options = ray_options(task, threads=1)
        ray.remote(run_task).options(**options)  # the executor's call: Ray validates them (no cluster needed)
        remote = ray.remote(**options)(run_task)  # the same options as defaults, where Ray keeps them readable
        asked[task.id] = (remote._default_options["num_cpus"], remote._default_options["num_gpus"])
    assert asked["train/seed=0"] == asked["train/seed=1"] == (3.0, 1.0)  # the suite's resources.train
    assert asked["score/seed=1/cure-noise-3"] == (2.0, 0.5)  # the hungry scorer's class attribute
    assert asked["prepare/seed=0"] == (2.0, 0.5)  # prepare runs the scorers too
    assert asked["generators/seed=0"] == (1.0, 0.0)  # the default: a CPU


def test_two_torch_threads_ask_a_cpu_per_thread(tiny_registry):
    graph = graph_of(tiny_registry)
    assert ray_options(graph.task("score/seed=0/none-0"), threads=2)["num_cpus"] == 4.0


@pytest.mark.parametrize(
    "table, message",
    [
        ("{ trian = { num_gpus = 1 } }", "resources for unknown stage 'trian'"),
        ("{ train = { gpus = 1 } }", "resources.train: unknown key 'gpus'; use num_cpus or num_gpus"),
        ("{ train = { num_gpus = -1 } }", "resources.train: num_gpus must be a non-negative number, got -1"),
    ],
)
def test_a_bad_resources_table_is_one_line(tiny_registry, table, message):
    with pytest.raises(UserError) as error:
        graph_of(tiny_registry, SUITE.replace("{ train = { num_gpus = 1, num_cpus = 3 } }", table))
    assert message in str(error.value) and "\n" not in str(error.value)
