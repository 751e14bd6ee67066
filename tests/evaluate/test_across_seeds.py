"""peo_hub.evaluate.across_seeds on known answers: seeds that disagree widen the interval, identical seeds
give the one-seed interval back, one seed says it is one training run."""

from __future__ import annotations

import numpy as np
import pytest

from peo_hub.bundle.front import AcrossSeeds, check_front
from peo_hub.core.stats import split_prompts
from peo_hub.evaluate.across_seeds import ONE_RUN, SeedFront, across_seeds
from peo_hub.evaluate.confirm import front_from_records

ASPECTS = ["helpful", "harmless"]
PROMPTS, SAMPLES, RESAMPLES = 24, 32, 400
SELECTION, CONFIRMATION = split_prompts(PROMPTS, 0.5, seed=0)


def _record(method: str, helpful: np.ndarray, harmless: np.ndarray, w: float | None, alpha: float | None) -> dict:
    weights = None if w is None else {"helpful": w, "harmless": 1 - w}
    return {"label": f"{method}-{w}-{alpha}", "method": method, "weights": weights, "alpha": alpha,
            "coefficients": None if w is None or method == "morl" else
            {k: (1 + (alpha or 0)) * v for k, v in weights.items()},
            "metrics": {"helpful": {"scores": np.clip(helpful, 0, 1).tolist()},
                        "harmless": {"scores": np.clip(harmless, 0, 1).tolist()}},
            "prompts": [f"p{i}" for i in range(PROMPTS)], "samples": {}, "recipe_hash": "x"}


def seed_records(shift: float, rng: np.random.Generator | None) -> list[dict]:
    """One seed's sweep: a base, soups, PEO points `shift` above the soups on both aspects, one MORL point.

    Prompt difficulty is shared by every point (and every seed); ``rng`` adds reply noise
    (``None``: every reply of a prompt scores its prompt's level, no noise within a prompt)."""
    difficulty = np.linspace(-0.2, 0.2, PROMPTS)[:, None]

    def scores(level: float) -> np.ndarray:
        mean = np.clip(level + difficulty + np.zeros((PROMPTS, SAMPLES)), 0, 1)
        return mean if rng is None else rng.binomial(1, mean).astype(float)

    records = [_record("base", scores(0.3), scores(0.3), None, None)]
    for w in (0.0, 0.5, 1.0):
        records.append(_record("soup", scores(0.3 + 0.3 * w), scores(0.6 - 0.3 * w), w, 0.0))
        records.append(_record("peo", scores(0.3 + 0.3 * w + shift), scores(0.6 - 0.3 * w + shift), w, 0.5))
    records.append(_record("morl", scores(0.42), scores(0.42), 0.5, None))
    return records


def fronts_of(runs: list[list[dict]]) -> list[SeedFront]:
    return [SeedFront(seed, front_from_records(ASPECTS, records, SELECTION, CONFIRMATION, resamples=RESAMPLES, seed=0),
                      records) for seed, records in enumerate(runs)]


def width(ci) -> float:
    return ci[1] - ci[0]


def test_seeds_that_disagree_widen_the_interval_beyond_every_single_seed() -> None:
    """Five seeds whose PEO points sit from 0 to 0.2 above the soups: each seed's prompt-level
    interval is narrow around its own margin, the across-seed one covers the seeds' disagreement."""
    rng = np.random.default_rng(1)
    shifts = [0.0, 0.05, 0.1, 0.15, 0.2]
    seeds = fronts_of([seed_records(shift, rng) for shift in shifts])
    across = AcrossSeeds.model_validate(across_seeds(seeds, CONFIRMATION, resamples=RESAMPLES, seed=0))
    for name in ("peo_minus_soup", "peo_minus_base", "peo_minus_morl"):
        entry = across.hypervolume_difference[name]
        singles = [s.front.hypervolume_difference[name].ci for s in seeds]
        assert width(entry.ci) > max(width(ci) for ci in singles), name
        assert entry.per_seed == pytest.approx([s.front.hypervolume_difference[name].estimate for s in seeds])
        assert entry.estimate == pytest.approx(np.mean(entry.per_seed))
        assert entry.spread["min"] == min(entry.per_seed) and entry.spread["sd"] > 0
    # One seed alone would have said "undecided", another "better": the verdict flips with the training run.
    assert [s.front.hypervolume_difference["peo_minus_soup"].verdict for s in (seeds[0], seeds[-1])] == \
        ["undecided", "better"]


