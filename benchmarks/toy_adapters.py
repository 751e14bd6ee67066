"""Does each toy adapter move its own judge? Base vs each aspect adapter alone, with 95% CIs.

Reads the per-point evaluation records a `peo-hub recipe run` wrote (every sampled
reply's score is kept there), so the numbers are exactly the bundle's. The difference
of means gets its own percentile-bootstrap interval (replies resampled independently in
each arm).

    peo-hub recipe run recipes/toy.yaml            # writes runs/toy (about a minute)
    python benchmarks/toy_adapters.py runs/toy     # prints the table, writes results/toy_adapters.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from peo_hub.bundle import load_manifest


def record(bundle: Path, method: str, label: str) -> dict:
    return json.loads((bundle / "evaluations" / f"{method}-{label}.json").read_text())


def diff_ci(a: list[float], b: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    xa, xb = np.asarray(a), np.asarray(b)
    da = xa[rng.integers(0, xa.size, (resamples, xa.size))].mean(1)
    db = xb[rng.integers(0, xb.size, (resamples, xb.size))].mean(1)
    low, high = np.percentile(da - db, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=Path("runs/toy"))
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "toy_adapters.json")
    args = parser.parse_args()
    aspects = load_manifest(args.bundle).aspect_names
    base = record(args.bundle, "base", "c-" + "-".join(f"{a}0.00" for a in aspects))
    rows = []
    for aspect in aspects:
        label = "-".join(f"{a}{float(a == aspect):.2f}" for a in aspects) + "-a0.00"
        alone = record(args.bundle, "soup", label)
        for judged in aspects:
            b, x = base["metrics"][judged], alone["metrics"][judged]
            low, high = diff_ci(x["scores"], b["scores"])
            rows.append({
                "adapter": aspect, "judge": judged, "replies": x["n"],
                "base": b["mean"], "base_ci": b["ci"], "adapter_mean": x["mean"], "adapter_ci": x["ci"],
                "delta": x["mean"] - b["mean"], "delta_ci": [low, high],
            })
    print("| adapter alone | judge | replies | base | adapter | delta (95% CI) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['adapter']} | {r['judge']} | {r['replies']} | {r['base']:.3f} [{r['base_ci'][0]:.3f}, {r['base_ci'][1]:.3f}] "
              f"| {r['adapter_mean']:.3f} [{r['adapter_ci'][0]:.3f}, {r['adapter_ci'][1]:.3f}] "
              f"| {r['delta']:+.3f} [{r['delta_ci'][0]:+.3f}, {r['delta_ci'][1]:+.3f}] |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"bundle": str(args.bundle), "machine": platform.processor() or platform.machine(),
                                     "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
