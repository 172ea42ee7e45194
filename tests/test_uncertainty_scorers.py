"""The uncertainty baselines compute what their docstrings say, in the stated
orientation (higher = more confident), at the stated cost structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probebench.errors import UserError
from probebench.pipeline.context import Batch, Context
from probebench.plugins.classifiers._cnn_net import CNNNet
from probebench.plugins.scorers import _gradients as G
from probebench.plugins.scorers import _mc_dropout as MC
from probebench.plugins.scorers._uncertainty import entropy, sample_confidences
from probebench.registry import Registry

SHAPE = (1, 28, 28)


def make_cnn(seed: int = 0, width: int = 4, dropout: float = 0.3) -> nn.Module:
    torch.manual_seed(seed)
    model = CNNNet(10, SHAPE, dropout=dropout, width=width).eval()
    with torch.no_grad():  # sharper logits than at initialisation, so scores spread out
        model.fc_layer[6].weight.mul_(8)
    return model


def make_ctx(model: nn.Module, seed: int = 0, batch_size: int = 32, trained: list | None = None) -> Context:
    def train_classifier(other_seed: int) -> nn.Module:
        if trained is not None:
            trained.append(other_seed)
        return make_cnn(other_seed + 1, width=4)

    images = torch.rand(8, *SHAPE, generator=torch.Generator().manual_seed(1))
    return Context(
        model,
        "key",
        10,
        SHAPE,
        torch.device("cpu"),
        seed,
        batch_size,
        images,
        torch.zeros(8, dtype=torch.long),
        lambda stage, parts, build: build(),
        train_classifier,
    )


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(40, *SHAPE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def registry() -> Registry:
    from tests.conftest import builtin_modules

    return Registry(builtin_modules(), autoload=False)


def scores(registry, name: str, ctx, batch, **options) -> torch.Tensor:
    scorer = registry.create("scorer", name, options)
    if hasattr(scorer, "prepare"):
        scorer.prepare(ctx)
    out = scorer.score(ctx, batch)
    assert out.shape == (len(batch),) and torch.isfinite(out).all()
    return out


# -- logit-based ---------------------------------------------------------------
class LogitBatch:
    def __init__(self, logits):
        self.logits = logits
        self.probs = logits.softmax(dim=1)

    def __len__(self):
        return len(self.logits)


def test_logit_scorers_formulas_and_orientation(registry):
    logits = torch.randn(30, 10, generator=torch.Generator().manual_seed(0)) * 3
    logits[0] = torch.tensor([12.0] + [0.0] * 9)  # confident
    logits[1] = torch.zeros(10)  # flat: the least confident possible
    batch, probs = LogitBatch(logits), logits.softmax(dim=1)
    top2 = probs.topk(2, dim=1).values
    expected = {
        "margin": top2[:, 0] - top2[:, 1],
        "max-logit": logits.max(dim=1).values,
        "energy": logits.logsumexp(dim=1),
        "doctor": probs.pow(2).sum(dim=1),
    }
    for name, value in expected.items():
        got = scores(registry, name, None, batch)
        torch.testing.assert_close(got, value)
        assert got[0] > got[1], name
    hot = scores(registry, "energy", None, batch, temperature=0.01)
    torch.testing.assert_close(hot, logits.max(dim=1).values, atol=0.03, rtol=0)
    assert scores(registry, "doctor", None, batch, temperature=2.0)[0] < expected["doctor"][0]


@pytest.mark.parametrize("name", ["energy", "doctor"])
def test_bad_temperature_is_a_user_error(registry, name):
    with pytest.raises(UserError, match="temperature must be > 0"):
        registry.create("scorer", name, {"temperature": 0.0})


# -- GradTrust and gradient uncertainty ----------------------------------------------
def test_vmap_gradients_equal_a_per_sample_loop(images):
    """torch.func per-sample gradients equal one backward per sample through the
    whole model (float32 loop), at the last layer and an earlier one."""
    model = make_cnn()
    few = images[:6]
    targets = torch.randint(0, 10, (len(few), 4), generator=torch.Generator().manual_seed(0))
    for layer in ("fc_layer.6", "fc_layer.3"):
        plan = G.plan(model, layer, 10, images[:4])
        assert plan.split.traced and plan.split.cut == layer
        hidden = G.run_trunk(plan.split, few, 16, "cpu").double()
        for loss in (G.mse_uniform, G.bce_all_ones):
            vmapped = G.per_sample_grads(plan, hidden, loss, targets[:, 0])["weight"]
            looped = G.per_sample_loop(model, layer, few, loss, targets[:, 0])
            assert vmapped.abs().max() > 1e-3
            torch.testing.assert_close(vmapped.float(), looped, atol=1e-5, rtol=1e-4)
        several = G.per_sample_grads(plan, hidden, G.cross_entropy, targets)["weight"]
        looped = G.per_sample_loop(model, layer, few, G.cross_entropy, targets)
        assert several.shape == looped.shape == (len(few), 4, *plan.parameter("weight").shape)
        torch.testing.assert_close(several.float(), looped, atol=1e-5, rtol=1e-4)


def test_demo_gradtrust_equals_its_closed_form(registry, images):
    model = make_cnn()
    ctx = make_ctx(model)
    batch = Batch(ctx, images)
    trust = scores(registry, "gradtrust:demo", ctx, batch).double()
    closed = G.demo_trust_closed_form(batch.logits.double())
    torch.testing.assert_close(trust, closed, rtol=1e-5, atol=0)
    assert ((trust >= 1 - 1e-9) & (trust <= 10 + 1e-9)).all()  # max / mean over 10 rows
    assert trust.std() > 0.1  # not degenerate on these inputs
    # a one-hot logit vector is the most trusted possible; a flat one the least
    one_hot = torch.tensor([[9.0] + [0.1] * 9])
    flat = torch.tensor([[0.1 + 1e-3 * i for i in range(10)]])
    assert G.demo_trust_closed_form(one_hot) > 9 > G.demo_trust_closed_form(flat)


def test_counterfactual_gradtrust_at_the_last_layer_is_the_probability_form(registry, images):
    model = make_cnn()
    ctx = make_ctx(model)
    batch = Batch(ctx, images)
    got = scores(registry, "gradtrust", ctx, batch, k=3).double()
    # Var over the entries of (p - e_c) h^T is mean((p - e_c)^2) mean(h^2), as sum(p - e_c) = 0
    probs = batch.logits.double().softmax(dim=1)
    ranked = probs.topk(4, dim=1).indices
    eye = torch.eye(10, dtype=torch.float64)
    distance = ((probs[:, None, :] - eye[ranked]) ** 2).sum(dim=2)  # [N, 4]
    expected = distance[:, 1:].mean(dim=1).log() - distance[:, 0].log()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    msp = probs.max(dim=1).values
    assert torch.corrcoef(torch.stack([got, msp]))[0, 1] > 0.5  # oriented like confidence


class ScaledLogits(nn.Module):
    """A last Linear whose output is not the model's output: no closed form."""

    def __init__(self):
        super().__init__()
        self.net = make_cnn()

    def forward(self, x):
        return self.net(x) * 2.0


