"""The toy world's claims over training seeds: `recipe run recipes/toy.yaml --seeds 0,1,2,3,4`, then what it says.

One training run per method is one draw: another seed (or another machine's float rounding)
moves the adapters a hair, which changes the points the selection prompts pick, and a
prompt-level verdict can flip. This script runs the quick-start recipe with five training
seeds into a fresh folder (every aspect adapter and MORL baseline trained once per seed,
every seed's family swept on the same 16 prompts with the same selection/confirmation split)
and records, from the bundle's ``front.json``:

* ``across_seeds``: every method's hypervolume and every ``peo_minus_<method>`` difference over
  the seeds: estimate (mean over seeds), 95% two-level bootstrap interval (seeds and prompts
  resampled), per-seed values, spread, verdict;
* each seed's own prompt-level verdicts (``hypervolume_difference`` of its front), to show how
  often one training run alone would have said something else;
* the command, the wall time, the load average before and after, the machine.

    python benchmarks/toy_seeds.py             # ~5 x the quick start
    python benchmarks/toy_seeds.py --rerun     # then again, and the one-seed quick start: what a rerun reproduces
    python benchmarks/toy_seeds.py --analyse runs/toy-seeds   # re-read a finished run (keeps its recorded time)

Results: ``benchmarks/results/toy_seeds.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = "recipes/toy.yaml"


def per_seed_verdicts(bundle: Path, seeds: list[int]) -> dict[str, dict[str, dict]]:
    """Each seed's own prompt-level differences (its front alone): what one training run would have claimed."""
    out: dict[str, dict[str, dict]] = {}
    for index, seed in enumerate(seeds):
        path = bundle / "front.json" if index == 0 else bundle / "seeds" / str(seed) / "front.json"
        front = json.loads(path.read_text())
        out[str(seed)] = {name: {"estimate": d["estimate"], "ci": d["ci"], "verdict": d["verdict"]}
                          for name, d in (front.get("hypervolume_difference") or {}).items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--output-dir", type=Path, default=REPO / "runs" / "toy-seeds")
    parser.add_argument("--analyse", type=Path, default=None, help="a finished bundle: skip the run, re-read it")
    parser.add_argument("--output", type=Path, default=None, help="default: benchmarks/results/toy_seeds.json")
    parser.add_argument("--rerun", action="store_true",
                        help="then run the same command into OUTPUT_DIR-rerun and compare every front.json byte for "
                             "byte, and the one-seed quick start into OUTPUT_DIR-one against seed 0's front")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from common import machine, write_report

    output = args.output or REPO / "benchmarks" / "results" / "toy_seeds.json"
    command = ["peo-hub", "recipe", "run", RECIPE, "--seeds", args.seeds, "--output", str(args.output_dir)]
    report: dict = {"recipe": RECIPE, "command": " ".join(command), "machine": machine()}
    bundle = args.analyse
    if bundle is not None and output.is_file():
        previous = json.loads(output.read_text())  # a re-read keeps the run's own time, load and machine
        if Path(previous.get("bundle", "")).resolve() == bundle.resolve():
            report.update({k: previous[k] for k in ("machine", "command", "wall_seconds",
                                                    "load_average_1_5_15_before_after") if k in previous})
    if bundle is None:
        _fresh(args.output_dir)  # a fresh run each time: the benchmark is the whole recipe
        load_before = os.getloadavg()
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO)
        report["wall_seconds"] = round(time.perf_counter() - start, 1)
        report["load_average_1_5_15_before_after"] = [list(load_before), list(os.getloadavg())]
        bundle = args.output_dir
    front = json.loads((bundle / "front.json").read_text())
    timings = json.loads((bundle / "timings.json").read_text())
    seeds = front["seeds"]
    report.update({"bundle": str(bundle), "seeds": seeds, "evaluation_split": front["evaluation_split"],
                   "across_seeds": front["across_seeds"], "per_seed_prompt_level": per_seed_verdicts(bundle, seeds),
                   "training_seconds_per_seed": timings["per_seed"]})
    across = front["across_seeds"]
    print(f"over {across['n_seeds']} training seeds ({', '.join(map(str, seeds))}), 95% two-level bootstrap:")
    for name, entry in {**across["hypervolume"], **across["hypervolume_difference"]}.items():
        ci = entry["ci"]
        print(f"  {name:>16}: {entry['estimate']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]  per seed "
              + ", ".join(f"{v:+.3f}" for v in entry["per_seed"]) + (f"  {entry['verdict']}" if "verdict" in entry
                                                                      else ""))
    if args.rerun:
        report["rerun"] = rerun(command, bundle, seeds)
        print(f"rerun: {json.dumps(report['rerun'])}")
    write_report("toy_seeds", report, output)


def _fresh(folder: Path) -> None:
    """Remove an earlier benchmark folder: only a run folder peo-hub wrote (it has peo_run.json)."""
    if folder.exists():
        if not (folder / "peo_run.json").is_file():
            raise SystemExit(f"{folder} exists and is not a peo-hub run folder; move it aside")
        shutil.rmtree(folder)


def rerun(command: list[str], bundle: Path, seeds: list[int]) -> dict:
    """The same command into a second folder (every front.json compared byte for byte), then the one-seed
    quick start, whose front must equal seed 0's outside ``seeds`` and ``across_seeds``."""
    second = bundle.with_name(bundle.name + "-rerun")
    one = bundle.with_name(bundle.name + "-one")
    _fresh(second)
    _fresh(one)
    out: dict = {"how": "the same command into a fresh folder, then `peo-hub recipe run recipes/toy.yaml` (one seed)",
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    start = time.perf_counter()
    subprocess.run([*command[:-1], str(second)], check=True, cwd=REPO)
    out["second_run_wall_seconds"] = round(time.perf_counter() - start, 1)
    out["front_json_byte_identical"] = (bundle / "front.json").read_bytes() == (second / "front.json").read_bytes()
    out["seed_fronts_byte_identical"] = {
        str(s): (bundle / "seeds" / str(s) / "front.json").read_bytes() == (second / "seeds" / str(s) / "front.json"
                                                                             ).read_bytes() for s in seeds[1:]}
    start = time.perf_counter()
    subprocess.run(["peo-hub", "recipe", "run", RECIPE, "--output", str(one)], check=True, cwd=REPO)
    out["one_seed_quick_start_wall_seconds"] = round(time.perf_counter() - start, 1)
    five, single = (json.loads((b / "front.json").read_text()) for b in (bundle, one))
    skip = ("seeds", "across_seeds")
    out["one_seed_front_equals_the_five_seed_runs_seed_0_front_outside_seeds_and_across_seeds"] = (
        {k: v for k, v in five.items() if k not in skip} == {k: v for k, v in single.items() if k not in skip})
    out["one_seed_verdicts"] = {k: v["verdict"] for k, v in (single.get("hypervolume_difference") or {}).items()}
    return out


if __name__ == "__main__":
    main()
