"""A recipe's sweep on PEFT's per-adapter LoRA forward and on the packed one: wall time, and whether replies agree.

The live model runs its LoRA layers one of two ways (``PEO_HUB_LIVE_PATH``, see
``peo_hub.family.multilora``): ``peft``, PEFT's loop over the adapters (2N small products per
module, each with its scale), or ``packed``, one product for all aspects with the
coefficients, or each row's coefficients, inside it. This times the sweep of a finished run
(its evaluations removed, nothing trained) under each path, each in its own process, rounds
alternating the order; only ``run_sweep`` is timed. Then the two paths' records are compared
reply by reply: the packed path sums in another order, so a greedy reply may differ where two
tokens are within float rounding of each other.

    peo-hub recipe run recipes/toy.yaml --output runs/toy        # once: a finished run to copy
    python benchmarks/sweep_live_path.py --run runs/toy --recipe recipes/toy.yaml --name sweep_live_path_toy
    python benchmarks/sweep_live_path.py --run runs/smollm2 --recipe recipes/smollm2-safety.yaml \\
        --prompts 16 --methods base,soup,peo,mod --name sweep_live_path_smollm2

``--prompts N`` sweeps the first N evaluation prompts only and ``--methods`` keeps only the named
methods' points (the smollm2 sweep takes over an hour; the rows per generate call stay the
recipe's ``evaluate.batch_size``, since many points share a batch). Results:
``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import summary, write_report

REPO = Path(__file__).resolve().parent.parent
PATHS = ("peft", "packed")


def child(run: Path, recipe_path: Path, prompts: int | None, methods: list[str] | None, work: Path,
          report: Path) -> None:
    """Inside one path's process: copy the run without its evaluations, time the sweep."""
    from peo_hub.evaluate.sweep import run_sweep
    from peo_hub.recipe.folder import RunFolder
    from peo_hub.recipe.load import load_recipe
    from peo_hub.recipe.pipeline import _train_morl, sweep_job
    from peo_hub.recipe.preflight import preflight

    recipe = load_recipe(recipe_path)
    if methods is not None:
        sweep = recipe.sweep.model_copy(update={"baselines": [b for b in recipe.sweep.baselines if b in methods]})
        recipe = recipe.model_copy(update={"sweep": sweep})
    shutil.copytree(run, work, symlinks=True, ignore=shutil.ignore_patterns("evaluations"))
    plan = preflight(recipe)
    if prompts is not None:
        plan.prompts = plan.prompts[:prompts]
    folder = RunFolder(work, recipe)
    # All kept: nothing is trained (and a recipe without MORL, e.g. with self-sampled pairs, has none to find).
    morl = _train_morl(plan, folder, resume=True, first_task=1, tasks=1) if "morl" in recipe.sweep.baselines else {}
    job = sweep_job(plan, folder, morl)
    start = time.perf_counter()
    records = run_sweep(job)
    seconds = time.perf_counter() - start
    assert records is not None
    if methods is not None:
        records = [r for r in records if r["method"] in methods]
    report.write_text(json.dumps({"seconds": seconds, "path": os.environ["PEO_HUB_LIVE_PATH"],
                                  "points": len(records), "prompts": len(plan.prompts),
                                  "records": [{"method": r["method"], "label": r["label"], "samples": r["samples"]}
                                              for r in records]}))


def run_path(path: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    work, report = scratch / "run", scratch / "report.json"
    shutil.rmtree(work, ignore_errors=True)
    command = [sys.executable, __file__, "--child", "--run", str(args.run.resolve()),
               "--recipe", str(args.recipe.resolve()), "--work", str(work), "--report", str(report)]
    if args.prompts is not None:
        command += ["--prompts", str(args.prompts)]
    if args.methods is not None:
        command += ["--methods", args.methods]
    env = {**os.environ, "PEO_HUB_LIVE_PATH": path}
    subprocess.run(command, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads(report.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return result


def agreement(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """How many kept sample replies are the same text under both paths, per method and overall."""
    other = {(r["method"], r["label"]): r["samples"] for r in b}
    per_method: dict[str, list[int]] = {}
    for record in a:
        theirs = other[(record["method"], record["label"])]
        same = [x == y for prompt, replies in record["samples"].items()
                for x, y in zip(replies, theirs[prompt])]
        counts = per_method.setdefault(record["method"], [0, 0])
        counts[0] += sum(same)
        counts[1] += len(same)
    total = [sum(c[0] for c in per_method.values()), sum(c[1] for c in per_method.values())]
    return {"replies_same": total[0], "replies_compared": total[1],
            "per_method": {m: {"same": c[0], "compared": c[1]} for m, c in per_method.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run of --recipe")
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=None, help="the first N evaluation prompts only")
    parser.add_argument("--methods", default=None, help="comma-separated methods to keep (default: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--name", default="sweep_live_path")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    methods = None if args.methods is None else args.methods.split(",")
    if args.child:
        child(args.run, args.recipe, args.prompts, methods, args.work, args.report)
        return
    if not (args.run / "peo_run.json").is_file():
        parser.error(f"--run {args.run} is not a finished run folder (no peo_run.json)")

    seconds: dict[str, list[float]] = {p: [] for p in PATHS}
    last: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="peo-sweep-path-") as scratch:
        for round_ in range(args.rounds):
            for path in (PATHS if round_ % 2 == 0 else PATHS[::-1]):
                result = run_path(path, args, Path(scratch))
                seconds[path].append(result["seconds"])
                last[path] = result
                print(f"round {round_ + 1}: {path} {result['seconds']:.1f} s "
                      f"({result['points']} points x {result['prompts']} prompts)", flush=True)
    stats = {p: summary(s) for p, s in seconds.items()}
    report = {
        "benchmark": args.name,
        "command": "python benchmarks/sweep_live_path.py " + " ".join(sys.argv[1:]),
        "recipe": str(args.recipe),
        "points": last["packed"]["points"],
        "prompts": last["packed"]["prompts"],
        "methods": methods or "all",
        "rounds": args.rounds,
        "seconds": stats,
        "packed_over_peft_best": round(stats["packed"]["best"] / stats["peft"]["best"], 3),
        "packed_over_peft_median": round(stats["packed"]["median"] / stats["peft"]["median"], 3),
        "replies": agreement(last["packed"]["records"], last["peft"]["records"]),
    }
    write_report(args.name, report)
    print(json.dumps({k: report[k] for k in ("seconds", "packed_over_peft_best", "packed_over_peft_median",
                                              "replies")}, indent=1))


if __name__ == "__main__":
    main()
