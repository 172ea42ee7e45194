"""The prober: features at named layers, the mlp/linear probers, the ``prober``
scorer's training data, caching and failure paths, and the ``layers`` command."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from probebench.cache import ArtifactStore, hash_key
from probebench.cli import app
from probebench.errors import UserError
from probebench.hookspecs import hookimpl
from probebench.kinds import Guide, can_guide
from probebench.pipeline.context import Batch, Context
from probebench.pipeline.features import cached_forward, forward
from probebench.plugins.probers._mlp_net import class_weights, sample_weights
from probebench.plugins.probers.mlp import MLP, Linear
from probebench.plugins.scorers.prober import ProberScorer, TooFewMisses
from probebench.registry import Registry
from tests.conftest import builtin_modules


def tiny_cnn(seed: int = 0):
    from probebench.plugins.classifiers._cnn_net import CNNNet

    torch.manual_seed(seed)
    return CNNNet(10, (1, 28, 28), width=8).eval()


@dataclass(frozen=True)
class CountingContext(Context):
    """A Context that counts its forward passes (``forward_calls``)."""

    calls: list = field(default_factory=list)

    def forward(self, images, layers=()):
        self.calls.append(len(images))
        return super().forward(images, layers)

    @property
    def forward_calls(self) -> int:
        return len(self.calls)


def make_ctx(tmp_path, model, images, labels, registry=None, train_classifier=None):
    store = ArtifactStore(tmp_path / "artifacts")

    def artifact(stage, parts, build, check=None):
        return store.get_or_build(stage, hash_key(stage, "test-classifier", parts), build, check)

    return CountingContext(
        model,
        "test-classifier",
        10,
        tuple(images.shape[1:]),
        torch.device("cpu"),
        0,
        64,
        images,
        labels,
        artifact,
        train_classifier or (lambda *a, **k: model),
        registry=registry or Registry(builtin_modules(), autoload=False),
    )


def random_digits(n: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=generator), torch.randint(0, 10, (n,), generator=generator)


# -- features ----------------------------------------------------------------
def test_features_at_several_layers_have_the_shapes_layers_prints(runner):
    model = tiny_cnn()
    images, _ = random_digits(5)
    layers = ("conv_layer.2", "conv_layer", "fc_layer.1", "fc_layer.4", "fc_layer.6")
    logits, features = forward(model, images, layers, batch_size=2)
    assert logits.shape == (5, 10)
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "conv_layer.2": (5, 8 * 13 * 13),
        "conv_layer": (5, 16 * 5 * 5),
        "fc_layer.1": (5, 512),
        "fc_layer.4": (5, 256),
        "fc_layer.6": (5, 10),
    }
    assert torch.allclose(features["fc_layer.6"], logits)  # the last Linear's output is the logits
    assert (features["fc_layer.4"] >= 0).all()  # a ReLU's output

    result = runner.invoke(app, ["layers", "cnn"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert lines["fc_layer.4"][1:] == ["ReLU", "[N,", "256]", "256"]
    assert lines["conv_layer.2"][-1] == str(32 * 13 * 13)  # default width 32


def test_unknown_layer_lists_the_valid_names(runner):
    with pytest.raises(UserError, match=r"layer 'fc_layer.9' not found.*did you mean.*valid layers: .*fc_layer\.4"):
        forward(tiny_cnn(), random_digits(2)[0], ("fc_layer.9",))
    with pytest.raises(UserError, match="layer 'fc_layr.4'"):
        ProberScorer(layer="fc_layr.4").prepare(make_ctx_for_errors())
    result = runner.invoke(app, ["layers", "cnn", "--dataset", "mnist-6k"])
    assert result.exit_code == 2 and "did you mean 'mnist-5k'" in result.output


def make_ctx_for_errors():
    images, labels = random_digits(8)
    return Context(
        tiny_cnn(),
        "k",
        10,
        (1, 28, 28),
        torch.device("cpu"),
        0,
        8,
        images,
        labels,
        lambda stage, parts, build: build(),
        lambda *a, **k: None,
        registry=Registry(builtin_modules(), autoload=False),
    )


def test_cached_forward_and_batch_cells_reuse_features(tmp_path):
    images, labels = random_digits(40)
    ctx = make_ctx(tmp_path, tiny_cnn(), images, labels)
    where = {"split": "test", "corruption": "none", "options": {}, "severity": 0}
    logits, features = cached_forward(ctx, images, ("fc_layer.4",), where)
    again_logits, again = cached_forward(ctx, images, ("fc_layer.4",), where)
    assert ctx.forward_calls == 1
    assert torch.equal(logits, again_logits) and torch.equal(features["fc_layer.4"], again["fc_layer.4"])
    batch = Batch(ctx, images, cell=where)
    assert torch.equal(batch.features("fc_layer.4"), features["fc_layer.4"]) and torch.equal(batch.logits, logits)
    assert ctx.forward_calls == 1  # the cell's outputs came from the cache
    Batch(ctx, images).features("fc_layer.4")  # no cell: computed
    assert ctx.forward_calls == 2


# -- probers -------------------------------------------------------------------
def separable(n: int, seed: int):
    """Features [n, 16] where misses (10%) are shifted by 3 in four dimensions."""
    rng = np.random.default_rng(seed)
    hit = rng.random(n) > 0.1
    x = rng.normal(size=(n, 16))
    x[~hit, :4] += 3.0
    return torch.tensor(x, dtype=torch.float32), torch.tensor(hit)


@pytest.mark.parametrize("prober", [MLP(epochs=10), Linear(epochs=10)], ids=["mlp", "linear"])
def test_prober_learns_a_separable_task(prober):
    x, hit = separable(1500, seed=0)
    torch.manual_seed(0)
    prober.fit(x, hit)
    x_test, hit_test = separable(1000, seed=1)
    p_hit = prober.predict(x_test)
    assert p_hit.shape == (1000,) and p_hit.min() >= 0 and p_hit.max() <= 1
    assert roc_auc_score(hit_test.numpy(), p_hit.numpy()) > 0.95
    facts = prober.facts
    assert facts["n_hit"] + facts["n_miss"] == 1500 and facts["n_fit"] + facts["n_valid"] == 1500
    assert facts["valid_auroc"] > 0.95 and 0 < facts["valid_f1"] <= 1 and 0 < facts["valid_accuracy"] <= 1
    assert facts["p_hit_valid_hits"]["min"] <= facts["p_hit_valid_hits"]["p50"] <= facts["p_hit_valid_hits"]["max"]


def test_prober_is_deterministic_given_the_seed_and_round_trips_its_state():
    x, hit = separable(400, seed=2)
    runs = []
    for _ in range(2):
        prober = MLP(epochs=3)
        torch.manual_seed(7)
        prober.fit(x, hit)
        runs.append(prober.predict(x))
    assert torch.equal(runs[0], runs[1])
    copy = MLP()
    copy.load_state_dict(prober.state_dict())
    assert torch.equal(copy.predict(x), runs[1]) and copy.facts == prober.facts


def test_imbalance_handling_sets_the_documented_loss_weights():
    hit = torch.tensor([True] * 90 + [False] * 10)
    assert class_weights(hit, "weighted").tolist() == pytest.approx([100 / 20, 100 / 180])
    assert class_weights(hit, "fixed", miss_weight=4.0).tolist() == [4.0, 1.0]
    assert class_weights(hit, "sampler").tolist() == [1.0, 1.0] == class_weights(hit, "none").tolist()
    draw = sample_weights(hit)  # the sampler gives each class the same total draw weight
    assert draw[hit].sum().item() == pytest.approx(draw[~hit].sum().item())

    x, y = separable(500, seed=3)
    for imbalance in ("weighted", "fixed", "none"):
        prober = MLP(epochs=1, imbalance=imbalance)
        torch.manual_seed(0)
        prober.fit(x, y)
        n_fit = prober.facts["n_fit"]
        n_miss_fit = prober.facts["n_miss"] - prober.facts["n_valid_miss"]
        expected = {
            "weighted": [n_fit / (2 * n_miss_fit), n_fit / (2 * (n_fit - n_miss_fit))],
            "fixed": [4.0, 1.0],
            "none": [1.0, 1.0],
        }[imbalance]
        got = prober.facts["loss_weights"]
        assert [got["miss"], got["hit"]] == pytest.approx(expected, rel=1e-5)


def test_reference_loss_weight_puts_hits_at_0_69_and_standardize_false_leaves_features_raw():
    """torch's CrossEntropyLoss(weight=[4, 1], label_smoothing=0.2) also weighs the smoothing
    term: the optimum for a hit is P(hit) = 0.9 / (0.9 + 0.1 * 4) = 0.692, not 0.9; the
    sample-weighted loss (imbalance='fixed') keeps it at 0.9."""
    x, y = separable(2000, seed=4)
    x[~y, :4] += 5.0  # well apart: each class reaches its optimum
    medians = {}
    for label, options in {"torch": {"loss_weight": [4, 1]}, "fixed": {"imbalance": "fixed"}}.items():
        prober = MLP(epochs=40, patience=0, standardize=False, **options)
        torch.manual_seed(0)
        prober.fit(x, y)
        medians[label] = float(prober.predict(x[y]).median())
        assert torch.equal(prober.net.mean, torch.zeros(16)) and torch.equal(prober.net.std, torch.ones(16))
    assert medians["torch"] == pytest.approx(0.9 / 1.3, abs=0.02)
    assert medians["fixed"] == pytest.approx(0.9, abs=0.02)
    assert prober.facts["standardized"] is False
    with pytest.raises(UserError, match="loss_weight must be two positive numbers"):
        MLP(loss_weight=[4])
    with pytest.raises(UserError, match="loss_weight replaces imbalance"):
        MLP(loss_weight=[4, 1], imbalance="sampler")


def test_prober_fits_on_one_thread_and_gives_the_threads_back(monkeypatch):
    from probebench.plugins.probers import _mlp_net

    seen = []
    real_train = _mlp_net._train
    monkeypatch.setattr(
        _mlp_net, "_train", lambda *a, **k: (seen.append(torch.get_num_threads()), real_train(*a, **k))[1]
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x, y = separable(200, seed=1)
        MLP(epochs=1).fit(x, y)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_prober_refuses_one_class_and_bad_options():
    x, _ = separable(50, seed=0)
    with pytest.raises(ValueError, match="only hits"):
        MLP().fit(x, torch.ones(50, dtype=torch.bool))
    with pytest.raises(UserError, match="imbalance must be one of weighted, sampler, fixed, none"):
        MLP(imbalance="balanced")
    with pytest.raises(UserError, match="source must be one of train, holdout, crossfit"):
        ProberScorer(source="test")


# -- the scorer ------------------------------------------------------------------
class PixelOracle(torch.nn.Module):
    """Reads the class from the first pixel (label + 0.5) / 10: right on every image it is made for."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU())

    def forward(self, x):
        self.hidden(x)
        return -(((x[:, 0, 0, 0:1] * 10 - 0.5) - torch.arange(10.0)) ** 2)