def test_counterfactual_closed_form_equals_the_torch_func_reference(images):
    """The closed form of Var over (p - e_c) h^T agrees with torch.func's per-sample
    gradients to 1e-8 (relative, float64; the reference forms p_c - 1 and loses
    digits on confident samples, the closed form does not): on random hidden
    vectors with logits from confident to flat, and on mnist-5k test images
    through the cnn."""
    from probebench.plugins.datasets.mnist5k import Mnist5k

    model = make_cnn()
    digits = Mnist5k().load("test")[0][:64]
    for inputs in (images, digits):
        plan = G.plan(model, None, 10, images[:4])
        assert G.is_last_linear(plan)
        hidden = G.run_trunk(plan.split, inputs, 16, "cpu").double()
        random = torch.rand(hidden.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        for h in (hidden, random * torch.logspace(-2, 1, len(hidden), dtype=torch.float64)[:, None]):
            logits = G.tail_logits(plan, h)
            targets = logits.topk(4, dim=1).indices
            closed = G.counterfactual_variances(logits, h, targets)
            reference = G.counterfactual_variances_autodiff(plan, h, targets)
            assert reference.min() > 0 and closed.shape == reference.shape == (len(h), 4)
            torch.testing.assert_close(closed, reference, rtol=1e-8, atol=0)
    assert not G.is_last_linear(G.plan(model, "fc_layer.3", 10, images[:4]))
    assert not G.is_last_linear(G.plan(ScaledLogits().eval(), None, 10, images[:4]))
    assert not G.is_last_linear(G.plan(Untraceable().eval(), None, 10, images[:4]))


def test_grad_norm_equals_its_closed_form(registry, images):
    model = make_cnn()
    ctx = make_ctx(model)
    batch = Batch(ctx, images)
    got = scores(registry, "grad-norm", ctx, batch).double()
    hidden = G.run_trunk(G.plan(model, None, 10).split, images, 16, "cpu").double()
    residual = batch.logits.double().sigmoid() - 1
    expected = -residual.norm(dim=1) * (hidden.pow(2).sum(dim=1) + 1).sqrt()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)


