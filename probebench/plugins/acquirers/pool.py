"""Acquirers that pick images of the unlabelled pool: ``random``, the
uncertainty strategies and two diversity peers (``coreset``, ``badge``).

The uncertainty strategies pick the ``k`` pool images a scorer is least
confident about, so each is one scorer plugin seen from the pool's side:
``msp`` (least confident), ``entropy``, ``margin``, ``bald`` (MC-dropout
mutual information, ``mc-dropout:mi``) and ``prober`` (the lowest P(hit) of
the prober, trained on this round's classifier's own training outcomes).
A third-party plugin gets the same behaviour by subclassing ``LeastConfident``
with another ``scorer`` name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


def picked(pool: Any, index: Any) -> Any:
    """The ``Acquisition`` of pool images ``index`` (nothing generated)."""
    import torch

    from probebench.kinds import Acquisition

    index = torch.as_tensor(index, dtype=torch.long)
    return Acquisition(pool[index], index, torch.zeros(len(index), dtype=torch.bool))


def least_confident(confidence: Any, k: int) -> Any:
    """Indices of the ``k`` lowest confidences; ties go to the lower index."""
    import torch

    confidence = torch.as_tensor(confidence, dtype=torch.float64)
    order = torch.sort(confidence, stable=True).indices
    return order[:k]


def pool_confidence(ctx: Any, scorer_name: str, options: dict[str, Any], pool: Any) -> tuple[Any, Any]:
    """(confidence [P] of a scorer on the pool images for ``ctx``'s classifier
    (higher = surer), the prepared scorer)."""
    import torch

    from probebench.pipeline.context import Batch

    scorer = ctx.registry.create("scorer", scorer_name, options)
    if hasattr(scorer, "prepare"):
        scorer.prepare(ctx)
    return torch.as_tensor(scorer.score(ctx, Batch(ctx, pool)), dtype=torch.float64), scorer


class Random:
    """Uniformly random pool images: the baseline every strategy is measured against."""

    name = "random"
    version = "1"

    def acquire(self, ctx, pool, k, generator):
        import torch

        return picked(pool, torch.randperm(len(pool), generator=generator)[:k])


class LeastConfident:
    """Least confident: the ``k`` pool images of lowest maximum softmax
    probability. The base of the uncertainty acquirers: a subclass names
    another scorer (``scorer``, with ``scorer_options``) whose ``k`` least
    confident pool images it picks."""

    name = "msp"
    version = "1"
    scorer: ClassVar[str] = "msp"
    scorer_options: dict[str, Any] = {}  # read-only; subclasses with options set their own

    def acquire(self, ctx, pool, k, generator):
        confidence, _scorer = pool_confidence(ctx, self.scorer, self.scorer_options, pool)
        return picked(pool, least_confident(confidence, k))


class Entropy(LeastConfident):
    """The ``k`` pool images of highest predictive entropy."""

    name = scorer = "entropy"


class Margin(LeastConfident):
    """The ``k`` pool images with the smallest gap between the top two class probabilities."""

    name = scorer = "margin"


class Bald(LeastConfident):
    """BALD (Houlsby et al. 2011; Gal et al. 2017): the ``k`` pool images of
    highest mutual information between prediction and weights under MC
    dropout (``T`` stochastic passes)."""

    name = "bald"
    scorer = "mc-dropout"
    option_help = {"T": "MC-dropout passes"}

    def __init__(self, T: int = 20):
        if T < 2:
            raise UserError(f"bald: T must be at least 2 passes, got {T}")
        self.scorer_options = {"variant": "mi", "T": T}


class ProberAcquirer(LeastConfident):
    """The ``k`` pool images of least P(hit) under the prober (the ``prober``
    scorer with ``prober_options``), trained on this round's classifier."""

    name = scorer = "prober"
    option_help = {"prober_options": "options of the prober scorer (`probebench show scorer prober`)"}

    def __init__(self, prober_options: dict[str, Any] | None = None):
        # default: hit/miss outcomes on the model's own training images, hidden features only (the
        # reference recipe); cross-fitting would train fold models every round
        self.scorer_options = {"source": "train", "outputs": "none", **(prober_options or {})}


class Coreset:
    """Core-set (Sener & Savarese 2018), k-center greedy: repeatedly pick the
    pool image farthest from everything labelled or picked so far, in the
    feature space of ``layer`` (default: the input of the classifier's last
    linear layer)."""

    name = "coreset"
    version = "1"
    option_help = {"layer": "module whose output is the feature space; default: the input of the last nn.Linear"}

    def __init__(self, layer: str | None = None):
        self.layer = layer

    def acquire(self, ctx, pool, k, generator):
        from probebench.plugins.acquirers._features import embed, k_center_greedy

        labelled = embed(ctx, ctx.train_images, self.layer)
        return picked(pool, k_center_greedy(embed(ctx, pool, self.layer), labelled, k))


class Badge:
    """BADGE (Ash et al., ICLR 2020): k-means++ seeding on gradient embeddings,
    the gradient of the loss with respect to the last linear layer's weights
    with the predicted class as the label. An embedding's norm grows with the
    classifier's uncertainty and its direction follows the image's features,
    so the picks are uncertain and diverse. The generator seeds the sampling."""

    name = "badge"
    version = "1"

    def acquire(self, ctx, pool, k, generator):
        from probebench.plugins.acquirers._features import badge_seeds, embed_and_logits

        return picked(pool, badge_seeds(*embed_and_logits(ctx, pool, None), k, generator))


@hookimpl
def register_acquirers():
    return [Random, LeastConfident, Entropy, Margin, Bald, ProberAcquirer, Coreset, Badge]