def test_too_few_misses_fails_with_a_message_instead_of_training_on_one_class(tmp_path, monkeypatch):
    labels = torch.arange(60) % 10
    images = torch.rand(60, 1, 4, 4)
    images[:, 0, 0, 0] = (labels + 0.5) / 10
    images[:3, 0, 0, 0] = (((labels[:3] + 1) % 10) + 0.5) / 10  # three misses
    fits = []
    real_fit = MLP.fit
    monkeypatch.setattr(MLP, "fit", lambda self, x, hit: (fits.append(hit), real_fit(self, x, hit)))
    ctx = make_ctx(tmp_path, PixelOracle(), images, labels)
    with pytest.raises(
        TooFewMisses,
        match=r"too few misses to learn from: source='train' gives 3 misses and 57 hits"
        r" at layer hidden.*source='crossfit'",
    ):
        ProberScorer(layer="hidden", source="train", outputs="none").prepare(ctx)
    with pytest.raises(
        TooFewMisses,
        match=r"source='crossfit' gives 3 misses and 57 hits at layer \(outputs only\)"
        r".*use fewer folds",
    ):  # the fold models are the same oracle
        ProberScorer(layer=[], source="crossfit").prepare(ctx)
    assert fits == []
    ProberScorer(layer="hidden", source="train", outputs="none", min_misses=3).prepare(ctx)
    assert len(fits) == 1 and int((~fits[0]).sum()) == 3


