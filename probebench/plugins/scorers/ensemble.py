"""``ensemble``: deep ensembles (Lakshminarayanan et al., NeurIPS 2017)."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl

VARIANTS = ("msp", "mi", "pe")


class Ensemble:
    """A deep ensemble of M classifiers of the suite's kind trained with
    different seeds (Lakshminarayanan et al., "Simple and scalable predictive
    uncertainty estimation using deep ensembles", NeurIPS 2017). Member 0 is the
    evaluated classifier itself; member m >= 1 is trained with seed
    ``run seed + seed_stride * m`` through ``ctx.train_classifier`` (cached like
    any classifier, so seeds 0,1,2 do not share members). With p_m the softmax
    of member m, variants (``ensemble:<variant>``), higher = more confident:

    - ``msp`` (default): max_c mean_m p_m[c], the MSP of the mean probability;
    - ``mi``: -(H(mean_m p_m) - mean_m H(p_m)), minus the mutual information
      (the members' disagreement, epistemic);
    - ``pe``: -H(mean_m p_m), minus the predictive entropy.

    Cost: M - 1 extra trainings (once, cached) and M - 1 forward passes per
    test set. The hit/miss outcome stays the evaluated classifier's.
    """

    name = "ensemble"
    version = "1"
    requests_classifiers = True  # its members (classifier_requests)
    option_help = {
        "variant": "msp (default), mi or pe; also given as ensemble:<variant>",
        "members": "M, the number of classifiers (the evaluated one included)",
        "seed_stride": "member m is trained with seed run_seed + seed_stride * m",
    }

    def __init__(self, variant: str = "msp", members: int = 3, seed_stride: int = 1000):

        if variant not in VARIANTS:
            raise UserError(
                f"ensemble: unknown variant {variant!r}; use one of {', '.join(VARIANTS)} (e.g. ensemble:mi)"
            )
        if members < 2:
            raise UserError(f"ensemble: members must be at least 2, got {members}")
        if seed_stride < 1:
            raise UserError(f"ensemble: seed_stride must be >= 1, got {seed_stride}")
        self.variant, self.members, self.seed_stride = variant, members, seed_stride
        self._for = None

    def member_seeds(self, seed: int) -> list[int]:
        return [seed + self.seed_stride * m for m in range(1, self.members)]

    def classifier_requests(self, seed: int, train_size: int) -> list[dict]:
        """The members ``prepare`` trains (``probebench.kinds.ClassifierRequests``)."""
        return [{"seed": s} for s in self.member_seeds(seed)]

    def prepare(self, ctx):
        self._others = [ctx.train_classifier(s) for s in self.member_seeds(ctx.seed)]
        self._for = ctx.classifier

    def score(self, ctx, batch):
        import torch

        from probebench.pipeline.features import forward
        from probebench.plugins.scorers._graph import per_batch
        from probebench.plugins.scorers._uncertainty import sample_confidences

        if self._for is not ctx.classifier:
            self.prepare(ctx)

        def member_probs():
            others = [forward(m, batch.images, (), ctx.batch_size, ctx.device)[0].softmax(dim=1) for m in self._others]
            return torch.stack([batch.probs, *others])

        key = ("ensemble", tuple(self.member_seeds(ctx.seed)))
        return sample_confidences(per_batch(batch, key, member_probs))[self.variant]


@hookimpl
def register_scorers():
    return [Ensemble]
