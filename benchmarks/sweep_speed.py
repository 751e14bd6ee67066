"""The quick start's sweep, before and after: wall time, and whether the front is the same.

The sweep of ``recipes/toy.yaml`` (15 family points, the alpha search's trials for 5 weight
vectors, the 5 points it keeps, 3 MORL baselines: 17,408 sampled replies, judged, with the
guard's base log-probs) is redone on copies of a finished run, with its evaluations removed,
by two versions of peo-hub (and the run's own records, the front the README reports, are a
third reference):

* ``before``: a checkout of the code before this change (``--before``, e.g. made with
  ``git worktree add /tmp/before bd8ab45``), with that checkout's own ``recipes/toy.yaml``;
* ``after``: this checkout, with its ``recipes/toy.yaml``;
* ``after_batch64`` (attribution): this checkout at the old recipe's 64 rows per batch.

Each variant runs in its own process (so each imports its own ``peo_hub``), rounds
alternate the order, and only ``run_sweep`` is timed. The records are then compared reply by
reply, and both fronts are built by this checkout's ``front_from_records`` from each
variant's records and compared: points on the front, presets, hypervolumes.

    git worktree add /tmp/before bd8ab45
    peo-hub recipe run recipes/toy.yaml --output runs/toy      # once: a finished run to copy
    OMP_NUM_THREADS=2 python benchmarks/sweep_speed.py --before /tmp/before --run runs/toy
    OMP_NUM_THREADS=1 python benchmarks/sweep_speed.py --before /tmp/before --run runs/toy --name sweep_speed_1thread
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


def _code() -> tuple[Any, ...]:
    """(load_recipe, preflight, RunFolder, train_morl, sweep, sweep module file) of the code tree on the path:
    today's stage packages, or the flat layout of commits before the move (``--before``)."""
    try:
        from peo_hub.evaluate import sweep as module
        from peo_hub.recipe.folder import RunFolder
        from peo_hub.recipe.load import load_recipe
        from peo_hub.recipe.pipeline import _train_morl, sweep_job
        from peo_hub.recipe.preflight import preflight

        return (load_recipe, preflight, RunFolder, _train_morl,
                lambda plan, folder, morl: module.run_sweep(sweep_job(plan, folder, morl)), module.__file__)
    except ImportError:
        from peo_hub import sweep as module  # type: ignore[attr-defined,no-redef]
        from peo_hub.pipeline import _train_morl  # type: ignore[no-redef]
        from peo_hub.recipe import load_recipe  # type: ignore[no-redef]
        from peo_hub.run import RunFolder, preflight  # type: ignore[no-redef]

        return load_recipe, preflight, RunFolder, _train_morl, module.run_sweep, module.__file__


def child(run: Path, recipe_path: Path, batch_size: int | None, work: Path, report: Path) -> None:
    """Inside one variant's process: copy the run without its evaluations, time the sweep."""
    load_recipe, preflight, RunFolder, train_morl, sweep, code = _code()
    recipe = load_recipe(recipe_path)
    if batch_size is not None:
        recipe = recipe.model_copy(update={"evaluate": recipe.evaluate.model_copy(update={"batch_size": batch_size})})
    shutil.copytree(run, work, symlinks=True, ignore=shutil.ignore_patterns("evaluations"))
    plan = preflight(recipe)
    folder = RunFolder(work, recipe)
    morl = train_morl(plan, folder, resume=True, first_task=1, tasks=1)  # all kept: nothing is trained
    start = time.perf_counter()
    records = sweep(plan, folder, morl)
    seconds = time.perf_counter() - start
    assert records is not None
    report.write_text(json.dumps({"seconds": seconds, "code": code, "batch_size": recipe.evaluate.batch_size,
                                  "records": records}))


def variants(before: Path) -> dict[str, tuple[Path, int | None]]:
    """name -> (code tree, batch size override)."""
    return {"before": (before, None), "after": (REPO, None), "after_batch64": (REPO, 64)}