def test_reference_add_split_trains_on_80_percent_of_the_test_set_and_says_so(tmp_path, monkeypatch):
    from dataclasses import replace

    from probebench.plugins.scorers.prober import add_split_holdout, add_split_leaked

    def digits(n, wrong):
        labels = torch.arange(n) % 10
        images = torch.rand(n, 1, 4, 4)
        images[:, 0, 0, 0] = (labels + 0.5) / 10
        images[:wrong, 0, 0, 0] = (((labels[:wrong] + 1) % 10) + 0.5) / 10  # the oracle misses these
        return images, labels

    (train_images, train_labels), (test_images, test_labels) = digits(60, 3), digits(50, 20)
    fits = []
    real_fit = MLP.fit
    monkeypatch.setattr(MLP, "fit", lambda self, x, hit: (fits.append(hit), real_fit(self, x, hit)))
    ctx = make_ctx(tmp_path, PixelOracle(), train_images, train_labels)
    options = dict(layer="hidden", source="reference-add-split", outputs="none", min_misses=3)
    with pytest.raises(UserError, match="reference-add-split' needs the test split"):
        ProberScorer(**options).prepare(ctx)
    ctx = replace(ctx, test_images=test_images, test_labels=test_labels)
    scorer = ProberScorer(**options)
    scorer.prepare(ctx)
    leaked, held_out = add_split_leaked(0, 50), add_split_holdout(0, 50)
    assert len(leaked) == 40 and sorted(leaked.tolist() + held_out.tolist()) == list(range(50))
    assert torch.equal(add_split_leaked(0, 50), leaked) and not torch.equal(add_split_leaked(1, 50), leaked)
    test_misses = int((leaked < 20).sum())  # test images 0..19 are misses
    assert len(fits[0]) == 60 + 40 and int((~fits[0]).sum()) == 3 + test_misses
    assert scorer.facts["leaks_test"] == {"n": 40, "n_miss": test_misses, "fraction": 0.8}