def test_gradient_scorers_at_an_earlier_layer(registry, images):
    model = make_cnn()
    ctx = make_ctx(model)
    batch = Batch(ctx, images)
    last = scores(registry, "gradtrust:demo", ctx, batch)
    early = scores(registry, "gradtrust:demo", ctx, batch, layer="fc_layer.3")
    assert not torch.allclose(last.double(), early.double())
    scores(registry, "gradtrust", ctx, batch, layer="conv_layer.3")  # a conv layer: flatten in the tail
    scores(registry, "grad-norm", ctx, batch, layer="fc_layer.3")
    with pytest.raises(UserError, match="not found"):
        registry.create("scorer", "gradtrust", {"layer": "fc_layer.99"}).prepare(ctx)
    with pytest.raises(UserError, match="no weight"):
        registry.create("scorer", "gradtrust", {"layer": "fc_layer.4"}).prepare(ctx)
    with pytest.raises(UserError, match="k = 10"):
        registry.create("scorer", "gradtrust", {"k": 10}).prepare(ctx)
    with pytest.raises(UserError, match="unknown variant"):
        registry.create("scorer", "gradtrust:nope")


class Untraceable(nn.Module):
    """Control flow on a shape defeats torch.fx (no trunk/tail cut), not vmap."""

    def __init__(self, dropout: float = 0.3):
        super().__init__()
        self.net = make_cnn(dropout=dropout)

    def forward(self, x):
        return self.net(x) if x.shape[-1] >= 28 else -self.net(x)


def test_gradients_fall_back_to_the_whole_model(images):
    model = Untraceable().eval()
    plan = G.plan(model, None, 10, images[:4])
    assert not plan.split.traced and plan.layer == "net.fc_layer.6"
    trust = G.demo_trust(plan, images.double())
    torch.testing.assert_close(trust, G.demo_trust_closed_form(model(images).double()), rtol=1e-4, atol=0)


# -- MC dropout ------------------------------------------------------------------
def test_mc_dropout_trunk_once_equals_full_passes(images):
    """The cut sits before fc_layer.2 and the batched tail draws the same masks
    as T full passes (the trunk draws no random numbers), so both agree."""
    model = make_cnn()
    traced = MC.plan(model, images[:4])
    assert traced.traced and traced.cut == "fc_layer.2"
    hidden = MC.run_trunk(traced, images, 16, "cpu")
    assert hidden.shape == (len(images), 512)
    fast = MC.sample_probs(traced, hidden, 7, 70, "cpu", seed=3)  # 10 images x 7 passes a call
    full = MC.sample_probs(MC.identity_split(model), images, 7, 70, "cpu", seed=3)
    assert fast.shape == (7, len(images), 10)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)
    assert (fast.std(dim=0) > 0).any()  # the passes differ
    assert not any(m.training for m in model.modules())  # dropout back in eval mode


def test_mc_dropout_is_deterministic_given_the_seed_and_shares_samples(registry, images):
    model = make_cnn()
    batch = Batch(make_ctx(model, seed=0), images)
    pe = scores(registry, "mc-dropout", make_ctx(model, seed=0), batch, T=5)
    again = scores(registry, "mc-dropout:pe", make_ctx(model, seed=0), Batch(make_ctx(model), images), T=5)
    other = scores(registry, "mc-dropout:pe", make_ctx(model, seed=1), Batch(make_ctx(model, 1), images), T=5)
    torch.testing.assert_close(pe, again)
    assert not torch.allclose(pe, other)
    ctx = make_ctx(model)
    ee = scores(registry, "mc-dropout:ee", ctx, batch, T=5)
    mi = scores(registry, "mc-dropout:mi", ctx, batch, T=5)
    torch.testing.assert_close(mi, pe - ee)  # same samples for every variant of the batch
    assert (mi <= 1e-6).all()  # mutual information >= 0
    msp = scores(registry, "mc-dropout:msp", ctx, batch, T=5)
    assert ((msp > 0.1 - 1e-6) & (msp <= 1)).all()


