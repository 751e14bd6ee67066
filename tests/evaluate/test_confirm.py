"""peo_hub.evaluate.confirm: fronts chosen on selection prompts, reported on confirmation prompts, with
prompt-level hypervolume intervals resampled jointly for every point."""

from __future__ import annotations

import numpy as np
import pytest

from peo_hub.evaluate.confirm import front_from_records
from peo_hub.bundle.front import check_front, method_hypervolumes
from peo_hub.core.measures import GuardThresholds
from peo_hub.core.pareto import hypervolume
from peo_hub.core.stats import split_prompts

ASPECTS = ["helpful", "harmless"]


def record(method: str, helpful: np.ndarray, harmless: np.ndarray, w: float | None = None,
           alpha: float | None = 0.0, guard: dict | None = None) -> dict:
    """An evaluation record: scores grouped by prompt (rows) and reply (columns)."""
    weights = None if w is None else {"helpful": w, "harmless": 1 - w}
    rec = {"label": f"{method}-{w}-{alpha}", "method": method, "weights": weights, "alpha": alpha,
           "coefficients": None if w is None else {k: (1 + (alpha or 0)) * v for k, v in weights.items()},
           "metrics": {"helpful": {"scores": np.clip(helpful, 0, 1).tolist()},
                       "harmless": {"scores": np.clip(harmless, 0, 1).tolist()}},
           "prompts": [f"p{i}" for i in range(len(helpful))], "samples": {}, "recipe_hash": "x"}
    if guard is not None:
        rec["guard"] = {k: [[v] * helpful.shape[1] for _ in range(helpful.shape[0])] for k, v in guard.items()}
    return rec


def noisy_sweep(n_prompts: int = 40, samples: int = 4, seed: int = 0) -> list[dict]:
    """Twelve family points with the SAME true scores (0.5, 0.5) and independent noise, plus a base."""
    rng = np.random.default_rng(seed)
    shape = (n_prompts, samples)
    recs = [record("base", np.full(shape, 0.4), np.full(shape, 0.4), None, None)]
    for k in range(12):
        recs.append(record("soup" if k % 2 else "peo", rng.binomial(1, 0.5, shape).astype(float),
                           rng.binomial(1, 0.5, shape).astype(float), k / 12, 0.0 if k % 2 else 0.5))
    return recs


def test_selection_bias_is_removed_by_confirmation() -> None:
    """Twelve equal points: the best of them on the selection prompts look better than they are;
    on the confirmation prompts the same chosen points score what they really score."""
    recs = noisy_sweep()
    selection, confirmation = split_prompts(40, 0.5, seed=0)
    front = front_from_records(ASPECTS, recs, selection, confirmation, resamples=300)
    assert check_front(front) == []
    assert front.hypervolume_selection["peo"] > front.hypervolume["peo"]
    assert front.hypervolume["peo"] == pytest.approx(0.25, abs=0.06)  # truth: the box (0.5, 0.5)
    point = front.points[1]
    assert point.selection is not None and point.metrics["helpful"].model_extra["n_prompts"] == 20
    assert front.evaluation_split.selection == selection and front.evaluation_split.confirmation == confirmation


def test_no_split_reduces_to_the_plain_front() -> None:
    recs = noisy_sweep(n_prompts=10)
    every = list(range(10))
    front = front_from_records(ASPECTS, recs, every, every, resamples=200)
    assert all(p.selection is None for p in front.points) and front.hypervolume_selection is None
    means = [{a: float(np.mean(r["metrics"][a]["scores"])) for a in ASPECTS} for r in recs]
    points = [{"method": r["method"], "alpha": r["alpha"], "metrics": m} for r, m in zip(recs, means)]
    assert front.hypervolume == pytest.approx(method_hypervolumes(points, ASPECTS, {"helpful": 0, "harmless": 0}))
    assert front.evaluation_split.selection_fraction == 0.0


