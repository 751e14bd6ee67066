"""Two versions of the real recipe, each over its training seeds: how far apart are their fronts?

`smollm2_world.py --seeds` measures one recipe over its training seeds. When the recipe itself
changes (e.g. 240 harmless training prompts to 451), the claim "the new recipe is better" is a
comparison of two sets of training runs on the same evaluation prompts. This script gives it an
interval: for every method both runs have, its hypervolume under the second run minus under the
first (and the same for every ``peo_minus_<method>`` difference), with a 95% percentile
bootstrap that resamples the confirmation prompts once per draw, shared by both runs (every
policy answered the same prompts), and each run's training seeds independently (seed 1 of one
recipe has nothing to do with seed 1 of the other). Each seed's points are the ones its own
selection prompts chose, as in its front.json; the statistic is the one front.json's intervals
use (``peo_hub.evaluate.confirm.volume_statistic``).

    python benchmarks/smollm2_recipe_change.py --before /work/runs/smollm2-seeds \\
        --after /work/runs/smollm2-451-seeds --label-before "240 harmless prompts" \\
        --label-after "451 harmless prompts"
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def seed_folders(run: Path) -> list[Path]:
    """Each training seed's folder of a finished run: the run itself for the first seed, ``seeds/<seed>`` after."""
    seeds = json.loads((run / "front.json").read_text()).get("seeds") or [0]
    folders = [run if index == 0 else run / "seeds" / str(seed) for index, seed in enumerate(seeds)]
    for folder in folders:
        if not (folder / "front.json").is_file():
            raise SystemExit(f"{folder} has no front.json: finish that run first (recipe run --seeds ... --resume)")
    return folders


def change_interval(before: Callable[[np.ndarray], np.ndarray], after: Callable[[np.ndarray], np.ndarray],
                    n_prompts: int, resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile interval of (mean over the second run's seeds) - (mean over the first's) of ``k`` quantities.

    ``before(counts)`` and ``after(counts)`` take prompt counts ``(batch, n_prompts)`` and return each seed's
    quantities ``(seeds, k, batch)``. One draw of prompts serves both runs (the same prompts were answered);
    each run's seeds are drawn on their own (its seed 1 has nothing to do with the other's)."""
    from scipy.stats import bootstrap

    from peo_hub.core.stats import resample_counts

    def mean_over_drawn_seeds(values: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        return np.einsum("skb,bs->kb", values, resample_counts(seeds, len(values)) / len(values))

    def statistic(p: np.ndarray, sa: np.ndarray, sb: np.ndarray, axis: int = -1) -> np.ndarray:
        counts = resample_counts(p, n_prompts)
        return mean_over_drawn_seeds(after(counts), sb) - mean_over_drawn_seeds(before(counts), sa)

    everything = np.ones((1, n_prompts))
    data = (np.arange(n_prompts), np.arange(len(before(everything))), np.arange(len(after(everything))))
    result = bootstrap(data, statistic, paired=False, vectorized=True, n_resamples=resamples, batch=None,
                       confidence_level=0.95, method="percentile", rng=np.random.default_rng(0))
    return result.confidence_interval


def seed_statistics(run: Path, confirmation: list[int]) -> list[tuple[list[str], list[str], object]]:
    """Per training seed of a finished run: ``volume_statistic`` of its own front and records.

    A seed's trained points' records are in ``seeds/<seed>/evaluations``; the points every seed shares
    (the base and the untrained baselines) are the first seed's, in the run folder itself."""
    from peo_hub.bundle.front import Front
    from peo_hub.evaluate.confirm import volume_statistic

    out = []
    for folder in seed_folders(run):
        seed_front = Front.model_validate(json.loads((folder / "front.json").read_text()))
        records = []
        for point in seed_front.points:
            name = f"{point.method}-{point.label}.json"
            path = folder / "evaluations" / name
            records.append(json.loads((path if path.is_file() else run / "evaluations" / name).read_text()))
        out.append(volume_statistic(seed_front, records, confirmation))
    return out


#: The dial's harmless end (the harmless adapter alone), where the recipe's change aims: how often it refuses
#: harmful and benign requests, and how helpful its answers to benign ones are.
HARMLESS_END = ("soup", "helpful0.00-harmless1.00-a0.00")


def harmless_end_per_prompt(run: Path) -> list[np.ndarray]:
    """Per training seed: the harmless end's (refused, harmful, helpful score) per evaluation prompt, (3, prompts)."""
    out = []
    for folder in seed_folders(run):
        record = json.loads((folder / "evaluations" / f"{HARMLESS_END[0]}-{HARMLESS_END[1]}.json").read_text())
        out.append(np.array([[np.mean(r) for r in record["refusal"]], record["harmful"],
                             [np.mean(s) for s in record["metrics"]["helpful"]["scores"]]], dtype=float))
    return out


