"""Which methods are tied with the best: paired bootstrap tests, Holm-corrected.

A leaderboard bolds the best value of a column and every value whose
difference from it is not significant. The test of one method against the
best is a paired bootstrap: both are evaluated on the *same* resampled test
samples (the resamples of the intervals, ``probebench.evaluate.Resamples``),
and with several seeds on the same resampled seeds, so the replicates of the
difference keep the correlation between two methods scored on one test set.
Its two-sided p-value is twice the smaller share of replicates on either side
of zero, with the usual +1 correction (Davison & Hinkley 1997, eq. 4.11):
``p = min(1, 2 (1 + #{d* <= 0}) / (B + 1))`` for a best that looks better, so
``p`` cannot fall below ``2 / (B + 1)``. The p-values of all methods in a
column are Holm-corrected (Holm 1979): a method is tied-best unless the step-
down procedure rejects its equality with the best at level ``alpha``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

Key = TypeVar("Key", bound=Hashable)


def paired_pvalue(best: np.ndarray, other: np.ndarray) -> float:
    """Two-sided bootstrap p-value that two methods are equal, from their
    replicates on the same resamples (``float[B]`` each, oriented so that
    larger is better). Replicates where either is undefined are left out;
    NaN when none is left."""
    diff = np.asarray(best, dtype=float) - np.asarray(other, dtype=float)
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return float("nan")
    below = int(np.count_nonzero(diff <= 0))
    above = int(np.count_nonzero(diff >= 0))
    return min(1.0, 2 * (1 + min(below, above)) / (len(diff) + 1))


def holm_rejected(pvalues: Mapping[Key, float], alpha: float) -> set[Key]:
    """Hypotheses rejected by Holm's step-down procedure at family-wise level
    ``alpha``; a NaN p-value is never rejected."""
    finite = sorted(((p, key) for key, p in pvalues.items() if np.isfinite(p)), key=lambda item: item[0])
    family = len(pvalues)
    rejected: set[Key] = set()
    for rank, (p, key) in enumerate(finite):
        if p > alpha / (family - rank):
            break
        rejected.add(key)
    return rejected


def seed_resampled(per_seed: np.ndarray, seed_draws: np.ndarray) -> np.ndarray:
    """Replicates ``float[B]`` of a mean over seeds: replicate ``b`` averages
    the seeds drawn in ``seed_draws[b]`` (indices [B, S]), each at its own
    test-sample resample ``b`` (``per_seed`` is float[S, B])."""
    per_seed = np.asarray(per_seed, dtype=float)
    if len(per_seed) == 1:
        return per_seed[0]
    columns = np.arange(per_seed.shape[1])[:, None]
    return per_seed[seed_draws, columns].mean(axis=1)


def seed_draws(seeds: int, resamples: int, seed: int) -> np.ndarray:
    """Indices [resamples, seeds] of seeds drawn with replacement, the same for
    every method of a comparison (so the seeds are paired too)."""
    return np.random.default_rng([seed, seeds]).integers(0, seeds, size=(resamples, seeds))


def tied_best(
    values: Mapping[Key, float],
    replicates: Mapping[Key, np.ndarray | None],
    higher_is_better: bool,
    alpha: float,
) -> set[Key]:
    """The best of ``values`` and every entry not significantly worse.

    ``replicates`` holds each entry's paired replicates (or None where there
    are none: such an entry is tied only when its value equals the best).
    With ``alpha`` 0 only the best values are returned.
    """
    finite = {k: v for k, v in values.items() if v is not None and np.isfinite(v)}
    if not finite:
        return set()
    sign = 1.0 if higher_is_better else -1.0
    top = max(sign * v for v in finite.values())
    best = {k for k, v in finite.items() if np.isclose(sign * v, top, rtol=0, atol=1e-12)}
    if alpha <= 0:
        return best
    anchor = next((k for k in best if replicates.get(k) is not None), None)
    if anchor is None:
        return best
    reference = sign * np.asarray(replicates[anchor], dtype=float)
    pvalues = {}
    for key in finite.keys() - best:
        other = replicates.get(key)
        if other is not None:
            pvalues[key] = paired_pvalue(reference, sign * np.asarray(other, dtype=float))
    rejected = holm_rejected(pvalues, alpha)
    return best | (set(pvalues) - rejected)


def check_alpha(alpha: float, option: str = "--alpha") -> float:
    """``alpha`` when it is a level in [0, 1); a one-line UserError otherwise."""
    from probebench.errors import UserError

    if not (0 <= alpha < 1) or not np.isfinite(alpha):
        raise UserError(f"{option} must lie in [0, 1) (e.g. 0.05; 0 marks only the best value), got {alpha:g}")
    return alpha


def describe(alpha: float, resamples: Sequence[int], several_seeds: bool) -> str:
    """The sentence under a table that says how its bold marks were decided."""
    if alpha <= 0 or not resamples:
        return "bold: best value"
    counts = "/".join(map(str, sorted(set(resamples))))
    over = " and over seeds" if several_seeds else ""
    return (
        f"bold: best, and tied with it (paired bootstrap over the same {counts} test resamples{over}, "
        f"Holm-corrected across the column, α = {alpha:g})"
    )
