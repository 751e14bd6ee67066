"""From evaluation records to an honest front: select on some prompts, report on the others.

The maximum over many noisy points is biased upwards: if the replies that choose the front
also score it, part of any margin is the luck of the chosen points. So the evaluation
prompts are split, seeded and by prompt (:func:`peo_hub.core.stats.split_prompts`):

* the **selection** prompts decide: each point's ``selection`` means choose ``on_front``,
  each method's front and the presets; the degeneration guard is measured here too;
* the **confirmation** prompts report: every ``metrics`` mean and interval, every point's
  paired difference to the base (``vs_base``), every hypervolume, its interval, the
  paired intervals of ``hv(PEO) - hv(other method)`` (every baseline is an other method),
  and, where the prompts carry harmful flags, each point's refusal rates
  (:mod:`peo_hub.evaluate.refusal_plane`).

All intervals resample confirmation PROMPTS (a cluster bootstrap, :mod:`peo_hub.core.stats`), and
for hypervolumes every point is recomputed on the same resampled prompt set (the points are
paired through their prompts), with each method's chosen points fixed by the selection
prompts, which the resampling does not touch. Input: the sweep's records (judge scores
grouped by prompt, guard measures per reply); output: a :class:`~peo_hub.bundle.front.Front`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from peo_hub.bundle.front import (Difference, EvaluationSplit, Front, build_front, controllability,
                                  method_front_indices)
from peo_hub.core.measures import GuardThresholds, summarise
from peo_hub.core.pareto import hypervolume
from peo_hub.core.stats import (CONFIDENCE, cluster_mean_ci, paired_difference_ci, prompt_sums,
                                ratio_mean, seed_prompt_bootstrap)
from peo_hub.evaluate.refusal_plane import plane

#: Record keys that are per-reply data, not front.json point fields.
#: ``train_seconds`` (a MORL point's) is wall-clock: it lives in the records and ``timings.json``, so that
#: front.json is the same, byte for byte, when the same run is made again on the same machine.
#: ``shared_from_seed``: a record copied from the first seed's (a point no training touches), said in the record.
_RAW_KEYS = ("samples", "recipe_hash", "guard", "prompts", "metrics", "train_seconds", "refusal", "harmful",
             "shared_from_seed")


def _subset(scores: Sequence[Sequence[float]], prompts: Sequence[int]) -> list[Sequence[float]]:
    return [scores[i] for i in prompts]


def _point(record: Mapping[str, Any], base: Mapping[str, Any] | None, aspects: Sequence[str],
           selection: Sequence[int], confirmation: Sequence[int], resamples: int, seed: int) -> dict[str, Any]:
    point = {k: v for k, v in record.items() if k not in _RAW_KEYS}
    metrics = {}
    for aspect in aspects:
        scores = record["metrics"][aspect]["scores"]
        confirm = _subset(scores, confirmation)
        mean, ci = cluster_mean_ci(confirm, resamples, seed)
        metric: dict[str, Any] = {"mean": mean, "ci": None if ci is None else list(ci),
                                  "n": int(sum(len(s) for s in confirm)), "n_prompts": len(confirm)}
        if base is not None and base is not record:
            diff, diff_ci = paired_difference_ci(confirm, _subset(base["metrics"][aspect]["scores"], confirmation),
                                                 resamples, seed)
            metric["vs_base"] = {"mean": diff, "ci": None if diff_ci is None else list(diff_ci)}
        metrics[aspect] = metric
    point["metrics"] = metrics
    if list(selection) != list(confirmation):
        point["selection"] = {a: ratio_mean(*prompt_sums(_subset(record["metrics"][a]["scores"], selection)))
                              for a in aspects}
    if record.get("guard"):
        point["guard"] = summarise(record["guard"], selection)
    refusal = plane(record, selection, confirmation, resamples, seed)
    if refusal is not None:
        point["refusal"] = refusal
    return point


def volume_statistic(front: Front, records: Sequence[Mapping[str, Any]], confirmation: Sequence[int]
                     ) -> tuple[list[str], list[str], Callable[[np.ndarray], np.ndarray]]:
    """Every method's hypervolume and every ``hv(peo) - hv(m)``, as a function of resampled prompts.

    Returns ``(methods, others, statistic)``: ``statistic(counts)`` takes confirmation-prompt
    counts ``(batch, n_prompts)`` (:func:`peo_hub.core.stats.resample_counts`) and returns
    ``(len(methods) + len(others), batch)``: each method's hypervolume, then ``peo`` minus each
    of ``others`` (every method but ``peo``, so a new baseline's difference comes with it).
    Every point's means are recomputed on the same resampled prompts (the points are paired
    through their prompts); each method's points are the ones its front chose on the
    selection prompts, which the resampling does not touch.
    """
    aspects = front.aspects
    chosen = method_front_indices(front.points, aspects)
    sums = np.array([[prompt_sums(_subset(r["metrics"][a]["scores"], confirmation))[0] for a in aspects]
                     for r in records])  # (points, aspects, prompts)
    counts = np.array([prompt_sums(_subset(r["metrics"][aspects[0]]["scores"], confirmation))[1] for r in records])
    ref = [front.reference_point[a] for a in aspects]
    methods = list(chosen)
    others = [m for m in methods if m != "peo"] if "peo" in chosen else []

    def statistic(drawn: np.ndarray) -> np.ndarray:
        means = (sums @ drawn.T) / (counts @ drawn.T)[:, None, :]  # (points, aspects, batch)
        out = np.empty((len(methods) + len(others), drawn.shape[0]))
        for b in range(drawn.shape[0]):
            volumes = {m: hypervolume(means[rows, :, b], ref) for m, rows in chosen.items()}
            out[:len(methods), b] = [volumes[m] for m in methods]
            out[len(methods):, b] = [volumes["peo"] - volumes[m] for m in others]
        return out

    return methods, others, statistic


def verdict(ci: tuple[float, float] | None) -> str:
    """``better`` when the whole interval is above 0, ``worse`` when below, else ``undecided``."""
    if ci is None:
        return "undecided"
    return "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "undecided"


def hypervolume_intervals(front: Front, records: Sequence[Mapping[str, Any]], confirmation: Sequence[int],
                          resamples: int = 1000, seed: int = 0, confidence: float = CONFIDENCE
                          ) -> tuple[dict[str, tuple[float, float] | None], dict[str, Difference]]:
    """Intervals of every method's hypervolume and of ``hv(peo) - hv(m)`` for every other method ``m``.

    One bootstrap over the confirmation prompts (:func:`volume_statistic`): the one-seed case
    of the across-seed bootstrap (:func:`peo_hub.core.stats.seed_prompt_bootstrap`), so that
    identical training seeds give exactly this interval back.
    """
    methods, others, statistic = volume_statistic(front, records, confirmation)
    bounds = seed_prompt_bootstrap(lambda drawn: statistic(drawn)[None], 1, len(confirmation), resamples, seed,
                                   confidence)
    intervals = [None] * (len(methods) + len(others)) if bounds is None else \
        [(float(lo), float(hi)) for lo, hi in zip(*bounds)]
    volume_ci = dict(zip(methods, intervals[:len(methods)]))
    differences = {f"peo_minus_{m}": Difference(estimate=front.hypervolume["peo"] - front.hypervolume[m], ci=ci,
                                                verdict=verdict(ci))
                   for m, ci in zip(others, intervals[len(methods):])}
    return volume_ci, differences


def front_from_records(aspects: Sequence[str], records: Sequence[Mapping[str, Any]], selection: Sequence[int],
                       confirmation: Sequence[int], resamples: int = 1000, seed: int = 0,
                       guard_thresholds: GuardThresholds | None = None, selection_fraction: float | None = None,
                       **extra: Any) -> Front:
    """The front of the sweep's records, chosen on ``selection`` prompts and reported on ``confirmation``.

    ``records`` are evaluation records (``metrics[aspect]["scores"]`` grouped by prompt over
    the full prompt list; optional ``guard`` per-reply measures). ``selection`` and
    ``confirmation`` are prompt indices; equal lists mean no split (every prompt does both
    jobs, as before the split existed). ``extra`` keys go to the front's top level.
    """
    aspects = list(aspects)
    base = next((r for r in records if r.get("method") == "base"), None)
    points = [_point(r, base, aspects, selection, confirmation, resamples, seed) for r in records]
    front = build_front(aspects, points, guard_thresholds=guard_thresholds, **extra)
    front.hypervolume_ci, front.hypervolume_difference = hypervolume_intervals(front, records, confirmation,
                                                                               resamples, seed)
    front.evaluation_split = EvaluationSplit(
        selection_fraction=0.0 if list(selection) == list(confirmation) else float(selection_fraction or 0.0),
        seed=seed, selection=list(selection), confirmation=list(confirmation))
    front.controllability = controllability(front.points, aspects, front.presets)
    front.intervals = {"unit": "prompt", "method": "percentile bootstrap (scipy.stats.bootstrap), prompts resampled "
                       "jointly for every point", "confidence": CONFIDENCE, "resamples": resamples, "seed": seed,
                       "prompts": len(confirmation)}
    return front