def test_paired_hypervolume_difference_sees_what_separate_intervals_miss() -> None:
    """PEO points = the soups + 0.03 on every reply, prompts very unequal: the two hypervolume
    intervals overlap, but the paired difference (same resampled prompts for both) is clearly > 0."""
    rng = np.random.default_rng(1)
    n, m = 30, 4
    difficulty = rng.uniform(0.1, 0.8, size=(n, 1))
    recs = [record("base", np.full((n, m), 0.3), np.full((n, m), 0.3), None, None)]
    for k, w in enumerate((0.0, 0.5, 1.0)):
        h = difficulty + 0.1 * w + rng.normal(0, 0.02, (n, m))
        s = difficulty + 0.1 * (1 - w) + rng.normal(0, 0.02, (n, m))
        recs.append(record("soup", h, s, w, 0.0))
        recs.append(record("peo", h + 0.03, s + 0.03, w, 0.5))
    every = list(range(n))
    front = front_from_records(ASPECTS, recs, every, every, resamples=1000)
    peo_ci, soup_ci = front.hypervolume_ci["peo"], front.hypervolume_ci["soup"]
    assert peo_ci[0] < soup_ci[1]  # separately: overlapping
    diff = front.hypervolume_difference["peo_minus_soup"]
    assert diff.ci[0] > 0 and diff.verdict == "better"  # jointly: PEO better at 95%
    assert diff.estimate == pytest.approx(front.hypervolume["peo"] - front.hypervolume["soup"])
    assert peo_ci[0] <= front.hypervolume["peo"] <= peo_ci[1]


def test_identical_families_differ_by_exactly_zero() -> None:
    rng = np.random.default_rng(2)
    shape = (12, 3)
    recs = [record("base", np.full(shape, 0.2), np.full(shape, 0.2), None, None)]
    for w in (0.0, 0.5, 1.0):
        h, s = rng.uniform(0, 1, shape), rng.uniform(0, 1, shape)
        recs.append(record("soup", h, s, w, 0.0))
        recs.append(record("morl", h, s, w, None))
    every = list(range(12))
    front = front_from_records(ASPECTS, recs, every, every, resamples=200)
    diff = front.hypervolume_difference["peo_minus_morl"]
    assert diff.estimate == 0.0 and diff.ci == (0.0, 0.0) and diff.verdict == "undecided"


def test_constant_scores_give_zero_width_hypervolume_intervals() -> None:
    shape = (8, 2)
    recs = [record("base", np.full(shape, 0.3), np.full(shape, 0.6), None, None),
            record("soup", np.full(shape, 0.5), np.full(shape, 0.5), 0.5, 0.0)]
    every = list(range(8))
    front = front_from_records(ASPECTS, recs, every, every, resamples=200)
    assert front.hypervolume_ci["soup"] == pytest.approx((0.25, 0.25))
    assert front.hypervolume["base"] == pytest.approx(hypervolume([[0.3, 0.6]], [0, 0]))
    assert front.points[1].metrics["helpful"].model_extra["vs_base"] == {"mean": pytest.approx(0.2),
                                                                          "ci": [pytest.approx(0.2), pytest.approx(0.2)]}


def test_flagged_points_stay_but_never_become_presets() -> None:
    """The most helpful point babbles (low log-probability under the base): flagged, drawn, no preset."""
    shape = (10, 2)
    ok = {"base_logprob": -1.0, "distinct_2": 0.9, "length": 10.0}
    recs = [record("base", np.full(shape, 0.3), np.full(shape, 0.6), None, None, guard=ok),
            record("soup", np.full(shape, 0.5), np.full(shape, 0.7), 0.5, 0.0, guard=ok),
            record("peo", np.full(shape, 0.9), np.full(shape, 0.55), 1.0, 0.5,
                   guard={**ok, "base_logprob": -4.0})]
    every = list(range(10))
    front = front_from_records(ASPECTS, recs, every, every, resamples=200, guard_thresholds=GuardThresholds())
    assert front.points[2].flagged and "base_logprob" in front.points[2].guard.reasons[0]
    assert front.points[2].on_front  # still a point of the front, drawn and listed
    assert all(p.point_index != 2 for p in front.presets.values())
    assert front.presets["max_helpful"].point_index == 1
    assert check_front(front) == []
    data = front.to_json()
    data["points"][2]["guard"]["flagged"] = False
    assert any("guard.flagged" in p for p in check_front(data))
