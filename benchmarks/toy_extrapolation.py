"""When does extrapolation help in the toy world? PEO vs soup hypervolume by training length.

ExPO-style extrapolation pays off when an adapter is a short, clean step in a good
direction (under-trained), and hurts when the step is already long or noisy. This script
trains the toy recipe's adapters for several DPO step counts and reports, for each, the
hypervolume of the soup points alone and of the whole PEO family, plus what
extrapolating each adapter on its own (one-hot weights) does to both judges.

    python benchmarks/toy_extrapolation.py                      # 40, 80, 200 steps (~5 min on 2 cores)
    python benchmarks/toy_extrapolation.py --steps 80 --samples 8   # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import yaml

from peo_hub.recipe.pipeline import run_recipe

REPO = Path(__file__).resolve().parent.parent


def variant(steps: int, samples: int, alphas: list[float], folder: Path) -> Path:
    data = yaml.safe_load((REPO / "recipes" / "toy.yaml").read_text())
    data["name"] = f"toy-{steps}steps"
    data["train"]["dpo"]["max_steps"] = steps
    data["sweep"] = {"weights": 5, "alpha": alphas, "baselines": ["soup"]}
    data["evaluate"]["samples"] = samples
    path = folder / f"toy-{steps}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[40, 80, 200])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "toy_extrapolation.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in args.steps:
            started = time.perf_counter()
            bundle = run_recipe(variant(steps, args.samples, args.alpha, Path(tmp)), output=Path(tmp) / f"run{steps}")
            front = json.loads((bundle / "front.json").read_text())
            one_hot = {}
            for p in front["points"]:
                w = p["weights"] or {}
                if p["method"] in ("soup", "peo") and max(w.values()) == 1.0:
                    aspect = max(w, key=w.get)
                    one_hot[f"{aspect}@alpha={p['alpha']:g}"] = {a: round(m["mean"], 3) for a, m in p["metrics"].items()}
            results.append({
                "dpo_steps": steps,
                "hypervolume": {k: round(v, 4) for k, v in front["hypervolume"].items()},
                "extrapolated_on_front": sum(p["on_front"] and p["method"] == "peo" for p in front["points"]),
                "one_hot": one_hot,
                "seconds": round(time.perf_counter() - started, 1),
            })
    print("| DPO steps | HV soup | HV PEO family | HV base | extrapolated points on the front |")
    print("|---|---|---|---|---|")
    for r in results:
        hv = r["hypervolume"]
        print(f"| {r['dpo_steps']} | {hv['soup']:.3f} | {hv['peo']:.3f} | {hv['base']:.3f} | {r['extrapolated_on_front']} |")
    print()
    print("| DPO steps | adapter | alpha | helpful | harmless |")
    print("|---|---|---|---|---|")
    for r in results:
        for key, scores in r["one_hot"].items():
            aspect, alpha = key.split("@alpha=")
            print(f"| {r['dpo_steps']} | {aspect} | {alpha} | {scores['helpful']:.3f} | {scores['harmless']:.3f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "samples": args.samples,
                                     "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
