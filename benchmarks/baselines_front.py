"""PEO against the baselines on a finished run: hypervolumes, paired differences, refusal plane, controllability.

Reads the front.json of a bundle that ``peo-hub recipe run`` wrote with ``sweep.baselines``
(e.g. ``recipes/toy.yaml``, ``recipes/smollm2-safety.yaml``) and records, per method: its
hypervolume on the confirmation prompts with its 95% interval, ``hv(PEO) - hv(method)`` with
its paired interval and verdict, its cost (training runs, forward passes per generated token),
every point's scores and refusal rates, and its dial's rank correlations; plus the training
seconds and the evaluation's cost the front recorded.

    peo-hub recipe run recipes/toy.yaml --output runs/toy
    python benchmarks/baselines_front.py runs/toy            # writes results/baselines_toy.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def summarise(bundle: Path) -> dict[str, Any]:
    from peo_hub.bundle.front import load_front

    front = load_front(bundle)
    extra = front.model_extra or {}
    differences = front.hypervolume_difference or {}
    methods: dict[str, Any] = {}
    for method, volume in front.hypervolume.items():
        diff = differences.get(f"peo_minus_{method}")
        methods[method] = {
            "hypervolume": round(volume, 4),
            "hypervolume_ci": (front.hypervolume_ci or {}).get(method),
            "peo_minus_method": None if diff is None else {"estimate": round(diff.estimate, 4), "ci": diff.ci,
                                                            "verdict": diff.verdict},
            "cost": (extra.get("method_cost") or {}).get(method),
        }
    points = []
    for i, point in enumerate(front.points):
        entry: dict[str, Any] = {"index": i, "method": point.method, "label": point.label,
                                 "weights": point.weights, "alpha": point.alpha,
                                 "dial": (point.model_extra or {}).get("dial"), "on_front": point.on_front,
                                 "flagged": point.flagged,
                                 "scores": {a: round(point.mean(a), 4) for a in front.aspects}}
        if point.refusal is not None:
            entry["refused"] = {kind: None if rate is None else {"rate": round(rate.rate, 4), "ci": rate.ci}
                                for kind, rate in (("harmful", point.refusal.harmful),
                                                   ("benign", point.refusal.benign))}
        points.append(entry)
    return {
        "bundle": str(bundle),
        "aspects": front.aspects,
        "recipe": json.loads((bundle / "peo_config.json").read_text()).get("recipe", {}).get("name"),
        "evaluation_split": None if front.evaluation_split is None else {
            "selection": len(front.evaluation_split.selection), "confirmation": len(front.evaluation_split.confirmation)},
        "methods": methods,
        "points": points,
        "controllability": front.controllability,
        "presets": {name: preset.point_index for name, preset in front.presets.items()},
        "training_seconds": extra.get("training_seconds"),
        "evaluation_cost": extra.get("evaluation_cost"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import machine, write_report

    report = {"benchmark": "baselines_front", "machine": machine(), **summarise(args.bundle)}
    name = f"baselines_{report['recipe'] or args.bundle.name}".replace("-", "_")
    print(write_report(name, report, args.output))
    for method, entry in report["methods"].items():
        diff = entry["peo_minus_method"]
        print(f"{method:14s} hv {entry['hypervolume']:.4f}  "
              + ("" if diff is None else f"PEO - {method} {diff['estimate']:+.4f} {diff['ci']} {diff['verdict']}"))


if __name__ == "__main__":
    main()