def test_second_prepare_loads_prober_and_fold_outcomes_from_the_cache(tmp_path, monkeypatch):
    images, labels = random_digits(200)
    trained = []

    def train_fold(seed, subset=None, options=None):
        trained.append((seed, len(subset), options))
        return tiny_cnn(seed=len(trained))

    ctx = make_ctx(tmp_path, tiny_cnn(), images, labels, train_classifier=train_fold)
    fits = []
    real_fit = MLP.fit
    monkeypatch.setattr(MLP, "fit", lambda self, x, hit: (fits.append(len(hit)), real_fit(self, x, hit)))
    options = dict(
        source="crossfit", folds=2, fold_options={"epochs": 1}, prober_options={"epochs": 2}, min_misses=3
    )  # untrained models are right on ~10% of images
    first = ProberScorer(**options)
    first.prepare(ctx)
    assert trained == [(0, 100, {"epochs": 1}), (0, 100, {"epochs": 1})] and fits == [200]
    assert first.facts["n_hit"] + first.facts["n_miss"] == 200
    calls = ctx.forward_calls

    second = ProberScorer(**options)
    second.prepare(ctx)
    assert len(trained) == 2 and fits == [200] and ctx.forward_calls == calls
    assert second.facts == first.facts
    batch = Batch(ctx, random_digits(30, seed=5)[0])
    assert torch.equal(first.score(ctx, batch), second.score(ctx, batch))
    # it guides correctors: p_hit of the images is its score, differentiable with respect to the images
    assert can_guide(ProberScorer) and isinstance(first, Guide)
    images = batch.images.clone().requires_grad_(True)
    p_hit = first.p_hit(images)
    assert torch.allclose(p_hit, first.score(ctx, batch), atol=1e-6)
    (gradient,) = torch.autograd.grad(p_hit.sum(), images)
    assert gradient.abs().sum() > 0

    ProberScorer(**{**options, "source": "holdout"}).prepare(ctx)  # reuses fold 0's outcomes
    assert len(trained) == 2 and fits == [200, 100]


