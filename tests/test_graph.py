"""The run graph: what tasks a suite becomes, and how the local executor runs them."""

from __future__ import annotations

import re

import pytest

from probebench.executors.local import LocalExecutor
from probebench.pipeline.graph import COLLECT, Graph, Resources, Task, build_graph, itself

GRAPH_SUITE = """
[suite.graph]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", { name = "prober", source = "train", outputs = "none", min_misses = 2 }]
metrics = ["accuracy", "auroc"]
validation = 100
generators = [{ name = "realnvp", epochs = 1, levels = 1, blocks = 1, hidden = 8 }]
correctors = [{ name = "prober-latent", max_steps = 5 }]
corruptions = [{ name = "cure-noise", severities = [1, 3] }]
seeds = [0, 1]
"""


@pytest.fixture
def suite_run(tiny_registry, tmp_path):
    from probebench.cache import ArtifactStore
    from probebench.pipeline.data import load_splits
    from probebench.pipeline.stage import Run
    from probebench.registry import Registry
    from probebench.suite import load_config, parse_suite

    config = load_config(tiny_registry(GRAPH_SUITE))
    registry = Registry(config.builtin)
    suite = parse_suite(config, "graph", registry)
    store = ArtifactStore(tmp_path / "cache")
    return Run(suite, registry, store, load_splits(registry, suite.dataset, None, suite.validation), tmp_path)


def test_a_suite_becomes_per_seed_stages_and_per_cell_tasks_in_a_topological_order(suite_run):
    import torch

    graph = build_graph(suite_run, torch.device("cpu"))
    ids = [t.id for t in graph]
    cells = ["none-0", "cure-noise-1", "cure-noise-3"]
    for seed in (0, 1):
        assert f"train/seed={seed}" in ids and f"prepare/seed={seed}" in ids
        for cell in cells:
            score = graph.tasks[ids.index(f"score/seed={seed}/{cell}")]
            correct = graph.tasks[ids.index(f"correct/seed={seed}/{cell}")]
            assert score.inputs == correct.inputs == (f"train/seed={seed}", f"prepare/seed={seed}")
        fits = (f"fit/seed={seed}/classifier-cnn-seed{seed}", f"fit/seed={seed}/generator-realnvp-seed{seed}")
        train = graph.tasks[ids.index(f"train/seed={seed}")]
        assert train.inputs == fits and ids.index(fits[-1]) < ids.index(train.id)
        # two models in the seed: each trains on one torch thread, whoever runs it
        assert [graph.task(f).threads for f in fits] == [1, 1] and train.threads is None
    assert len(graph) == 2 * (2 + 3 + 2 * len(cells)) + 1
    assert ids[-1] == graph.target == COLLECT and graph.tasks[-1].inputs == tuple(ids[:-1])
    # one progress step per cell, when its last task (the correction) ends
    assert graph.groups() == {"score seed 0": (6, 3), "score seed 1": (6, 3)}
    assert {t.resources for t in graph} == {Resources(cpus=1, gpus=0)}
    # on a GPU: training takes a whole GPU, the other tasks a quarter of one
    on_gpu = {t.stage: t.resources for t in build_graph(suite_run, torch.device("cuda"))}
    assert on_gpu["train"] == on_gpu["generators"] == on_gpu["fit"] == Resources(cpus=1, gpus=1)
    assert on_gpu["score"] == on_gpu["correct"] == on_gpu["prepare"] == Resources(cpus=1, gpus=0.25)


def test_a_graph_refuses_a_task_before_its_inputs():
    with pytest.raises(ValueError, match="'b'.*'a'"):
        Graph((Task("b", "s", ("a",), lambda run, a: a), Task("a", "s", (), lambda run: 1)), target="b")


def test_the_local_executor_runs_in_graph_order_and_hands_each_task_its_inputs_outputs(capsys):
    calls = []

    def step(name, value):
        def call(run, *inputs):
            calls.append((name, run, inputs))
            return value

        return call

    graph = Graph(
        (
            Task("a", "s", (), step("a", 2), public=lambda output: output * 10),
            Task("b", "s", ("a",), step("b", 3), group="cells"),
            Task("c", "s", ("a", "b"), step("c", 5), group="cells", public=itself),
            Task("d", "t", ("c", "a"), step("d", 7)),
        ),
        target="d",
    )
    assert LocalExecutor().execute(graph, ["RUN"]) == 7
    # the target (the collector) sees its inputs' public outputs only
    assert calls == [(n, ["RUN"], i) for n, i in (("a", ()), ("b", (2,)), ("c", (2, 3)), ("d", (5, 20)))]
    lines = capsys.readouterr().err.splitlines()  # not a terminal: plain progress lines
    assert lines[0] == "start cells (2 steps)" and re.fullmatch(r"done cells: 2/2 in 0:0\d", lines[1])


def test_a_raising_task_stops_the_local_executor_and_its_bar_says_stopped(capsys):
    def boom(run, *inputs):
        raise RuntimeError("boom")

    graph = Graph((Task("a", "s", (), boom, group="cells"), Task("b", "s", ("a",), lambda run, a: a, group="cells")))
    with pytest.raises(RuntimeError, match="boom"):
        LocalExecutor().execute(graph, [None])
    assert re.fullmatch(r"stopped cells: 0/2 in 0:0\d", capsys.readouterr().err.splitlines()[-1])
