"""Statistics of judge scores: means and intervals that do not overstate certainty.

Replies sampled for one prompt are not independent (they share the prompt: a hard prompt
drags all of its replies down together), so the unit that is resampled is the PROMPT, not
the reply: a cluster bootstrap. With 16 prompts x 32 samples, resampling replies treats
512 correlated numbers as 512 independent ones and gives intervals about three times too
narrow on the toy world (DESIGN.md, "Statistics").

Everything here works on scores grouped by prompt (``scores_by_prompt[i]`` is the list of
scores of the replies to prompt ``i``; any number of prompts and of replies per prompt,
ragged allowed, one reply per prompt for greedy decoding) and delegates the resampling to
``scipy.stats.bootstrap``: the data handed to scipy is the vector of prompt indices, resampled
with ``paired=True`` semantics, so every statistic of one resample (every point's mean, every
paired difference, every hypervolume) sees the SAME resampled prompt set. A point's mean is
the ratio estimator ``sum of scores / number of replies`` over the resampled prompts (equal
to the mean of prompt means when every prompt has the same number of replies).

Intervals are percentile intervals (robust when a score is constant, e.g. a judge that
gives every reply 1.0, where BCa is undefined). This module is pure numpy/scipy: the sweep,
the front and the benchmarks call it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy.stats import bootstrap

#: The two-sided confidence level of every interval peo-hub reports.
CONFIDENCE = 0.95

Interval = tuple[float, float]
ScoresByPrompt = Sequence[Sequence[float]]


def prompt_sums(scores_by_prompt: ScoresByPrompt) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt: the sum of its replies' scores and how many replies it has (ragged allowed)."""
    sums = np.array([float(np.sum(s)) for s in scores_by_prompt], dtype=float)
    counts = np.array([len(s) for s in scores_by_prompt], dtype=float)
    return sums, counts


def ratio_mean(sums: np.ndarray, counts: np.ndarray) -> float:
    """Mean over replies of the prompts given (``nan`` when there are none)."""
    total = float(np.sum(counts))
    return float(np.sum(sums)) / total if total > 0 else math.nan


def joint_bootstrap(statistic: Callable[[np.ndarray], np.ndarray], n_prompts: int, resamples: int = 1000,
                    seed: int = 0, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray] | None:
    """Percentile intervals of a vector statistic of the prompts, prompts resampled jointly.

    ``statistic(idx)`` receives resampled prompt indices of shape ``(batch, n_prompts)`` and
    returns an array of shape ``(k, batch)`` (``k`` quantities computed on the same resample:
    several points' means, differences, hypervolumes). Returns ``(low, high)`` arrays of
    length ``k``, or ``None`` when fewer than two prompts leave nothing to resample.
    """
    if n_prompts < 2:
        return None
    result = bootstrap((np.arange(n_prompts),), lambda idx, axis=-1: statistic(np.asarray(idx, dtype=int)),
                       paired=True, vectorized=True, n_resamples=resamples, batch=max(1, min(resamples, 250)),
                       confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return np.atleast_1d(np.asarray(low, dtype=float)), np.atleast_1d(np.asarray(high, dtype=float))


def _resampled_means(sums: np.ndarray, counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Ratio means of ``(k, n_prompts)`` sums/counts over resamples ``idx (batch, n)``: ``(k, batch)``."""
    total = counts[:, idx].sum(axis=-1)
    return sums[:, idx].sum(axis=-1) / np.where(total > 0, total, np.nan)


def _interval(bounds: tuple[np.ndarray, np.ndarray] | None, k: int) -> list[Interval | None]:
    if bounds is None:
        return [None] * k
    return [(float(lo), float(hi)) if math.isfinite(lo) and math.isfinite(hi) else None
            for lo, hi in zip(*bounds)]


def cluster_mean_ci(scores_by_prompt: ScoresByPrompt, resamples: int = 1000, seed: int = 0,
                    confidence: float = CONFIDENCE) -> tuple[float, Interval | None]:
    """The mean score over all replies and its prompt-level (cluster) bootstrap interval.

    ``None`` for the interval when fewer than two prompts exist (one prompt gives no spread
    between prompts to measure, and a zero-width interval would claim certainty).
    """
    sums, counts = prompt_sums(scores_by_prompt)
    bounds = joint_bootstrap(lambda idx: _resampled_means(sums[None], counts[None], idx), len(sums),
                             resamples, seed, confidence)
    return ratio_mean(sums, counts), _interval(bounds, 1)[0]


def paired_difference_ci(scores_by_prompt: ScoresByPrompt, reference_by_prompt: ScoresByPrompt,
                         resamples: int = 1000, seed: int = 0,
                         confidence: float = CONFIDENCE) -> tuple[float, Interval | None]:
    """``mean(scores) - mean(reference)`` on the same prompts, with a paired prompt-level interval.

    Paired: each resample draws one set of prompts and both means are taken on it, so the
    prompt-to-prompt variation the two policies share (a prompt hard for both) cancels.
    """
    if len(scores_by_prompt) != len(reference_by_prompt):
        raise ValueError(f"paired scores need the same prompts: {len(scores_by_prompt)} vs {len(reference_by_prompt)}")
    a_sums, a_counts = prompt_sums(scores_by_prompt)
    b_sums, b_counts = prompt_sums(reference_by_prompt)
    sums, counts = np.stack([a_sums, b_sums]), np.stack([a_counts, b_counts])

    def difference(idx: np.ndarray) -> np.ndarray:
        means = _resampled_means(sums, counts, idx)
        return (means[0] - means[1])[None]

    bounds = joint_bootstrap(difference, len(a_sums), resamples, seed, confidence)
    return ratio_mean(a_sums, a_counts) - ratio_mean(b_sums, b_counts), _interval(bounds, 1)[0]


def split_prompts(n_prompts: int, selection_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split prompt indices into a selection part and a confirmation part, seeded, by prompt.

    The selection part decides (which points are on the front, which are presets, which
    alpha a search keeps); the confirmation part reports (scores, intervals, hypervolumes),
    so the winners' curse of choosing the best of many noisy points does not inflate what
    is reported. ``selection_fraction`` 0 means no split: every prompt does both jobs (the
    pre-split behaviour, biased, kept for tiny prompt sets). Both parts get at least one
    prompt when the fraction is strictly between 0 and 1 and there are two or more prompts.
    """
    if not 0.0 <= selection_fraction < 1.0:
        raise ValueError(f"selection_fraction must be in [0, 1), got {selection_fraction}")
    every = list(range(n_prompts))
    if selection_fraction == 0.0 or n_prompts < 2:
        return every, every
    k = min(n_prompts - 1, max(1, round(selection_fraction * n_prompts)))
    chosen = np.random.default_rng(seed).permutation(n_prompts)[:k]
    selection = sorted(int(i) for i in chosen)
    confirmation = [i for i in every if i not in set(selection)]
    return selection, confirmation
