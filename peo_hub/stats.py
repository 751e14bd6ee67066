"""Statistics of judge scores: means and intervals that do not overstate certainty.

Replies sampled for one prompt are not independent (they share the prompt), so the unit
that is resampled is the prompt: a cluster bootstrap (issue "honest fronts"). This module
is pure numpy/scipy; the sweep and the benchmarks call it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def bootstrap_ci(scores: Sequence[float], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))
