"""The flow generators (glow, realnvp) and the generator pipeline stage, on tiny flows."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from probebench.cache import ArtifactStore
from probebench.cli import app
from probebench.errors import UserError
from probebench.pipeline import generate
from probebench.plugins.generators.flows import Glow, RealNVP
from probebench.suite import ComponentSpec

TINY = {"levels": 2, "blocks": 1, "hidden": 8, "epochs": 1, "batch_size": 32, "warmup": 0, "lr": 3e-3}
FLOWS = {"glow": Glow, "realnvp": RealNVP}


@pytest.fixture(scope="module")
def digits():
    from probebench.plugins.datasets.mnist5k import Mnist5k

    images, _ = Mnist5k(limit=96).load("train")
    return images


def _train(flow, images, steps: int, lr: float = 1e-2) -> list[float]:
    """A few Adam steps on the bits/dim; returns the losses."""
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.Adam(flow.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        batch = images[(step * 32) % len(images) :][:32]
        loss = flow.bits_per_dim(batch, generator).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module", params=sorted(FLOWS))
def trained(request, digits):
    """(name, a tiny flow after 12 training steps on 96 real digits, its losses)."""
    torch.manual_seed(0)
    flow = FLOWS[request.param](**TINY).build((1, 28, 28))
    losses = _train(flow, digits, 12)
    return request.param, flow.eval(), losses


def test_log_prob_is_finite_and_training_lowers_bits_per_dim(trained):
    _name, _flow, losses = trained
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5, losses


def test_encode_decode_is_exact_on_real_and_random_images(trained, digits):
    _name, flow, _ = trained
    # couplings start as the identity (zero-initialised), so jolt every parameter to make this non-trivial
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(2)))
    random = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    for images in (digits[:32], random):
        with torch.no_grad():
            z = flow.encode(images)
            back = flow.decode(z)
        assert z.shape == (32, 784) and z.dtype == torch.float32
        assert (back - images).abs().max().item() < 1e-4
        assert (z - flow.encode(back)).abs().max().item() < 1e-3


def test_log_prob_and_bits_per_dim_agree(trained, digits):
    _name, flow, _ = trained
    with torch.no_grad():
        log_prob = flow.log_prob(digits[:8], torch.Generator().manual_seed(0))
        bits = flow.bits_per_dim(digits[:8], torch.Generator().manual_seed(0))
    assert log_prob.shape == bits.shape == (8,) and torch.isfinite(log_prob).all()
    expected = -(log_prob - 784 * torch.log(torch.tensor(256.0))) / (784 * torch.log(torch.tensor(2.0)))
    assert torch.allclose(bits, expected, atol=1e-4)


def test_decode_stays_finite_under_latent_optimisation(trained, digits):
    """50 Adam steps on z pushing a random linear 'classifier' on decode(z) as high as possible."""
    _name, flow, _ = trained
    classifier = torch.nn.Linear(784, 10)
    torch.nn.init.normal_(classifier.weight, std=1.0, generator=torch.Generator().manual_seed(0))
    z = flow.encode(digits[:16]).detach().requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=0.5)
    moved = False
    for _step in range(50):
        images = flow.decode(z)
        assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
        objective = classifier(images.flatten(1))[:, 3].sum()
        optimiser.zero_grad()
        (-objective).backward()
        assert torch.isfinite(z.grad).all()
        optimiser.step()
        moved = moved or (z.grad.abs().sum() > 0)
    assert moved and torch.isfinite(z).all()
    assert torch.isfinite(flow.decode(z * 10)).all()  # far outside the typical set too


@pytest.mark.parametrize("name", sorted(FLOWS))
@pytest.mark.parametrize("shape, dim", [((1, 28, 28), 784), ((3, 32, 32), 3072), ((2, 8, 12), 192)])
def test_shapes(name, shape, dim):
    torch.manual_seed(0)
    flow = FLOWS[name](levels=2, blocks=1, hidden=4).build(shape)
    images = torch.rand(3, *shape)
    with torch.no_grad():
        z = flow.encode(images)
        assert z.shape == (3, dim)
        assert flow.decode(z).shape == (3, *shape)
        assert flow.log_prob(images).shape == (3,)
        assert flow.sample(2).shape == (2, *shape)


@pytest.mark.parametrize("name", sorted(FLOWS))
@pytest.mark.parametrize("shape, levels", [((1, 27, 27), 2), ((1, 28, 28), 3), ((3, 30, 32), 2)])
def test_unsupported_shape_is_a_user_error(name, shape, levels):
    with pytest.raises(UserError, match=r"multiples of 2\^\d"):
        FLOWS[name](levels=levels).build(shape)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"levels": 0}, "levels"),
        ({"lr": 0.0}, "lr"),
        ({"alpha": 0.5}, "alpha"),
        ({"max_log_scale": 0.0}, "max_log_scale"),
    ],
)
def test_bad_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        Glow(**options)


def _splits(digits):
    dataset = SimpleNamespace(shape=(1, 28, 28))
    return SimpleNamespace(
        dataset=dataset, train_images=digits, test_images=digits[:32], validation=0, pool=0, fingerprint="test-digits"
    )


def test_trained_generator_is_cached_and_reloaded(tmp_path, digits, monkeypatch):
    from probebench.registry import Registry
    from tests.conftest import builtin_modules

    registry = Registry(builtin_modules(), autoload=False)
    store = ArtifactStore(tmp_path / "cache")
    spec = ComponentSpec("realnvp", dict(TINY))
    calls = []
    real_fit = generate.fit
    monkeypatch.setattr(generate, "fit", lambda *a, **k: (calls.append(1), real_fit(*a, **k))[1])
    args = (registry, store, ComponentSpec("mnist-5k"), spec, _splits(digits), 0, torch.device("cpu"))
    first, seconds, cached = generate.trained_generator(*args)
    again = (registry, ArtifactStore(tmp_path / "cache"), *args[2:])  # a later run opens the cache anew
    second, seconds_again, cached_again = generate.trained_generator(*again)
    assert calls == [1] and seconds == seconds_again > 0 and (cached, cached_again) == (False, True)
    assert len(list((tmp_path / "cache" / "generator").glob("*.pt"))) == 1
    with torch.no_grad():
        assert torch.equal(first.encode(digits[:4]), second.encode(digits[:4]))
    other = (registry, store, ComponentSpec("mnist-5k"), spec, _splits(digits), 1, torch.device("cpu"))
    generate.trained_generator(*other)
    assert calls == [1, 1]  # another seed trains another flow


def test_generator_stage_returns_the_flows_and_writes_rows_and_grids(tmp_path, digits):
    from probebench.pipeline.stage import Run
    from probebench.registry import Registry
    from probebench.suite import Suite
    from tests.conftest import builtin_modules

    registry = Registry(builtin_modules(), autoload=False)
    suite = Suite(
        "t",
        ComponentSpec("mnist-5k"),
        ComponentSpec("cnn"),
        (),
        (),
        generators=(ComponentSpec("glow", dict(TINY), "small-glow"),),
    )
    ctx = SimpleNamespace(seed=0, device=torch.device("cpu"))
    run = Run(suite, registry, ArtifactStore(tmp_path / "c"), _splits(digits), tmp_path)
    rows, flows = generate.generator_stage(run, ctx)
    assert list(flows) == ["small-glow"] and run.failures.entries == []
    flow = flows["small-glow"].flow
    assert flows["small-glow"].key == generate.generator_key(
        registry, suite.dataset, suite.generators[0], 0, data="test-digits"
    )
    assert not any(p.requires_grad for p in flow.parameters()) and not flow.training
    assert {r["metric"] for r in rows} == set(generate.METRICS)
    assert {(r["method"], r["classifier"], r["corruption"]) for r in rows} == {("small-glow", "-", "none")}
    values = {r["metric"]: r["value"] for r in rows}
    assert 0 < values["bits-per-dim"] < 8 and values["reconstruction-error"] < 1e-4
    assert (tmp_path / "small-glow-seed0-samples.png").is_file()
    assert (tmp_path / "small-glow-seed0-reconstructions.png").is_file()


GENERATOR_SUITE = """
[suite.flows]
dataset = { name = "mnist-5k", limit = 64 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp"]
metrics = ["accuracy", "auroc"]
generators = [
    { name = "glow", levels = 2, blocks = 1, hidden = 8, epochs = 1, warmup = 0 },
    { name = "realnvp", levels = 2, blocks = 1, hidden = 8, epochs = 1, warmup = 0, label = "nvp" },
]
bootstrap = { resamples = 20 }
"""


def test_run_reports_generator_quality_and_reuses_them(runner, tiny_registry, tmp_path):
    registry = tiny_registry(GENERATOR_SUITE)
    out = tmp_path / "run1"
    result = runner.invoke(app, ["run", "flows", "--registry", str(registry), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])
    quality = table[table["method"].isin(["glow", "nvp"])]
    assert set(zip(quality["method"], quality["metric"])) == {
        (m, k) for m in ("glow", "nvp") for k in ("bits-per-dim", "reconstruction-error", "train-seconds")
    }
    assert quality["ci_low"].isna().all() and (quality["classifier"] == "-").all()
    head = json.loads((out / "run.json").read_text())
    assert head["metrics"]["bits-per-dim"] == {"higher_is_better": False}
    assert head["suite"]["generators"][1]["label"] == "nvp"
    assert {p.name for p in out.glob("*.png")} == {
        f"{m}-seed0-{k}.png" for m in ("glow", "nvp") for k in ("samples", "reconstructions")
    }
    assert "bits-per-dim" in result.output

    again = runner.invoke(
        app, ["run", "flows", "--registry", str(registry), "--out", str(tmp_path / "run2"), "--device", "cpu"]
    )
    assert again.exit_code == 0, again.output
    first_output, second_output = " ".join(result.output.split()), " ".join(again.output.split())
    assert "generator nvp seed 0" in first_output and "from the cache" not in first_output
    assert second_output.count("from the cache") == 2
    second = pd.read_csv(tmp_path / "run2" / "results.csv", keep_default_na=False, na_values=[""])
    assert second[second["method"] == "nvp"]["value"].tolist() == quality[quality["method"] == "nvp"]["value"].tolist()


@pytest.mark.parametrize(
    "generators, message",
    [
        ('["glwo"]', "unknown generator 'glwo' (did you mean 'glow'"),
        ('["glow", "glow"]', "generator 'glow' appears twice"),
        ('[{ name = "glow", depth = 3 }]', "has no option 'depth'"),
    ],
)
def test_bad_generator_entries_are_user_errors(runner, tiny_registry, generators, message):
    extra = GENERATOR_SUITE.replace("[suite.flows]", "[suite.bad]").split("generators")[0]
    extra += f"generators = {generators}\n"
    result = runner.invoke(app, ["run", "bad", "--registry", str(tiny_registry(extra))])
    assert result.exit_code == 2 and message in result.output, result.output
