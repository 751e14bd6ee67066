"""What does a Pareto front cost to train: PEO's N DPO runs vs MORL's one run per weight vector?

    HF_HUB_OFFLINE=1 python benchmarks/training_cost.py [--bundle runs/toy] [--output-bundle DIR]

PEO trains one adapter per aspect (phase 1) and gets every preference afterwards by
arithmetic; MORL (here: DPO on the preference-weighted mixture of the aspects' pairs)
trains one model per weight vector. Both numbers come from one run of the toy recipe
(``recipes/toy.yaml``: sweep ``weights: 5``, ``alpha: [0, 0.5, 1]``, ``baselines: [soup,
morl]``; every DPO run has the same steps, batch and data size), which records
``front.json`` ``training_seconds`` (per method) and ``hypervolume`` (per method), and each
run's ``training_info.json``. MORL's corners (one-hot weights) are single-aspect DPO runs,
i.e. the PEO adapters themselves, so the recipe trains only the interior weights for MORL;
a MORL front of the same resolution needs those corner runs too, and this script also
reports MORL's hypervolume with them.

The bundle is ``--bundle`` if given, else ``runs/toy`` when it exists (waiting up to
``--wait`` seconds for its ``front.json`` while a run is writing it), else the recipe is
run into ``--output-bundle`` (default: a temporary folder). Results go to
``benchmarks/results/training_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "runs" / "toy"
RECIPE = REPO / "recipes" / "toy.yaml"
GRID_SIZES = (3, 5, 11, 21, 101)  # weight vectors on a 2-aspect front (corners included)


def find_bundle(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    """The bundle to read and how it was obtained (given, existing runs/toy, or a fresh recipe run)."""
    if args.bundle:
        return Path(args.bundle), "given"
    if DEFAULT_BUNDLE.is_dir():
        deadline = time.monotonic() + args.wait
        while not (DEFAULT_BUNDLE / "front.json").is_file() and time.monotonic() < deadline:
            time.sleep(10)  # a recipe run is still writing it
        if (DEFAULT_BUNDLE / "front.json").is_file():
            return DEFAULT_BUNDLE, "existing runs/toy"
    out = Path(args.output_bundle) if args.output_bundle else tmp / "toy"
    cmd = [sys.executable, "-m", "peo_hub.cli", "recipe", "run", str(RECIPE), "--output", str(out)]
    print("running: " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return out, "fresh recipe run"


def run_records(bundle: Path) -> dict[str, list[dict[str, Any]]]:
    """Every DPO run's ``training_info.json``: PEO's aspect adapters and MORL's mixtures."""
    def read(pattern: str) -> list[dict[str, Any]]:
        return [{"folder": str(p.parent.relative_to(bundle)), **json.loads(p.read_text())}
                for p in sorted(bundle.glob(pattern))]
    return {"peo": read("adapters/*/training_info.json"), "morl": read("baselines/morl/*/training_info.json")}