def test_augment_applies_registered_corruptions_to_training_images(tmp_path, monkeypatch):
    class Invert:
        name = "test-invert"

        def __call__(self, images, severity, generator):
            return 1 - images

    module = types.ModuleType("pb_test_corruptions")
    module.register_corruptions = hookimpl(lambda: [Invert])
    monkeypatch.setitem(sys.modules, "pb_test_corruptions", module)
    registry = Registry(builtin_modules() + ["pb_test_corruptions"], autoload=False)
    images, labels = random_digits(120)
    ctx = make_ctx(tmp_path, tiny_cnn(), images, labels, registry=registry)
    scorer = ProberScorer(
        source="train",
        augment=["test-invert", {"name": "test-invert", "severities": [5]}],
        augment_severities=[1, 3],
        prober_options={"epochs": 1},
    )
    scorer.prepare(ctx)
    views = scorer.facts["views"]
    assert [(v["corruption"], v["severity"]) for v in views] == [
        ("none", 0),
        ("test-invert", 1),
        ("test-invert", 3),
        ("test-invert", 5),
    ]
    assert scorer.facts["n_hit"] + scorer.facts["n_miss"] == 4 * 120
    _, inverted = cached_forward(ctx, 1 - images, ("fc_layer.4",), {"split": "check"})
    _, cached = cached_forward(
        ctx, None, ("fc_layer.4",), {"split": "train", "corruption": "test-invert", "options": {}, "severity": 3}
    )
    assert torch.equal(cached["fc_layer.4"], inverted["fc_layer.4"])
    with pytest.raises(UserError, match="unknown corruption 'test-invrt'.*did you mean 'test-invert'"):
        ProberScorer(augment=["test-invrt"]).prepare(ctx)


