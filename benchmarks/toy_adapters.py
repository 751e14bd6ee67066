"""Does each toy adapter move its own judge? Base vs each aspect adapter alone, with 95% CIs.

Reads the per-point evaluation records a `peo-hub recipe run` wrote (every sampled reply's
score is kept there, grouped by prompt), so the numbers are exactly the bundle's. Intervals
resample PROMPTS, not replies (replies to one prompt move together; peo_hub.core.stats), and the
difference to the base is paired: both means are taken on the same resampled prompts. The
one-hot adapters are fixed in advance (nothing is selected), so all evaluation prompts are
used; the reply-level interval the table used before is printed next to it for comparison.

    peo-hub recipe run recipes/toy.yaml            # writes runs/toy
    python benchmarks/toy_adapters.py runs/toy     # prints the table, writes results/toy_adapters.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from peo_hub.bundle.manifest import load_manifest
from peo_hub.core.stats import cluster_mean_ci, paired_difference_ci


def record(bundle: Path, method: str, label: str) -> dict:
    return json.loads((bundle / "evaluations" / f"{method}-{label}.json").read_text())


def reply_level_ci(a: list[list[float]], b: list[list[float]], resamples: int = 2000) -> list[float]:
    """The old (too narrow) interval: every reply treated as independent, each arm resampled alone."""
    rng = np.random.default_rng(0)
    xa, xb = np.concatenate(a), np.concatenate(b)
    da = xa[rng.integers(0, xa.size, (resamples, xa.size))].mean(1)
    db = xb[rng.integers(0, xb.size, (resamples, xb.size))].mean(1)
    return [float(v) for v in np.percentile(da - db, [2.5, 97.5])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=Path("runs/toy"))
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=None, help="default: benchmarks/results/toy_adapters.json")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from common import write_report

    aspects = load_manifest(args.bundle).aspect_names
    base = record(args.bundle, "base", "c-" + "-".join(f"{a}0.00" for a in aspects))
    rows = []
    for aspect in aspects:
        label = "-".join(f"{a}{float(a == aspect):.2f}" for a in aspects) + "-a0.00"
        alone = record(args.bundle, "soup", label)
        for judged in aspects:
            b, x = base["metrics"][judged]["scores"], alone["metrics"][judged]["scores"]
            base_mean, base_ci = cluster_mean_ci(b, args.resamples)
            mean, ci = cluster_mean_ci(x, args.resamples)
            delta, delta_ci = paired_difference_ci(x, b, args.resamples)
            old = reply_level_ci(x, b)
            rows.append({
                "adapter": aspect, "judge": judged, "prompts": len(x), "replies": sum(len(s) for s in x),
                "base": base_mean, "base_ci": base_ci, "adapter_mean": mean, "adapter_ci": ci,
                "delta": delta, "delta_ci": delta_ci, "delta_ci_reply_level": old,
                "width_ratio": (delta_ci[1] - delta_ci[0]) / (old[1] - old[0]),
            })
    print("| adapter alone | judge | prompts x replies | base | adapter | delta, prompt-level 95% CI "
          "| reply-level CI (too narrow) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['adapter']} | {r['judge']} | {r['prompts']} x {r['replies'] // r['prompts']} "
              f"| {r['base']:.3f} [{r['base_ci'][0]:.3f}, {r['base_ci'][1]:.3f}] "
              f"| {r['adapter_mean']:.3f} [{r['adapter_ci'][0]:.3f}, {r['adapter_ci'][1]:.3f}] "
              f"| {r['delta']:+.3f} [{r['delta_ci'][0]:+.3f}, {r['delta_ci'][1]:+.3f}] "
              f"| [{r['delta_ci_reply_level'][0]:+.3f}, {r['delta_ci_reply_level'][1]:+.3f}] |")
    write_report("toy_adapters", {"bundle": str(args.bundle), "resamples": args.resamples, "rows": rows},
                 args.output)


if __name__ == "__main__":
    main()