def morl_with_corners_hypervolume(front: dict[str, Any]) -> float | None:
    """MORL's hypervolume once its corners (the single-aspect runs, alpha 0) are added."""
    from peo_hub.core.pareto import hypervolume

    aspects = front["aspects"]
    corners = [p for p in front["points"] if p["method"] == "soup" and p.get("weights")
               and max(p["weights"].values()) == 1.0]
    morl = [p for p in front["points"] if p["method"] == "morl"]
    if not morl:
        return None
    means = [[p["metrics"][a]["mean"] for a in aspects] for p in morl + corners]
    return hypervolume(means, [front["reference_point"][a] for a in aspects])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=None, help="read this finished bundle instead of running the recipe")
    parser.add_argument("--output-bundle", default=None, help="where a fresh recipe run writes (default: temp)")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for runs/toy/front.json")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/training_cost.json)")
    args = parser.parse_args(argv)

    from common import write_report

    with tempfile.TemporaryDirectory(prefix="peo-bench-train-") as tmp:
        bundle, source = find_bundle(args, Path(tmp))
        front = json.loads((bundle / "front.json").read_text())
        config = json.loads((bundle / "peo_config.json").read_text())
        records = run_records(bundle)
        morl_hv_corners = morl_with_corners_hypervolume(front)

    seconds, hv = front["training_seconds"], front["hypervolume"]
    aspects = front["aspects"]
    n = len(aspects)
    order = {f"adapters/{a}": i for i, a in enumerate(config.get("aspects") or aspects)}
    records["peo"].sort(key=lambda r: order.get(r["folder"], len(order)))  # training order
    recipe = config.get("recipe") or {}
    dpo = (recipe.get("train") or {}).get("dpo") or {}
    per_run = [r["train_seconds"] for rs in records.values() for r in rs]
    per_run_median = statistics.median(per_run)
    steps = sorted({r.get("steps") for rs in records.values() for r in rs})
    morl_per_run = seconds["morl"] / max(seconds["morl_runs"], 1)
    rows = [
        {"method": "PEO (soup + extrapolation)", "runs": seconds["peo_runs"], "train_s": seconds["peo"],
         "hypervolume": hv.get("peo")},
        {"method": "soup only (alpha = 0, same adapters)", "runs": seconds["peo_runs"], "train_s": seconds["peo"],
         "hypervolume": hv.get("soup")},
        {"method": "MORL, interior weights (as the recipe trains it)", "runs": seconds["morl_runs"],
         "train_s": seconds["morl"], "hypervolume": hv.get("morl")},
        {"method": "MORL + its corners (the single-aspect runs)", "runs": seconds["morl_runs"] + n,
         "train_s": seconds["morl"] + seconds["peo"], "hypervolume": morl_hv_corners},
        {"method": "base (SFT model)", "runs": 0, "train_s": 0.0, "hypervolume": hv.get("base")},
    ]
    scaling = [{"weight_vectors": k, "peo_runs": n, "morl_runs": k,
                "peo_s": n * per_run_median, "morl_s": k * per_run_median, "morl_over_peo": k / n}
               for k in GRID_SIZES]

    sweep = recipe.get("sweep") or {}
    lines = [f"Bundle: {bundle} ({source}); {n} aspects; sweep weights={sweep.get('weights')}, "
             f"alpha={sweep.get('alpha')}; every DPO run: {steps} steps, batch "
             f"{dpo.get('per_device_train_batch_size')}, same data size.\n",
             "| method | DPO runs | train wall-clock | hypervolume |", "|---|---|---|---|"]
    for r in rows:
        hv_text = "n/a" if r["hypervolume"] is None else f"{r['hypervolume']:.3f}"
        lines.append(f"| {r['method']} | {r['runs']} | {r['train_s']:.1f} s | {hv_text} |")
    lines.append("\nPer run (recipe order; the process's first DPO run includes one-time warm-up): " + ", ".join(
        f"{Path(r['folder']).name} {r['train_seconds']:.1f} s" for rs in records.values() for r in rs) + ".")
    lines += ["", f"Cost of a front with k weight vectors ({n} aspects; seconds = runs x the median run, "
                  f"{per_run_median:.1f} s; PEO also gets every alpha for free):\n",
              "| k weight vectors | PEO runs | PEO train | MORL runs | MORL train | MORL / PEO |", "|---|---|---|---|---|---|"]
    for s in scaling:
        lines.append(f"| {s['weight_vectors']} | {s['peo_runs']} | {s['peo_s']:.0f} s | {s['morl_runs']} | "
                     f"{s['morl_s']:.0f} s | {s['morl_over_peo']:.1f}x |")
    text = "\n".join(lines)
    print(text)
    write_report("training_cost", {
        "bundle": str(bundle), "source": source, "aspects": aspects,
        "training_seconds": seconds, "hypervolume": hv, "morl_with_corners_hypervolume": morl_hv_corners,
        "runs": records, "median_run_s": per_run_median, "morl_mean_run_s": morl_per_run,
        "note": "the first DPO run of a process includes one-time warm-up, so the projection uses the median run",
        "rows": rows, "scaling": scaling, "recipe_sweep": sweep, "dpo": dpo, "table": text}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
