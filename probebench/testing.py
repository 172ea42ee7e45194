"""Helpers for testing probebench plugins, in the spirit of pytest's ``pytester``.

A plugin author checks a component against its kind's contract without a
dataset, a trained CNN or a suite::

    from probebench.testing import check_scorer
    scores = check_scorer(MyScorer())          # runs on a tiny trained model

``tiny_context()`` builds a ``Context`` around a small two-layer network trained
for a fraction of a second on synthetic, learnable 8x8 images; each
``check_<kind>`` runs a component the way the pipeline does and raises an
``AssertionError`` saying which rule of ``docs/plugins.md`` it broke (shape,
dtype, range, determinism given a seed, inputs left unmodified).
``registry_with(...)`` registers in-process plugins next to the built-ins, and
``installed_registry()`` loads only what installed distributions bring through
the ``probebench`` entry-point group.
"""

from __future__ import annotations

import functools
import io
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
import torch

from probebench.errors import UserError
from probebench.kinds import (
    Attack,
    Classifier,
    Correction,
    Corrector,
    Corruption,
    Dataset,
    Generator,
    Metric,
    Prober,
    Scorer,
)
from probebench.pipeline.context import Batch, Context

if TYPE_CHECKING:
    from probebench.registry import Registry

P = ParamSpec("P")
R = TypeVar("R")
Payload = dict[str, Any]  # what ctx.artifact stores

SHAPE = (1, 8, 8)
NUM_CLASSES = 3


def tiny_data(
    n: int = 64, shape: tuple[int, int, int] = SHAPE, num_classes: int = NUM_CLASSES, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images float32 [n, *shape] in [0, 1] and int64 labels that a linear model
    can learn (the argmax of a fixed random projection), deterministic in ``seed``."""
    images = torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))
    projection = torch.randn(int(np.prod(shape)), num_classes, generator=torch.Generator().manual_seed(12345))
    labels = ((images.flatten(1) - 0.5) @ projection).argmax(dim=1)
    return images, labels


def tiny_model(
    shape: tuple[int, int, int] = SHAPE, num_classes: int = NUM_CLASSES, seed: int = 0, hidden: int = 16
) -> torch.nn.Module:
    """An untrained MLP whose layers are addressable by name: ``hidden`` (Linear),
    ``relu``, ``dropout`` (p=0.2, so MC-dropout methods have something to drop)
    and ``head`` (the last Linear, giving logits)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            OrderedDict(
                flatten=torch.nn.Flatten(),
                hidden=torch.nn.Linear(int(np.prod(shape)), hidden),
                relu=torch.nn.ReLU(),
                dropout=torch.nn.Dropout(0.2),
                head=torch.nn.Linear(hidden, num_classes),
            )
        )


def train_tiny(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int = 100, seed: int = 0, lr: float = 0.5
) -> torch.nn.Module:
    """Full-batch gradient descent: enough for a mix of hits and misses.

    Plain autograd rather than ``torch.optim``, whose first step imports
    ``torch._dynamo`` (about 4 s); on one thread, because for a model this
    small thread hand-offs cost more than the arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            for _ in range(steps):
                loss = torch.nn.functional.cross_entropy(model(images), labels)
                grads = torch.autograd.grad(loss, params)
                with torch.no_grad():
                    for param, grad in zip(params, grads):
                        param.sub_(lr * grad)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _memory_artifacts() -> Callable[..., Payload]:
    """``ctx.artifact`` without a disk: the payload makes the same round trip
    through ``torch.save`` / ``torch.load(weights_only=True)`` as in the real
    store, so a payload the cache could not reload fails here too."""
    stored: dict[str, Payload] = {}

    def artifact(
        stage: str, parts: Any, build: Callable[[], Payload], check: Callable[[Payload], object] | None = None
    ) -> Payload:
        from probebench.cache import hash_key

        key = hash_key(stage, parts)
        if key not in stored:
            payload = build()
            assert isinstance(payload, dict), f"ctx.artifact build() must return a dict, got {type(payload).__name__}"
            buffer = io.BytesIO()
            torch.save(payload, buffer)
            buffer.seek(0)
            try:
                stored[key] = torch.load(buffer, weights_only=True)
            except Exception as exc:  # what the real store would meet on the next run
                raise AssertionError(
                    f"ctx.artifact payload for stage {stage!r} cannot be reloaded with weights_only=True: "
                    f"{exc}; keep payloads to tensors and plain Python values"
                ) from None
            if check is not None:  # the real store rejects (and rebuilds) what fails it
                check(stored[key])
        return stored[key]

    return artifact


def tiny_context(
    seed: int = 0,
    shape: tuple[int, int, int] = SHAPE,
    num_classes: int = NUM_CLASSES,
    n_train: int = 96,
    classifier: torch.nn.Module | None = None,
) -> Context:
    """A ``Context`` as a scorer or corrector receives it, on the CPU: a tiny
    trained classifier (or ``classifier``), its training split, an in-memory
    ``artifact`` store and ``train_classifier(seed)`` for ensembles."""
    train_images, train_labels = tiny_data(n_train, shape, num_classes, seed=1000 + seed)

    def train_classifier(other_seed: int) -> torch.nn.Module:
        return train_tiny(tiny_model(shape, num_classes, other_seed), train_images, train_labels, seed=other_seed)

    model = classifier if classifier is not None else train_classifier(seed)
    return Context(
        classifier=model.eval(),
        classifier_key=f"tiny-{seed}",
        num_classes=num_classes,
        shape=_three(shape),
        device=torch.device("cpu"),
        seed=seed,
        batch_size=32,
        train_images=train_images,
        train_labels=train_labels,
        artifact=_memory_artifacts(),
        train_classifier=train_classifier,
    )


def _three(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """``shape`` as a tuple, also when a caller passed a list."""
    channels, height, width = shape
    return channels, height, width


def tiny_images(ctx: Context, n: int = 40, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images and labels for ``ctx`` (never seen in training)."""
    return tiny_data(n, ctx.shape, ctx.num_classes, seed=seed)


