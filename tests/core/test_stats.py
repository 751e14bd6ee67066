"""peo_hub.core.stats: prompt-level (cluster) bootstrap intervals on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import bootstrap

from peo_hub.core.stats import (cluster_mean_ci, joint_bootstrap, paired_difference_ci, prompt_sums, ratio_mean,
                                split_prompts)


def width(interval: tuple[float, float] | None) -> float:
    assert interval is not None
    return interval[1] - interval[0]


def test_one_reply_per_prompt_is_the_plain_bootstrap() -> None:
    """With one reply per prompt, prompts are replies: the interval is scipy's plain one, exactly."""
    x = np.random.default_rng(1).normal(size=40)
    mean, ci = cluster_mean_ci([[v] for v in x], resamples=2000, seed=3)
    plain = bootstrap((x,), np.mean, method="percentile", n_resamples=2000, rng=np.random.default_rng(3))
    assert mean == pytest.approx(x.mean())
    assert ci == pytest.approx((plain.confidence_interval.low, plain.confidence_interval.high), rel=1e-12)


def test_known_variance_of_clustered_scores() -> None:
    """Prompt effect sd 0.3, reply noise sd 0.2, 10 replies per prompt, 400 prompts: the mean's
    standard error is sqrt(0.3^2 + 0.2^2/10)/sqrt(400), so the 95% interval is 2*1.96 SE wide."""
    rng = np.random.default_rng(0)
    n, m, sb, sw = 400, 10, 0.3, 0.2
    effects = rng.normal(0.0, sb, size=n)
    scores = effects[:, None] + rng.normal(0.0, sw, size=(n, m))
    se = math.sqrt(sb**2 + sw**2 / m) / math.sqrt(n)
    _, ci = cluster_mean_ci(scores.tolist(), resamples=4000, seed=0)
    assert width(ci) == pytest.approx(2 * 1.959964 * se, rel=0.1)
    # resampling replies as if independent would claim sqrt(sb^2 + sw^2)/sqrt(n m): ~3x narrower
    naive = math.sqrt(sb**2 + sw**2) / math.sqrt(n * m)
    assert width(ci) > 2.5 * 2 * 1.959964 * naive


def test_identical_copies_widen_the_interval() -> None:
    """Eight identical copies of one reply per prompt carry the information of one reply:
    the interval equals that of the single replies and is wider than with eight independent replies."""
    rng = np.random.default_rng(5)
    n, m = 30, 8
    single = rng.uniform(0, 1, size=n)
    copies = [[v] * m for v in single]
    independent = rng.uniform(0, 1, size=(n, m)).tolist()
    _, ci_copies = cluster_mean_ci(copies, seed=1)
    _, ci_single = cluster_mean_ci([[v] for v in single], seed=1)
    _, ci_indep = cluster_mean_ci(independent, seed=1)
    assert ci_copies == pytest.approx(ci_single, rel=1e-12)
    assert width(ci_copies) > 2 * width(ci_indep)  # sqrt(8) ~ 2.8 in expectation


def test_ragged_prompts_use_the_ratio_estimator() -> None:
    scores = [[1.0, 1.0, 1.0], [0.0]]
    sums, counts = prompt_sums(scores)
    assert ratio_mean(sums, counts) == pytest.approx(0.75)
    mean, ci = cluster_mean_ci(scores, resamples=500)
    assert mean == pytest.approx(0.75)
    assert 0.0 <= ci[0] <= ci[1] <= 1.0


def test_fewer_than_two_prompts_give_no_interval() -> None:
    assert cluster_mean_ci([[0.2, 0.4, 0.9]]) == (pytest.approx(0.5), None)
    assert paired_difference_ci([[1.0]], [[0.0]]) == (pytest.approx(1.0), None)


def test_paired_difference_cancels_shared_prompt_effects() -> None:
    """A policy that adds exactly 0.1 to every reply of the base: the paired interval is [0.1, 0.1]
    although each mean alone varies a lot between prompts."""
    rng = np.random.default_rng(2)
    base = rng.normal(0.5, 0.3, size=(25, 4))
    diff, ci = paired_difference_ci((base + 0.1).tolist(), base.tolist(), seed=0)
    assert diff == pytest.approx(0.1)
    assert ci == pytest.approx((0.1, 0.1), abs=1e-12)
    assert width(cluster_mean_ci(base.tolist())[1]) > 0.1


def test_paired_difference_known_variance() -> None:
    """Per-prompt differences with sd 0.2 over 400 prompts (one reply each): interval 2*1.96*0.2/20 wide."""
    rng = np.random.default_rng(4)
    base = rng.normal(0.0, 1.0, size=400)
    point = base + 0.05 + rng.normal(0.0, 0.2, size=400)
    diff, ci = paired_difference_ci([[v] for v in point], [[v] for v in base], resamples=4000)
    assert ci[0] < diff < ci[1]
    assert width(ci) == pytest.approx(2 * 1.959964 * 0.2 / 20, rel=0.1)
    with pytest.raises(ValueError, match="same prompts"):
        paired_difference_ci([[1.0]], [[1.0], [2.0]])


def test_joint_bootstrap_uses_one_resample_for_every_output() -> None:
    """Two outputs that differ by a constant on every resample have intervals that differ by it."""
    x = np.random.default_rng(6).normal(size=50)
    low, high = joint_bootstrap(lambda idx: np.stack([x[idx].mean(-1), x[idx].mean(-1) + 1.0]), 50, 800, seed=2)
    assert low[1] - low[0] == pytest.approx(1.0) and high[1] - high[0] == pytest.approx(1.0)
    assert joint_bootstrap(lambda idx: idx.mean(-1)[None], 1) is None


def test_split_prompts_is_seeded_disjoint_and_complete() -> None:
    selection, confirmation = split_prompts(16, 0.5, seed=0)
    assert len(selection) == len(confirmation) == 8
    assert sorted(selection + confirmation) == list(range(16))
    assert split_prompts(16, 0.5, seed=0) == (selection, confirmation)
    assert split_prompts(16, 0.5, seed=1) != (selection, confirmation)
    assert split_prompts(16, 0.0, seed=0) == (list(range(16)), list(range(16)))  # no split: both jobs on all
    assert [len(part) for part in split_prompts(3, 0.01, seed=0)] == [1, 2]  # never an empty part
    assert [len(part) for part in split_prompts(3, 0.99, seed=0)] == [2, 1]
    with pytest.raises(ValueError):
        split_prompts(10, 1.0, seed=0)
