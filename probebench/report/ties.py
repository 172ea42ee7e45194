"""Which values of a table row or column are tied with the best.

The one place the rule lives, so that a significance test (e.g. a paired
bootstrap on the per-sample scores) can replace it: today a value is tied
with the best when its interval overlaps the best value's interval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

RULE = "bold: the best value and every value whose interval overlaps the best's"

if TYPE_CHECKING:  # numpy stays out of CLI start-up
    import numpy as np
    import numpy.typing as npt


def tied_best(
    values: npt.ArrayLike,
    lows: npt.ArrayLike,
    highs: npt.ArrayLike,
    higher_is_better: bool,
) -> np.ndarray:
    """A boolean mask over ``values``: the best value (by direction), every
    value equal to it, and every value whose interval ``[low, high]`` overlaps
    the best value's interval. A missing interval (NaN) is the point itself;
    NaN values are never tied."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=bool)
    lows = np.where(np.isfinite(np.asarray(lows, dtype=float)), lows, values)
    highs = np.where(np.isfinite(np.asarray(highs, dtype=float)), highs, values)
    best = int(np.nanargmax(values) if higher_is_better else np.nanargmin(values))
    overlaps = (lows <= highs[best]) & (lows[best] <= highs)
    return finite & (overlaps | np.isclose(values, values[best], rtol=0, atol=1e-12))