def plane_quantities(arrays: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(seeds, 3, prompts) and prompt counts (batch, prompts) -> (seeds, 3, batch): harmful refused, benign refused,
    helpfulness on benign requests, each a share or mean over the resampled prompts."""
    refused, harmful, helpful = arrays[:, 0], arrays[:, 1], arrays[:, 2]
    benign = 1.0 - harmful

    def per_kind(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return (values * mask) @ counts.T / (mask @ counts.T)

    return np.stack([per_kind(refused, harmful), per_kind(refused, benign), per_kind(helpful, benign)], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a finished run (with --seeds) of the first recipe")
    parser.add_argument("--after", type=Path, required=True, help="a finished run (with --seeds) of the second")
    parser.add_argument("--label-before", default="before")
    parser.add_argument("--label-after", default="after")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--output", type=Path,
                        default=REPO / "benchmarks" / "results" / "smollm2_recipe_change.json")
    args = parser.parse_args()
    for run in (args.before, args.after):
        if not (run / "front.json").is_file():
            parser.error(f"{run} is not a finished run (no front.json)")
    sys.path.insert(0, str(Path(__file__).parent))
    from common import machine, write_report

    fronts = [json.loads((run / "front.json").read_text()) for run in (args.before, args.after)]
    split = [f["evaluation_split"] for f in fronts]
    if split[0]["confirmation"] != split[1]["confirmation"]:
        raise SystemExit("the two runs confirm on different prompts: their fronts cannot be compared prompt by prompt")
    confirmation = split[0]["confirmation"]
    before, after = (seed_statistics(run, confirmation) for run in (args.before, args.after))
    methods = [m for m in before[0][0] if all(m in s[0] for s in before + after)]
    others = [m for m in before[0][1] if all(m in s[1] for s in before + after)]

    def rows(stat: tuple) -> list[int]:
        return [stat[0].index(m) for m in methods] + [len(stat[0]) + stat[1].index(m) for m in others]

    def values(stats: list) -> Callable[[np.ndarray], np.ndarray]:
        return lambda counts: np.stack([s[2](counts)[rows(s)] for s in stats])  # (seeds, k, batch)

    n = len(confirmation)
    everything = np.ones((1, n))
    per_seed = {"before": values(before)(everything)[:, :, 0], "after": values(after)(everything)[:, :, 0]}
    low, high = change_interval(values(before), values(after), n, args.resamples)
    names = [f"hypervolume {m}" for m in methods] + [f"peo_minus_{m}" for m in others]

    # The harmless end on all evaluation prompts (no selection is involved: it is one fixed point of the dial).
    ends = [np.stack(harmless_end_per_prompt(run)) for run in (args.before, args.after)]  # (seeds, 3, prompts)
    if not np.array_equal(ends[0][0, 1], ends[1][0, 1]):
        raise SystemExit("the two runs were evaluated on different prompts")
    n_all = ends[0].shape[2]

    end_low, end_high = change_interval(*(lambda counts, e=e: plane_quantities(e, counts) for e in ends), n_all,
                                        args.resamples)
    end_per_seed = [plane_quantities(e, np.ones((1, n_all)))[:, :, 0] for e in ends]  # (seeds, 3)
    end_names = ["harmless end: harmful refused", "harmless end: benign refused",
                 "harmless end: helpfulness on benign requests"]
    names += end_names
    per_seed = {k: np.concatenate([v, end_per_seed[i]], axis=1) for i, (k, v) in enumerate(per_seed.items())}
    low, high = np.concatenate([low, end_low]), np.concatenate([high, end_high])
    report = {"command": "python benchmarks/smollm2_recipe_change.py " + shlex.join(sys.argv[1:]),
              "machine": machine(), "before": {"run": str(args.before), "label": args.label_before,
                                               "seeds": fronts[0].get("seeds") or [0]},
              "after": {"run": str(args.after), "label": args.label_after, "seeds": fronts[1].get("seeds") or [0]},
              "prompts": n, "prompts_harmless_end": n_all, "resamples": args.resamples,
              "method": ("percentile bootstrap (scipy.stats.bootstrap): the prompts resampled once per draw and "
                         "shared by both runs; each run's training seeds resampled independently. Hypervolumes and "
                         "their differences on the confirmation prompts; the harmless end (the harmless adapter "
                         "alone, no selection involved) on all evaluation prompts"),
              "quantities": {}}
    for j, name in enumerate(names):
        estimate = float(per_seed["after"][:, j].mean() - per_seed["before"][:, j].mean())
        ci = [round(float(low[j]), 4), round(float(high[j]), 4)]
        report["quantities"][name] = {
            "before_per_seed": [round(float(v), 4) for v in per_seed["before"][:, j]],
            "after_per_seed": [round(float(v), 4) for v in per_seed["after"][:, j]],
            "after_minus_before": round(estimate, 4), "ci": ci,
            "verdict": "higher" if low[j] > 0 else "lower" if high[j] < 0 else "undecided"}
        print(f"{name:>28}: {estimate:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]")
    write_report("smollm2_recipe_change", report, args.output)


if __name__ == "__main__":
    main()