# -- in a run ----------------------------------------------------------------------
def test_run_with_the_prober_records_its_facts_and_reuses_it(runner, tiny_registry, tmp_path, monkeypatch):
    registry = tiny_registry(
        scorers='["msp", { name = "prober", source = "crossfit", folds = 2, prober_options = { epochs = 3 } }]'
    )
    out = tmp_path / "run1"
    result = runner.invoke(app, ["run", "tiny", "--registry", str(registry), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    auroc = table[(table["method"] == "prober") & (table["metric"] == "auroc")]["value"]
    assert len(auroc) == 1 and 0 <= auroc.iloc[0] <= 1
    facts = json.loads((out / "run.json").read_text())["component_facts"]["0"]["prober"]
    assert facts["source"] == "crossfit" and facts["n_hit"] + facts["n_miss"] == 300
    for key in ("valid_accuracy", "valid_f1", "valid_auroc", "p_hit_valid_hits", "loss_weights"):
        assert key in facts

    monkeypatch.setattr(MLP, "fit", lambda *a: pytest.fail("the cached prober was trained again"))
    out2 = tmp_path / "run2"
    result = runner.invoke(app, ["run", "tiny", "--registry", str(registry), "--out", str(out2)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out2 / "scores.csv.gz")["prober"].equals(pd.read_csv(out / "scores.csv.gz")["prober"])


def test_a_run_records_too_few_misses_as_a_failure(runner, tiny_registry, tmp_path):
    registry = tiny_registry(scorers='["msp", { name = "prober", source = "train", min_misses = 1000 }]')
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "tiny", "--registry", str(registry), "--out", str(out)])
    assert result.exit_code == 1
    failures = json.loads((out / "run.json").read_text())["failures"]
    assert [(f["plugin"], f["stage"]) for f in failures] == [("prober", "prepare")]
    assert "too few hits" in failures[0]["message"] or "too few misses" in failures[0]["message"]
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert "msp" in set(table["method"]) and "prober" not in set(table["method"])


def test_output_stats_match_their_definitions():
    from probebench.plugins.scorers.prober import output_stats

    logits = torch.randn(50, 10) * 5
    logits[0] = torch.tensor([40.0] + [0.0] * 9)  # max softmax rounds to 1 in float32
    probs = logits.double().softmax(dim=1)
    top_p = probs.topk(2, dim=1).values
    top_z = logits.topk(2, dim=1).values
    rest = probs.sort(dim=1, descending=True).values[:, 1:].sum(dim=1)  # 1 - p_max without cancellation
    expected = torch.stack(
        [
            top_p[:, 0],
            rest.log(),
            top_p[:, 0] - top_p[:, 1],
            (probs * probs.log()).sum(dim=1),
            top_z[:, 0],
            top_z[:, 0] - top_z[:, 1],
        ],
        dim=1,
    )
    stats = output_stats(logits)
    assert torch.allclose(stats.double(), expected, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(stats).all()
    assert stats[0, 1] == pytest.approx(np.log(9) - 40, abs=1e-3)  # log(9 e^-40), not -inf, where p_max rounds to 1


def test_default_suite_has_the_reference_recipe_and_the_best_variant():
    from probebench.suite import load_config, parse_suite
    from tests.conftest import REPO

    config = load_config(REPO / "registry.toml")
    suite = parse_suite(config, "mnist-quick", Registry(config.builtin, autoload=False))
    scorers = {spec.label: spec for spec in suite.scorers}
    assert {"msp", "prober-ref", "prober", "prober-outputs"} <= set(scorers)
    reference = scorers["prober-ref"].options
    assert reference["source"] == "train" and reference["outputs"] == "none" and reference["layer"] == "fc_layer.4"
    assert reference["prober_options"] == {"epochs": 2, "imbalance": "fixed", "miss_weight": 4.0, "patience": 0}
    # `prober` is the scorer's defaults (2-fold crossfit, fc_layer.4 + output stats), the best measured variant
    # that reads a hidden layer; `prober-outputs` the same without the hidden layer
    assert scorers["prober"].options == {} and scorers["prober-outputs"].options == {"layer": []}
    default = ProberScorer()
    assert (default.source, default.folds, default.layers, default.outputs) == ("crossfit", 2, ("fc_layer.4",), "stats")


def test_early_stopping_auroc_and_f1_are_scikit_learns_to_the_bit():
    """The prober's validation AUROC and F1 no longer import scikit-learn
    (1.5 s of a cold run) but give its floats: early stopping compares epochs
    by the AUROC, so even a last-bit difference could pick another epoch."""
    import numpy as np
    from sklearn.metrics import f1_score, roc_auc_score

    from probebench.plugins.probers._mlp_net import _auroc, _f1

    rng = np.random.default_rng(0)
    for n, levels in [(7, 3), (50, 5), (333, 0), (1000, 40), (2000, 0)]:
        for _ in range(20):
            hit = rng.random(n) < rng.uniform(0.05, 0.95)
            score = rng.random(n) + hit * rng.uniform(0, 1)
            if levels:  # ties, as saturated or rounded probabilities make them
                score = np.round(score * levels) / levels
            score = score.astype(np.float32)
            if hit.all() or not hit.any():
                continue
            assert _auroc(score, hit) == roc_auc_score(hit, score)
            predicted = score >= np.median(score)
            assert _f1(hit, predicted) == f1_score(hit, predicted, zero_division=0)
            assert _f1(~hit, ~predicted) == f1_score(~hit, ~predicted, zero_division=0)
    assert np.isnan(_auroc(np.ones(3, np.float32), np.ones(3, bool)))
    assert _f1(np.zeros(4, bool), np.zeros(4, bool)) == 0.0