# -- one check per kind -------------------------------------------------------


def _one_thread(check: Callable[P, R]) -> Callable[P, R]:
    """Run a check on one thread: on tiny tensors, thread hand-offs cost more
    than the arithmetic (on a busy 2-core machine, 50x more)."""

    @functools.wraps(check)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


def _check_image_batch(images: torch.Tensor, where: str, shape: tuple[int, ...] | None = None) -> None:
    from probebench.pipeline.data import check_images

    try:
        check_images(images, where, shape)
    except UserError as exc:
        raise AssertionError(str(exc)) from None
    assert images.dtype == torch.float32, f"{where}: images must be float32, got {images.dtype}"


@_one_thread
def check_dataset(dataset: Dataset, root: str | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Both splits load as float32 [N,C,H,W] in [0,1] of ``dataset.shape`` with
    int64 labels in 0..num_classes-1; returns ``{split: (images, labels)}``."""
    assert isinstance(dataset.num_classes, int) and dataset.num_classes >= 2, "num_classes must be an int >= 2"
    assert len(tuple(dataset.shape)) == 3, f"shape must be (C, H, W), got {dataset.shape!r}"
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split in ("train", "test"):
        images, labels = dataset.load(split, root)
        where = f"dataset {dataset.name!r} split {split!r}"
        _check_image_batch(images, where, tuple(dataset.shape))
        assert isinstance(labels, torch.Tensor) and labels.dtype == torch.int64, f"{where}: labels must be int64"
        assert labels.shape == (len(images),), f"{where}: labels must have shape [{len(images)}]"
        assert len(labels) == 0 or 0 <= int(labels.min()) <= int(labels.max()) < dataset.num_classes, (
            f"{where}: labels must lie in 0..{dataset.num_classes - 1}"
        )
        again = dataset.load(split, root)
        assert torch.equal(again[0], images) and torch.equal(again[1], labels), f"{where}: loading is not deterministic"
        splits[split] = (images, labels)
    return splits


@_one_thread
def check_corruption(corruption: Corruption, images: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
    """Every severity 1..5 keeps shape and [0, 1], the same generator seed gives
    the same output, and severity 5 changes the images at least as much as 1."""
    if images is None:
        images = tiny_data(8, (3, 32, 32))[0]
    outputs: dict[int, torch.Tensor] = {}
    for severity in range(1, 6):
        out = corruption(images.clone(), severity, torch.Generator().manual_seed(0))
        where = f"corruption {corruption.name!r} severity {severity}"
        _check_image_batch(out, where, tuple(images.shape[1:]))
        assert out.shape == images.shape, f"{where}: returned {list(out.shape)} for {list(images.shape)}"
        again = corruption(images.clone(), severity, torch.Generator().manual_seed(0))
        assert torch.equal(out, again), f"{where}: not deterministic given the generator"
        outputs[severity] = out
    change = {s: (out - images).abs().mean().item() for s, out in outputs.items()}
    assert change[5] >= change[1], f"corruption {corruption.name!r}: severity 5 changes less than 1 ({change})"
    return outputs


@_one_thread
def check_classifier(
    classifier: Classifier, num_classes: int = NUM_CLASSES, shape: tuple[int, int, int] = (1, 28, 28)
) -> torch.nn.Module:
    """``build`` returns an nn.Module mapping [N,C,H,W] to [N,num_classes] logits
    with named hidden layers; returns the model."""
    model = classifier.build(num_classes, _three(shape))
    assert isinstance(model, torch.nn.Module), f"build() must return a torch.nn.Module, got {type(model).__name__}"
    names = [n for n, _ in model.named_modules() if n]
    assert names, "the model has no named sub-modules: hidden layers must be addressable by name"
    images = tiny_data(4, shape, num_classes)[0]
    with torch.no_grad():
        logits = model.eval()(images)
    assert logits.shape == (4, num_classes), f"logits must be [N, {num_classes}], got {list(logits.shape)}"
    assert torch.isfinite(logits).all(), "logits contain NaN or infinite values"
    return model


@_one_thread
def check_generator(generator: Generator, shape: tuple[int, int, int] = SHAPE, atol: float = 1e-4) -> Any:
    """``decode(encode(x))`` gives back ``x`` within ``atol`` and ``log_prob`` is a
    finite [N]; returns the flow."""
    flow = generator.build(_three(shape))
    images = tiny_data(6, shape)[0].clamp(0.02, 0.98)
    with torch.no_grad():
        z = flow.encode(images)
        back = flow.decode(z)
        log_prob = flow.log_prob(images)
    error = (back - images).abs().max().item()
    assert error < atol, f"generator {generator.name!r}: decode(encode(x)) differs from x by {error:.3g}"
    assert log_prob.shape == (len(images),), f"log_prob must be [N], got {list(log_prob.shape)}"
    assert torch.isfinite(log_prob).all(), "log_prob is not finite"
    return flow


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos = positive.sum()
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@_one_thread
def check_prober(prober: Prober, dim: int = 8, n: int = 400, min_auroc: float = 0.9) -> np.ndarray:
    """Fitted on synthetic features where hit/miss is learnable (20% misses),
    ``predict`` returns P(hit) [N] in [0, 1] with AUROC >= ``min_auroc``."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(n, dim, generator=generator)
    hit = features[:, 0] + 0.3 * torch.randn(n, generator=generator) > -0.84
    prober.fit(features.clone(), hit.clone())
    predicted = prober.predict(features.clone())
    p_hit = predicted.detach().cpu().numpy() if isinstance(predicted, torch.Tensor) else np.asarray(predicted)
    assert p_hit.shape == (n,), f"predict() must return [N], got {list(p_hit.shape)}"
    assert np.isfinite(p_hit).all() and (p_hit >= 0).all() and (p_hit <= 1).all(), "P(hit) must lie in [0, 1]"
    auroc = _auroc(p_hit, hit.numpy())
    assert auroc >= min_auroc, f"prober {prober.name!r} reaches AUROC {auroc:.3f} on a learnable task"
    return p_hit


@_one_thread
def check_scorer(scorer: Scorer, ctx: Context | None = None, images: torch.Tensor | None = None) -> np.ndarray:
    """Runs ``prepare(ctx)`` (if any) and ``score(ctx, batch)`` as the pipeline
    does: scores are a finite float [N], the same seed gives the same scores,
    and the batch's images are left as they were. Returns the scores."""
    from probebench.pipeline.score import check_scores

    ctx = ctx or tiny_context()
    images = tiny_images(ctx)[0] if images is None else images
    original = images.clone()
    if hasattr(scorer, "prepare"):
        torch.manual_seed(ctx.seed)
        scorer.prepare(ctx)
    runs = []
    for _ in range(2):
        torch.manual_seed(ctx.seed)
        raw = scorer.score(ctx, Batch(ctx, images))
        try:
            runs.append(check_scores(raw, len(images)))
        except ValueError as exc:
            raise AssertionError(f"scorer {scorer.name!r} {exc}") from None
        assert torch.equal(images, original), f"scorer {scorer.name!r} modified the batch's images"
    assert np.array_equal(runs[0], runs[1]), f"scorer {scorer.name!r} is not deterministic given the seed"
    return runs[0]


@_one_thread
def check_corrector(corrector: Corrector, ctx: Context | None = None, images: torch.Tensor | None = None) -> Correction:
    """``correct(ctx, images)`` returns a ``Correction``: images of the same shape
    in [0, 1], int64 steps [N] >= 0, the same output for the same seed, and the
    input left as it was. Returns the correction."""
    ctx = ctx or tiny_context()
    images = tiny_images(ctx)[0] if images is None else images
    original = images.clone()
    results = []
    for _ in range(2):
        torch.manual_seed(ctx.seed)
        out = corrector.correct(ctx, images)
        where = f"corrector {corrector.name!r}"
        assert isinstance(out, Correction), f"{where}: correct() must return probebench.kinds.Correction"
        _check_image_batch(out.images, where, tuple(images.shape[1:]))
        assert out.images.shape == images.shape, f"{where}: returned {list(out.images.shape)} images"
        assert isinstance(out.steps, torch.Tensor) and out.steps.dtype == torch.int64, (
            f"{where}: steps must be an int64 tensor"
        )
        assert out.steps.shape == (len(images),), f"{where}: steps must be [N]"
        assert (out.steps >= 0).all(), f"{where}: steps must be >= 0"
        assert torch.equal(images, original), f"{where}: modified its input images"
        results.append(out)
    assert torch.equal(results[0].images, results[1].images), f"corrector {corrector.name!r} is not deterministic"
    return results[0]


@_one_thread
def check_metric(metric: Metric, n: int = 60, resamples: int = 4) -> float:
    """A float for 1-d inputs and one value per row for [B, N] inputs (equal to
    the 1-d values), with a boolean ``higher_is_better``. Returns the 1-d value."""
    assert isinstance(metric.higher_is_better, bool), "higher_is_better must be a bool"
    rng = np.random.default_rng(0)
    confidence = rng.random((resamples, n))
    hit = rng.random((resamples, n)) < 0.7
    single = metric(confidence[0], hit[0])
    assert np.ndim(single) == 0, f"metric {metric.name!r} must return a number for 1-d inputs"
    batched = np.asarray(metric(confidence, hit))
    assert batched.shape == (resamples,), f"metric {metric.name!r} must return [B] for [B, N] inputs"
    rows = np.array([metric(confidence[i], hit[i]) for i in range(resamples)], dtype=float)
    assert np.allclose(batched, rows, equal_nan=True), f"metric {metric.name!r}: batched values differ from 1-d"
    return float(single)


@_one_thread
def check_attack(attack: Attack) -> dict[int, torch.Tensor]:
    """Against a tiny model trained on ``tiny_data``: every severity 1..5
    keeps shape and [0, 1], the same generator seed gives the same output,
    and the model's accuracy at severity 5 is at most its accuracy at 1."""
    images, labels = tiny_data(48)
    model = train_tiny(tiny_model(), images, labels)
    outputs: dict[int, torch.Tensor] = {}
    accuracy: dict[int, float] = {}
    for severity in range(1, 6):
        out = attack(model, images.clone(), labels, severity, torch.Generator().manual_seed(0))
        where = f"attack {attack.name!r} severity {severity}"
        _check_image_batch(out, where, tuple(images.shape[1:]))
        assert out.shape == images.shape, f"{where}: returned {list(out.shape)} for {list(images.shape)}"
        again = attack(model, images.clone(), labels, severity, torch.Generator().manual_seed(0))
        assert torch.equal(out, again), f"{where}: not deterministic given the generator"
        outputs[severity] = out
        with torch.no_grad():
            accuracy[severity] = (model(out).argmax(1) == labels).float().mean().item()
    assert accuracy[5] <= accuracy[1], f"attack {attack.name!r}: accuracy at severity 5 above 1 ({accuracy})"
    return outputs


CHECKS: dict[str, Callable[..., Any]] = {
    "dataset": check_dataset,
    "corruption": check_corruption,
    "classifier": check_classifier,
    "generator": check_generator,
    "prober": check_prober,
    "scorer": check_scorer,
    "corrector": check_corrector,
    "metric": check_metric,
    "attack": check_attack,
}


# -- registries ---------------------------------------------------------------


def registry_with(*plugins: Any, builtin: bool = True) -> Registry:
    """A Registry with the built-in plugins (unless ``builtin=False``) and
    ``plugins``: modules, objects with hook methods, or bare ``@hookimpl``
    functions. Entry points are not loaded."""
    from probebench.registry import Registry
    from probebench.suite import load_config

    registry = Registry(load_config().builtin if builtin else [], autoload=False)
    for plugin in plugins:
        if isinstance(plugin, types.FunctionType):
            function = plugin
            plugin = types.ModuleType(f"{function.__module__}.{function.__name__}")  # hashable, as pluggy needs
            setattr(plugin, function.__name__, function)
        registry.add_plugin(plugin)
    return registry


def installed_registry() -> Registry:
    """A Registry of what installed distributions register through the
    ``probebench`` entry-point group only (whatever PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD says)."""
    from probebench.registry import Registry

    return Registry([], autoload=True)
