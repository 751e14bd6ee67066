"""Claims that survive a rerun: the across-seed statistics of fronts trained with several seeds.

A front's intervals (:mod:`peo_hub.evaluate.confirm`) resample prompts: they say how much a
number would move with other prompts, not with another training run. Yet training is a unit
of chance too: float differences between machines, or another seed, move the adapters a
hair, that changes which points the selection prompts pick, and a verdict can flip. So a
recipe may train every aspect adapter and every MORL baseline once per seed (``seeds``);
each seed's family is swept on the same prompts with the same selection/confirmation split,
and this module condenses the per-seed fronts into ``front.json``'s ``across_seeds``:

* for every method's hypervolume and every difference ``peo_minus_<method>`` (every method
  but ``peo`` that every seed has, so a new baseline's difference comes with it): the
  ``estimate`` (the mean over seeds of the per-seed confirmation-prompt value), the
  ``per_seed`` values (in the order of ``seeds``), their ``spread`` (sample sd, min, max);
* a 95% ``ci`` from a two-level bootstrap, seeds and confirmation prompts resampled
  (:func:`peo_hub.core.stats.seed_prompt_bootstrap`), each seed's method fronts fixed by its
  selection prompts as in the one-seed case;
* a ``verdict`` for every difference: ``better`` / ``worse`` / ``undecided`` from the
  interval, or ``one training run`` when there is a single seed (then there is no across-seed
  interval: the prompt-level one is ``hypervolume_difference``'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from peo_hub.bundle.front import Front
from peo_hub.core.stats import CONFIDENCE, seed_prompt_bootstrap
from peo_hub.evaluate.confirm import verdict, volume_statistic

ONE_RUN = "one training run"
METHOD = ("two-level percentile bootstrap (scipy.stats.bootstrap): training seeds resampled, and the confirmation "
          "prompts resampled once per draw and shared by every seed (every seed answered the same prompts)")


@dataclass
class SeedFront:
    """One training seed's front and the evaluation records it was computed from."""

    seed: int
    front: Front
    records: Sequence[Mapping[str, Any]]


def _spread(values: np.ndarray) -> dict[str, float] | None:
    if len(values) < 2:
        return None
    return {"sd": float(np.std(values, ddof=1)), "min": float(values.min()), "max": float(values.max())}


def _entry(values: np.ndarray, ci: tuple[float, float] | None, with_verdict: bool, one_run: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"estimate": float(values.mean()), "ci": None if ci is None else [ci[0], ci[1]],
                             "per_seed": [float(v) for v in values], "spread": _spread(values)}
    if with_verdict:
        entry["verdict"] = ONE_RUN if one_run else verdict(ci)
    return entry


def across_seeds(runs: Sequence[SeedFront], confirmation: Sequence[int], resamples: int = 1000, seed: int = 0,
                 confidence: float = CONFIDENCE) -> dict[str, Any]:
    """``front.json``'s ``across_seeds`` from every seed's front and records (see the module docstring).

    ``confirmation`` are the prompt indices every seed reports on (the same split for all);
    ``seed`` seeds the bootstrap. With one run, the entries carry that run's values, no
    interval, and the verdict ``one training run``.
    """
    if not runs:
        raise ValueError("across_seeds needs at least one seed's front")
    statistics = [volume_statistic(run.front, run.records, confirmation) for run in runs]
    first_methods, first_others, _ = statistics[0]
    methods = [m for m in first_methods if all(m in s[0] for s in statistics)]
    others = [m for m in first_others if all(m in s[1] for s in statistics)]
    one_run = len(runs) == 1
    rows = [[s[0].index(m) for m in methods] + [len(s[0]) + s[1].index(m) for m in others] for s in statistics]
    # Per seed, the values its own front reports (its hypervolume and hypervolume_difference estimates).
    values = np.array([[run.front.hypervolume[m] for m in methods]
                       + [run.front.hypervolume["peo"] - run.front.hypervolume[m] for m in others]
                       for run in runs])  # (seeds, k)
    bounds = None
    if not one_run:
        def per_seed(drawn: np.ndarray) -> np.ndarray:
            return np.stack([s[2](drawn)[r] for s, r in zip(statistics, rows)])  # (seeds, k, batch)

        bounds = seed_prompt_bootstrap(per_seed, len(runs), len(confirmation), resamples, seed, confidence)
    cis: list[tuple[float, float] | None] = [None] * len(rows[0]) if bounds is None else \
        [(float(lo), float(hi)) for lo, hi in zip(*bounds)]
    out: dict[str, Any] = {"n_seeds": len(runs)}
    if one_run:
        out["note"] = (f"{ONE_RUN} (seed {runs[0].seed}): nothing measures how these numbers move with another "
                       "training seed; run with several seeds (--seeds 0,1,2,3,4) for that")
    else:
        out.update({"unit": "training seed, then prompt", "method": METHOD, "confidence": confidence,
                    "resamples": resamples, "seed": seed, "prompts": len(confirmation)})
    out["hypervolume"] = {m: _entry(values[:, j], cis[j], False, one_run) for j, m in enumerate(methods)}
    out["hypervolume_difference"] = {
        f"peo_minus_{m}": _entry(values[:, len(methods) + j], cis[len(methods) + j], True, one_run)
        for j, m in enumerate(others)}
    return out
