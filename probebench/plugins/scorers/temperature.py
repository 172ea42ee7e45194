"""Temperature scaling (Guo, Pleiss, Sun & Weinberger, ICML 2017) as a post-hoc
calibrator under any scorer that reads logits: ``ts:msp``, ``ts:entropy``,
``ts:doctor``, ... . One temperature T is fitted on the suite's validation
split (``validation = N``: images nothing trains on) by minimising the
negative log-likelihood of softmax(z / T); the inner scorer then sees the
logits divided by T. T > 0 keeps every prediction, so accuracy is unchanged
and only the confidences move: compare ``ece`` of ``msp`` (before) with
``ts:msp`` (after) in one run.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

INVERSE_BOUNDS = (1e-3, 1e3)  # 1/T is kept in this range (separable validation data sends it to infinity)


def fit_inverse_temperature(logits: Any, labels: Any, steps: int = 100) -> float:
    """The 1/T minimising the mean NLL of softmax(z / T) on (``logits``, ``labels``).

    The NLL is convex in beta = 1/T (a log-sum-exp of beta z minus the
    linear beta z_y), with derivative mean(E_p[z] - z_y) and second
    derivative mean(Var_p[z]); damped Newton steps on beta converge in a few
    iterations, and beta is kept in ``INVERSE_BOUNDS``.
    """

    z = logits.double()
    true = z.gather(1, labels.long().view(-1, 1)).squeeze(1)

    def nll(beta: float) -> float:
        return float(((beta * z).logsumexp(dim=1) - beta * true).mean())

    beta = 1.0
    low, high = INVERSE_BOUNDS
    for _ in range(steps):
        p = (beta * z).softmax(dim=1)
        mean = (p * z).sum(dim=1)
        gradient = float((mean - true).mean())
        curvature = float(((p * z * z).sum(dim=1) - mean**2).mean())
        if abs(gradient) < 1e-12:
            break
        step = gradient / curvature if curvature > 1e-15 else gradient
        candidate = min(max(beta - step, low), high)
        while nll(candidate) > nll(beta) and abs(candidate - beta) > 1e-15:
            candidate = (candidate + beta) / 2  # damped: never increase the NLL
        if abs(candidate - beta) <= 1e-12 * max(beta, 1.0):
            break
        beta = candidate
    return beta


class TemperedBatch:
    """A batch whose logits are divided by a temperature; images and features
    are the original batch's (shared, not recomputed)."""

    def __init__(self, batch: Any, temperature: float):
        self.batch, self.temperature = batch, temperature
        self.ctx, self.images, self.cell = batch.ctx, batch.images, batch.cell

    @cached_property
    def logits(self) -> Any:
        return self.batch.logits / self.temperature

    @cached_property
    def probs(self) -> Any:
        return self.logits.softmax(dim=1)

    @property
    def predictions(self) -> Any:
        return self.batch.predictions

    def features(self, layer: str) -> Any:
        return self.batch.features(layer)

    def prefetch(self, layers: tuple[str, ...]) -> None:
        self.batch.prefetch(layers)

    def __len__(self) -> int:
        return len(self.batch)


class TemperatureScaled:
    """Temperature scaling (Guo et al., ICML 2017) under the scorer named by the
    variant (``ts:msp``, the default, ``ts:entropy``, ...): one T fitted on the
    validation split by minimising NLL, then the inner scorer on z / T. Needs
    ``validation = N`` in the suite. Higher = more confident."""

    name = "ts"
    version = "1"
    reference = "Guo, Pleiss, Sun & Weinberger, On Calibration of Modern Neural Networks, ICML 2017"
    option_help = {"variant": "the scorer that reads the scaled logits (msp by default); also given as ts:<scorer>"}

    def __init__(self, variant: str = "msp"):
        if variant == "ts" or variant.startswith("ts:"):
            raise UserError(f"ts: the inner scorer cannot be ts itself, got {variant!r}")
        self.variant = variant

    def prepare(self, ctx):
        if ctx.val_images is None or ctx.val_labels is None or len(ctx.val_labels) == 0:
            raise UserError(
                f"ts:{self.variant} fits its temperature on the validation split; "
                "add validation = N (e.g. 500) to the suite"
            )
        self.inner = ctx.registry.create("scorer", self.variant)
        if hasattr(self.inner, "prepare"):
            self.inner.prepare(ctx)
        logits, _ = ctx.forward(ctx.val_images)
        self.temperature = 1.0 / fit_inverse_temperature(logits, ctx.val_labels)

    def score(self, ctx, batch):
        return self.inner.score(ctx, TemperedBatch(batch, self.temperature))


@hookimpl
def register_scorers():
    return [TemperatureScaled]
