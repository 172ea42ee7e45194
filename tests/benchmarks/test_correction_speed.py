"""Batched prober-latent correction of 128 images vs the reference's one-image-at-a-time loop.

Run apart: ``pytest tests/benchmarks --benchmark-only -s``. Setup: the ``cnn``
classifier (width 32, as in the default suite) trained 2 epochs on mnist-5k; a
prober made of the CNN's own fc_layer.4 features (its last Linear, then
0.1 + 0.8 * sigmoid(margin - 2): capped like a label-smoothed prober); the 128
test images that prober finds least likely to be hits (what the label-free loop
edits); and, as the "flow", either the identity (latent = pixels) or a
randomly initialised normflows Glow of the size the issue measured (2 levels x
4 blocks x 32 hidden channels, ``sigmoid_inv`` scale map). The generators
branch trains real flows; an untrained Glow has the same cost per step.

Both runs do the same per-sample work (total steps agree within 5%: asserted;
float rounding moves a few samples' stop by a step).
``extra_info['images_per_second_ratio']`` is the batch's images/s over the
loop's (target >= 10); ``reference_5000_step_loop_seconds`` extrapolates the
loop's measured cost per step to the reference procedure, whose 0.92 stop
never fires so every image runs 5000 steps; ``gradient_step_ratio`` is the
ceiling batching can reach at all: the cost per image of one bare
forward+backward step (prober of the decoded latent) on 1 image over that on
128. Each case runs at the thread count the user gives: ``OMP_NUM_THREADS``
(``torch_threads`` in extra_info), else torch's default (the number of
cores), e.g. ``OMP_NUM_THREADS=1 pytest tests/benchmarks``. Under contention
more threads slow single-image steps and flatter the ratio, so read
multi-thread numbers from an idle machine.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace

import pytest
import torch

from probebench.pipeline.context import Context
from probebench.pipeline.correct import calibrate
from probebench.plugins.correctors.counterfactual import ProberLatent
from tests.benchmarks.timing import stat
from tests.toy_correction import IdentityFlow, LayerProber

N_IMAGES = 128
OPTIONS = {"lr": 0.05, "max_steps": 100}


class GlowFlow:
    """A multiscale normflows Glow for 1x28x28 with the probebench flow contract."""

    def __init__(self, levels: int = 2, blocks: int = 4, hidden: int = 32, shape=(1, 28, 28)):
        import normflows as nf

        c, h, w = shape
        q0, merges, flows = [], [], []
        for i in range(levels):
            flows.append(
                [
                    nf.flows.GlowBlock(
                        c * 2 ** (levels + 1 - i), hidden, split_mode="channel", scale=True, scale_map="sigmoid_inv"
                    )
                    for _ in range(blocks)
                ]
                + [nf.flows.Squeeze()]
            )
            if i > 0:
                merges.append(nf.flows.Merge())
                latent = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
            else:
                latent = (c * 2 ** (levels + 1), h // 2**levels, w // 2**levels)
            q0.append(nf.distributions.DiagGaussian(latent))
        self.model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)

    def encode(self, x):
        return self.model.inverse_and_log_det(x)[0]

    def decode(self, z):
        return self.model.forward_and_log_det(z)[0]


@pytest.fixture(scope="module")
def mnist_setup():
    from probebench.pipeline.train import fit
    from probebench.plugins.classifiers.cnn import CNN
    from probebench.plugins.datasets.mnist5k import Mnist5k

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = Mnist5k()
    train_x, train_y = data.load("train")
    test_x, _ = data.load("test")
    component = CNN(epochs=2)
    model = component.build(10, (1, 28, 28))
    fit(component, model, train_x, train_y, 0, "cpu", "benchmark cnn")
    last = model.fc_layer[6]

    def head(features):
        top2 = last(features).topk(2, dim=1).values
        return 0.1 + 0.8 * torch.sigmoid(top2[:, 0] - top2[:, 1] - 2)

    prober = LayerProber(model, "fc_layer.4", head)
    ctx = Context(
        model,
        "bench",
        10,
        (1, 28, 28),
        torch.device("cpu"),
        0,
        N_IMAGES,
        train_x,
        train_y,
        lambda stage, parts, build: build(),
        lambda seed: model,
        prober=prober,
    )
    threshold, level = calibrate(ctx, prober, train_x, train_y)
    ctx = replace(ctx, prober_threshold=threshold, prober_hit_level=level)
    with torch.no_grad():
        p_hit = torch.cat([prober(test_x[i : i + 256]) for i in range(0, len(test_x), 256)])
    torch.set_num_threads(threads)  # the benchmarks run at the user's thread count
    return ctx, test_x[p_hit.argsort()[:N_IMAGES]], train_x


def flow(name: str, train_x):
    if name == "identity":
        return IdentityFlow()
    warnings.filterwarnings("ignore", message=".*torch.lu.*")
    glow = GlowFlow()
    with torch.no_grad():
        glow.encode(train_x[:256])  # ActNorm initialises from the first batch
    glow.model.eval()
    return glow


def gradient_step_seconds(ctx, generator, images: torch.Tensor, repeat: int = 5) -> float:
    """Seconds per image of one bare gradient step of -log P(hit) w.r.t. the latent."""
    from probebench.plugins.correctors._engine import Flat, decode_rows

    with torch.no_grad():
        flat = Flat(generator.encode(images))
    prober = ctx.prober

    def step():
        z = flat.rows.clone().requires_grad_(True)
        torch.autograd.grad(-prober(decode_rows(generator, flat, z)).log().sum(), z)

    step()
    started = time.perf_counter()
    for _ in range(repeat):
        step()
    return (time.perf_counter() - started) / repeat / len(images)


@pytest.mark.parametrize("flow_name", ["identity", "glow"])
def test_batched_prober_latent_vs_one_image_at_a_time(benchmark, mnist_setup, flow_name):
    base, images, train_x = mnist_setup
    ctx = replace(base, generator=flow(flow_name, train_x))
    corrector = ProberLatent(**OPTIONS)
    batched = benchmark.pedantic(corrector.correct, args=(ctx, images), rounds=2, iterations=1)

    started = time.perf_counter()
    singles = [corrector.correct(ctx, images[i : i + 1]) for i in range(len(images))]
    loop_seconds = time.perf_counter() - started
    # Same work both ways: batched convolutions round differently from single-image ones, and Adam's
    # early steps are ~lr * sign(g), so a few samples cross their stop a step earlier or later.
    loop_steps = torch.cat([s.steps for s in singles]).float()
    assert abs(loop_steps.sum() - batched.steps.sum()) <= 0.05 * batched.steps.sum()

    batched_seconds = stat(benchmark, "median")
    steps = batched.steps.float()
    per_single_step = loop_seconds / float((steps + 1).sum())  # +1: the last evaluation of each image
    info = {
        "flow": flow_name,
        "images": N_IMAGES,
        "lr": OPTIONS["lr"],
        "max_steps": OPTIONS["max_steps"],
        "batched_seconds": batched_seconds,
        "loop_seconds": loop_seconds,
        "batched_images_per_second": N_IMAGES / batched_seconds,
        "loop_images_per_second": N_IMAGES / loop_seconds,
        "images_per_second_ratio": loop_seconds / batched_seconds,
        "median_steps": float(steps.median()),
        "p90_steps": float(steps.quantile(0.9)),
        "stopped_fraction": float(batched.details["reached"].float().mean()),
        "reference_5000_step_loop_seconds": per_single_step * 5000 * N_IMAGES,
        "same_steps_fraction": float((loop_steps == batched.steps).float().mean()),
        "torch_threads": torch.get_num_threads(),
        "gradient_step_ratio": (
            gradient_step_seconds(ctx, ctx.generator, images[:1], 20)
            / gradient_step_seconds(ctx, ctx.generator, images)
        ),
    }
    benchmark.extra_info.update(info)
    print(
        f"\n{flow_name}, {info['torch_threads']} thread(s): batched {info['batched_images_per_second']:.1f} img/s, loop "
        f"{info['loop_images_per_second']:.1f} img/s, ratio {info['images_per_second_ratio']:.1f}x "
        f"(bare gradient step {info['gradient_step_ratio']:.1f}x); steps median "
        f"{info['median_steps']:.0f}, p90 {info['p90_steps']:.0f}, stopped {info['stopped_fraction']:.2f}; "
        f"reference loop (5000 steps each) ~{info['reference_5000_step_loop_seconds'] / 60:.0f} min"
    )