def run_variant(tree: Path, batch_size: int | None, run: Path, scratch: Path) -> dict[str, Any]:
    work, report = scratch / "run", scratch / "report.json"
    shutil.rmtree(work, ignore_errors=True)
    command = [sys.executable, __file__, "--child", "--run", str(run.resolve()),
               "--recipe", str(tree / "recipes" / "toy.yaml"), "--work", str(work), "--report", str(report)]
    if batch_size is not None:
        command += ["--batch-size", str(batch_size)]
    env = {**os.environ, "PYTHONPATH": str(tree) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(command, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads(report.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return result


def compare(records: dict[str, list[dict[str, Any]]], reference: str) -> dict[str, Any]:
    """Reply-level and front-level differences of every variant from ``reference``."""
    from peo_hub.evaluate.confirm import front_from_records
    from peo_hub.recipe.load import load_recipe
    from peo_hub.core.stats import split_prompts

    recipe = load_recipe(REPO / "recipes" / "toy.yaml")
    spec = recipe.evaluate
    aspects = list(recipe.aspects)

    def front(recs: list[dict[str, Any]]) -> dict[str, Any]:
        selection, confirmation = split_prompts(len(recs[0]["prompts"]), spec.selection_fraction, recipe.seed)
        built = front_from_records(aspects, recs, selection, confirmation, resamples=spec.bootstrap,
                                   seed=recipe.seed, guard_thresholds=spec.guard,
                                   selection_fraction=spec.selection_fraction).model_dump(mode="json")
        on_front = sorted(f"{p['method']} {p.get('label')}" for p in built["points"] if p["on_front"])
        presets = {name: f"{built['points'][p['point_index']]['method']} {built['points'][p['point_index']].get('label')}"
                   for name, p in built["presets"].items()}
        return {"on_front": on_front, "presets": presets, "hypervolume": built["hypervolume"],
                "flagged": sorted(p.get("label") for p in built["points"] if (p.get("guard") or {}).get("flagged"))}

    def by_label(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {f"{r['method']} {r['label']}": r for r in recs}

    fronts = {name: front(recs) for name, recs in records.items()}
    ref = by_label(records[reference])
    out: dict[str, Any] = {}
    for name, recs in records.items():
        mine = by_label(recs)
        common = sorted(set(mine) & set(ref))
        scores = [(a, b) for label in common for aspect in mine[label]["metrics"]
                  for sa, sb in zip(mine[label]["metrics"][aspect]["scores"], ref[label]["metrics"][aspect]["scores"])
                  for a, b in zip(sa, sb)]
        f, g = fronts[name], fronts[reference]
        out[name] = {
            "points_only_here": sorted(set(mine) - set(ref)),
            "points_only_in_reference": sorted(set(ref) - set(mine)),
            "reply_scores_differing": sum(a != b for a, b in scores), "reply_scores_compared": len(scores),
            "same_records": recs == records[reference],
            "same_points_on_front": f["on_front"] == g["on_front"], "same_presets": f["presets"] == g["presets"],
            "hypervolume": f["hypervolume"],
            "hypervolume_difference": {m: round(f["hypervolume"][m] - g["hypervolume"].get(m, float("nan")), 6)
                                       for m in f["hypervolume"]},
            "front": f,
        }
    return out


def run_records(run: Path) -> list[dict[str, Any]]:
    """The finished run's own evaluation records as ``run_sweep`` returns them (its front's input)."""
    records = []
    for path in sorted((run / "evaluations").glob("*.json")):
        if path.name.startswith("search-trial-"):
            continue  # a trial's record: selection prompts only, read by the search, not by the front
        record = json.loads(path.read_text())
        if record["method"] == "morl":
            record.update(coefficients=None, alpha=None)  # as run_sweep returns a MORL record
        records.append(record)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--run", type=Path, default=Path("runs/toy"), help="a finished run of recipes/toy.yaml")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="before,after,after_batch64",
                        help="comma-separated subset of before, after, after_batch64")
    parser.add_argument("--name", default="sweep_speed",
                        help="results file name (e.g. sweep_speed_1thread for a run under OMP_NUM_THREADS=1)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recipe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.run, args.recipe, args.batch_size, args.work, args.report)
        return
    if args.before is None or not (args.before / "peo_hub").is_dir():
        parser.error("--before must be a checkout of peo-hub (e.g. git worktree add /tmp/before bd8ab45)")
    if not (args.run / "front.json").is_file():
        parser.error(f"{args.run} is not a finished run; peo-hub recipe run recipes/toy.yaml --output {args.run}")
    commit = subprocess.run(["git", "-C", str(args.before), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    chosen = args.variants.split(",")
    names = {name: v for name, v in variants(args.before).items() if name in chosen}
    if "before" not in names:
        parser.error("--variants must include before (the reference)")
    times: dict[str, list[float]] = {name: [] for name in names}
    records: dict[str, list[dict[str, Any]]] = {}
    batch: dict[str, int] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in (list(names) if r % 2 == 0 else list(names)[::-1]):
                tree, size = names[name]
                result = run_variant(tree, size, args.run, Path(tmp))
                times[name].append(result["seconds"])
                records.setdefault(name, result["records"])
                batch[name] = result["batch_size"]
                print(f"round {r} {name}: {result['seconds']:.1f} s (batch {result['batch_size']}, "
                      f"load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    best = {name: min(t) for name, t in times.items()}
    report = {
        "command": "python benchmarks/sweep_speed.py --before <checkout> " + " ".join(sys.argv[1:]),
        "before_commit": commit, "load_before": load_before, "load_after": os.getloadavg(),
        "rounds": args.rounds, "rows_per_batch": batch,
        "seconds": {name: summary(t) for name, t in times.items()},
        "speedup_vs_before_best": {name: round(best["before"] / b, 3) for name, b in best.items()},
        "comparison_with_before": compare(records, "before"),
        # The run itself (`recipe run recipes/toy.yaml`, the README's front) as the reference.
        "comparison_with_run": {name: c for name, c in compare({**records, "run": run_records(args.run)}, "run").items()
                                if name != "run"},
    }
    write_report(args.name, report)
    print(json.dumps({k: report[k] for k in ("seconds", "speedup_vs_before_best")}, indent=1))
    for against in ("comparison_with_before", "comparison_with_run"):
        for name, c in report[against].items():
            print(against, name, {k: c[k] for k in ("reply_scores_differing", "same_points_on_front", "same_presets",
                                                    "hypervolume_difference")})


if __name__ == "__main__":
    main()