def test_without_prompt_noise_only_the_seeds_make_the_interval() -> None:
    """Every reply scores its prompt's level and the prompt effect is shared by every point, so each seed's
    prompt-level interval of a difference is narrow; the across-seed interval spans the seeds' disagreement."""
    shifts = [0.0, 0.05, 0.10, 0.15]
    seeds = fronts_of([seed_records(shift, None) for shift in shifts])
    entry = across_seeds(seeds, CONFIRMATION, resamples=RESAMPLES, seed=0)["hypervolume_difference"]["peo_minus_soup"]
    singles = [s.front.hypervolume_difference["peo_minus_soup"].ci for s in seeds]
    assert width(entry["ci"]) > 2 * max(width(ci) for ci in singles)
    assert min(entry["per_seed"]) - 1e-9 <= entry["ci"][0] < entry["ci"][1] <= max(entry["per_seed"]) + 1e-9
    assert entry["verdict"] == "better"  # every seed but the first is ahead


def test_identical_seeds_give_the_single_seed_interval_back() -> None:
    records = seed_records(0.04, np.random.default_rng(3))
    one = fronts_of([records])[0]
    same = across_seeds([SeedFront(s, one.front, records) for s in range(5)], CONFIRMATION, resamples=RESAMPLES, seed=0)
    for name, diff in one.front.hypervolume_difference.items():
        entry = same["hypervolume_difference"][name]
        assert entry["ci"] == pytest.approx(list(diff.ci), rel=1e-12, abs=1e-12), name
        assert entry["estimate"] == pytest.approx(diff.estimate) and entry["spread"]["sd"] == pytest.approx(0)
        assert entry["verdict"] == diff.verdict
    for method, ci in one.front.hypervolume_ci.items():
        assert same["hypervolume"][method]["ci"] == pytest.approx(list(ci), rel=1e-12, abs=1e-12), method


def test_one_seed_is_one_training_run() -> None:
    seeds = fronts_of([seed_records(0.04, np.random.default_rng(4))])
    across = across_seeds(seeds, CONFIRMATION, resamples=RESAMPLES, seed=0)
    assert across["n_seeds"] == 1 and ONE_RUN in across["note"]
    for entry in across["hypervolume_difference"].values():
        assert entry["verdict"] == ONE_RUN and entry["ci"] is None and entry["spread"] is None
    assert set(across["hypervolume_difference"]) == {"peo_minus_soup", "peo_minus_base", "peo_minus_morl"}


def test_a_new_baseline_gets_its_difference_and_the_front_checks_it() -> None:
    """Any method but peo that every seed has gets a difference (system_prompt, steer, ... as they land);
    check_front refuses an across_seeds whose first seed is not the front's own or whose mean is off."""
    runs = []
    for shift, seed in ((0.0, 5), (0.05, 6)):
        records = seed_records(shift, np.random.default_rng(seed))
        extra = _record("steer", np.full((PROMPTS, SAMPLES), 0.35), np.full((PROMPTS, SAMPLES), 0.35), None, None)
        runs.append(records + [extra])
    seeds = fronts_of(runs)
    data = across_seeds(seeds, CONFIRMATION, resamples=RESAMPLES, seed=0)
    assert "peo_minus_steer" in data["hypervolume_difference"] and "steer" in data["hypervolume"]
    front = seeds[0].front
    front.seeds, front.across_seeds = [5, 6], AcrossSeeds.model_validate(data)
    assert check_front(front) == []
    front.across_seeds.hypervolume_difference["peo_minus_soup"].estimate += 0.01
    assert any("not the mean" in p for p in check_front(front))
    front.across_seeds = AcrossSeeds.model_validate(across_seeds(seeds[::-1], CONFIRMATION, resamples=RESAMPLES))
    assert any("first seed" in p for p in check_front(front))