def test_mc_dropout_falls_back_when_the_graph_cannot_be_cut(images):
    class Skip(nn.Module):  # a skip connection crosses the dropout's input
        def __init__(self):
            super().__init__()
            self.a, self.drop, self.b = nn.Linear(784, 10), nn.Dropout(0.5), nn.Linear(10, 10)

        def forward(self, x):
            h = self.a(x.flatten(1))
            return self.b(self.drop(h.relu())) + h

    for model in (Untraceable().eval(), Skip().eval()):
        split = MC.plan(model, images[:2])
        assert not split.traced
        probs = MC.sample_probs(split, images, 4, 16, "cpu", seed=0)
        assert probs.shape == (4, len(images), 10) and (probs.std(dim=0) > 0).any()


def test_mc_dropout_without_dropout_is_a_user_error(registry, images):
    model = make_cnn(dropout=0.0)
    with pytest.raises(UserError, match="no dropout layer"):
        registry.create("scorer", "mc-dropout", {}).prepare(make_ctx(model))
    with pytest.raises(UserError, match="unknown variant"):
        registry.create("scorer", "mc-dropout:bald", {})


def test_sample_confidences_formulas():
    same = torch.tensor([[0.7, 0.2, 0.1]]).expand(4, 1, 3)
    out = sample_confidences(same)
    torch.testing.assert_close(out["mi"], torch.zeros(1))
    torch.testing.assert_close(out["pe"], -entropy(same[0]))
    disagree = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    out = sample_confidences(disagree)
    torch.testing.assert_close(out["ee"], torch.zeros(1))
    torch.testing.assert_close(out["mi"], -torch.log(torch.tensor([2.0])))
    torch.testing.assert_close(out["msp"], torch.tensor([0.5]))


# -- ensemble -----------------------------------------------------------------------
def test_ensemble_members_scores_and_sharing(registry, images):
    model = make_cnn()
    trained: list[int] = []
    ctx = make_ctx(model, seed=2, trained=trained)
    batch = Batch(ctx, images)
    msp = scores(registry, "ensemble", ctx, batch)
    assert trained == [1002, 2002]
    members = [model, make_cnn(1003, width=4), make_cnn(2003, width=4)]
    probs = torch.stack([m(images).softmax(dim=1) for m in members]).detach()
    torch.testing.assert_close(msp, probs.mean(dim=0).max(dim=1).values)
    mi = scores(registry, "ensemble:mi", ctx, batch, members=3)
    torch.testing.assert_close(mi, sample_confidences(probs)["mi"])
    scores(registry, "ensemble:pe", ctx, batch, members=2)
    assert trained == [1002, 2002, 1002, 2002, 1002]
    with pytest.raises(UserError, match="at least 2"):
        registry.create("scorer", "ensemble", {"members": 1})


# -- end to end ----------------------------------------------------------------------
ALL_BASELINES = """
[suite.baselines]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", "margin", "max-logit", { name = "energy", temperature = 2.0 }, "doctor",
           { name = "mc-dropout:pe", T = 5 }, { name = "mc-dropout:mi", T = 5 },
           "grad-norm", "gradtrust", { name = "gradtrust:demo", layer = "fc_layer.3", label = "gradtrust-fc3" },
           { name = "ensemble", members = 2 }, { name = "ensemble:mi", members = 2 }]
metrics = ["accuracy", "auroc", "auac"]
seeds = [0]
bootstrap = { resamples = 20 }
"""


def test_every_baseline_runs_in_a_suite(runner, tiny_registry, tmp_path):
    import pandas as pd

    from probebench.cli import app

    out = tmp_path / "baselines"
    result = runner.invoke(
        app, ["run", "baselines", "--registry", str(tiny_registry(ALL_BASELINES)), "--out", str(out), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    methods = {
        "msp",
        "margin",
        "max-logit",
        "energy",
        "doctor",
        "mc-dropout:pe",
        "mc-dropout:mi",
        "grad-norm",
        "gradtrust",
        "gradtrust-fc3",
        "ensemble",
        "ensemble:mi",
    }
    assert set(table["method"]) == methods | {"-"}
    auac = table[table["metric"] == "auac"]
    assert len(auac) == len(methods) and auac["value"].between(0, 1).all()
