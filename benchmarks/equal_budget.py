"""PEO against its baselines at EQUAL budget, on the toy world, with prompt-level intervals.

A bundle's front compares 15 PEO points with 5 soups and 3 MORL models; more policies fill
more of the front whatever they are. This script asks the three budget questions of one
finished toy run (``peo-hub recipe run recipes/toy.yaml``), every hypervolume measured on
the run's CONFIRMATION prompts over the points chosen on its SELECTION prompts
(peo_hub.evaluate.confirm), every interval a prompt-level bootstrap, every comparison paired:

1. **policies evaluated**: hypervolume of PEO's nested grids (3 soups, 5 soups, + alpha 0.5,
   + alpha 1) and of MORL (3 interior models, + its 2 corners = the single-aspect runs);
2. **training runs**: PEO's 2 DPO runs give the whole family; MORL is given more runs
   (weights 1/8, 3/8, 5/8, 7/8 on top of the recipe's 1/4, 1/2, 3/4), one at a time, until its
   hypervolume reaches PEO's or ``--extra-morl`` runs are spent; the training-cost ratio
   at equal hypervolume follows (runs and measured wall-clock).

(An earlier third question, a per-weight alpha search against the fixed grid at equal cost,
answered "the grid": the search was removed from peo-hub; see CHANGELOG.md.)

    python benchmarks/equal_budget.py --bundle runs/toy [--extra-morl 4]

Writes benchmarks/results/equal_budget.json (with the machine record).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from common import write_report  # noqa: E402

from peo_hub.evaluate.confirm import front_from_records
from peo_hub.bundle.front import load_front

EXTRA_MORL_WEIGHTS = (0.125, 0.375, 0.625, 0.875)


def load_records(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((bundle / "evaluations").glob("*.json"))
            if not p.name.startswith("search")]  # a search's records, in bundles made before it was removed


def as_family(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "method": "soup" if not record.get("alpha") else "peo"}


def as_other(record: dict[str, Any], name: str) -> dict[str, Any]:
    return {**record, "method": name}


def compare(aspects: list[str], base: dict[str, Any], family: list[dict[str, Any]], other: list[dict[str, Any]], name: str,
            split: Any, resamples: int) -> dict[str, Any]:
    """hv of ``family`` (as the PEO family) and of ``other`` (as ``name``), and their paired difference."""
    records = [base] + [as_family(r) for r in family] + [as_other(r, name) for r in other]
    front = front_from_records(aspects, records, split.selection, split.confirmation, resamples, split.seed)
    diff = front.hypervolume_difference[f"peo_minus_{name}"]
    return {"policies": len(family), "other_policies": len(other),
            "hv": front.hypervolume["peo"], "hv_ci": front.hypervolume_ci["peo"],
            "other_hv": front.hypervolume[name], "other_hv_ci": front.hypervolume_ci[name],
            "difference": diff.estimate, "difference_ci": diff.ci, "verdict": diff.verdict}


def one_hot(record: dict[str, Any]) -> bool:
    return bool(record.get("weights")) and max(record["weights"].values()) == 1.0


class ExtraMorl:
    """Extra MORL runs exactly as ``recipe run`` trains them (same base, data mix, seed, settings),
    each evaluated on the bundle's prompts with the sweep's sampling seed."""

    def __init__(self, bundle: Path, scratch: Path) -> None:
        from peo_hub.bundle.manifest import load_manifest
        from peo_hub.data.chat import render_prompt
        from peo_hub.judges.registry import build_judge
        from peo_hub.recipe.schema import parse_recipe
        from peo_hub.recipe.folder import RunFolder
        from peo_hub.recipe.preflight import preflight

        self.recipe = parse_recipe(load_manifest(bundle).recipe)
        self.plan = preflight(self.recipe)
        self.folder = RunFolder(scratch / "extra-morl", self.recipe)
        self.folder.prepare(resume=False)
        self.aspects = list(self.recipe.aspects)
        self.judges = {a: build_judge(s.judge) for a, s in self.recipe.aspects.items()}
        self.rendered = [render_prompt(self.plan.tokenizer, p) for p in self.plan.prompts]

    def run(self, w: float) -> dict[str, Any]:
        """Train the MORL model for weight ``w`` on the first aspect and return its evaluation record."""
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from peo_hub.family.engines import generate_replies
        from peo_hub.evaluate.score import score_replies
        from peo_hub.core.policy import make_preference
        from peo_hub.train.dpo import mix_datasets

        recipe, plan = self.recipe, self.plan
        mix = {self.aspects[0]: w, self.aspects[1]: 1.0 - w}
        preference = make_preference(self.aspects, mix)
        target = self.folder.morl_dir(preference.label())
        print(f"[extra morl {preference.label()}] training", file=sys.stderr, flush=True)
        data = {a: plan.data[a].train for a in self.aspects}
        info = self.folder.train_one(plan, mix_datasets(data, mix, recipe.seed), target,
                                     {"weights": mix, "method": "morl"})
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(self.folder.base_path(plan.base)),
                                          str(target)).eval()
        replies = generate_replies(model, plan.tokenizer, self.rendered, recipe.evaluate, seed=recipe.seed)
        metrics = score_replies(plan.prompts, replies, self.judges, recipe.evaluate.bootstrap, seed=recipe.seed)
        return {"label": preference.label(), "method": "morl", "weights": mix, "alpha": None, "coefficients": None,
                "metrics": metrics, "prompts": plan.prompts, "train_seconds": info.get("train_seconds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("runs/toy"))
    parser.add_argument("--extra-morl", type=int, default=4, help="extra MORL runs at most (0: none)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    front = load_front(args.bundle)
    aspects = front.aspects
    split = front.evaluation_split
    records = load_records(args.bundle)
    base = next(r for r in records if r["method"] == "base")
    grid = [r for r in records if r["method"] in ("soup", "peo")]
    morl = [r for r in records if r["method"] == "morl"]
    corners = [r for r in grid if one_hot(r) and not r["alpha"]]
    soups = [r for r in grid if not r["alpha"]]
    soups3 = [r for r in soups if r["weights"][aspects[0]] in (0.0, 0.5, 1.0)]
    alphas = sorted({r["alpha"] for r in grid})
    training = front.model_extra.get("training_seconds", {}) if front.model_extra else {}
    peo_runs, peo_seconds = training.get("peo_runs", 2), training.get("peo", None)

    # 1. hypervolume against policies evaluated (each row: PEO subset vs MORL with corners, paired)
    morl_full = morl + corners
    policy_rows = []
    for name, subset in [("PEO soups, 3 weights", soups3), ("PEO soups, 5 weights", soups),
                         *[(f"PEO grid, alpha {alphas[:k + 1]}", [r for r in grid if r["alpha"] in alphas[:k + 1]])
                           for k in range(1, len(alphas))]]:
        row = compare(aspects, base, subset, morl_full, "morl", split, args.resamples)
        policy_rows.append({"family": name, **row})
    morl_only = compare(aspects, base, soups, morl, "morl", split, args.resamples)

    # 2. hypervolume against training runs: MORL gets more runs until it matches PEO
    peo_hv = compare(aspects, base, grid, morl_full, "morl", split, args.resamples)
    runs_rows = [{"morl_runs": len(morl_full), "morl_seconds": sum(r.get("train_seconds") or 0 for r in morl)
                  + (peo_seconds or 0), **peo_hv}]
    extra: list[dict[str, Any]] = []
    started = time.perf_counter()
    if args.extra_morl and runs_rows[-1]["other_hv"] < peo_hv["hv"]:
        with tempfile.TemporaryDirectory(prefix="peo-equal-budget-") as scratch:
            trainer = ExtraMorl(args.bundle, Path(scratch))
            for w in EXTRA_MORL_WEIGHTS[:args.extra_morl]:
                extra.append(trainer.run(w))
                row = compare(aspects, base, grid, morl_full + extra, "morl", split, args.resamples)
                seconds = runs_rows[0]["morl_seconds"] + sum(r.get("train_seconds") or 0 for r in extra)
                runs_rows.append({"morl_runs": len(morl_full) + len(extra), "morl_seconds": seconds, **row})
                if row["other_hv"] >= row["hv"]:
                    break
    matched = next((r for r in runs_rows if r["other_hv"] >= r["hv"]), None)
    ratio = ({"runs": matched["morl_runs"] / peo_runs,
              "seconds": matched["morl_seconds"] / peo_seconds if peo_seconds else None} if matched else
             {"runs_at_least": runs_rows[-1]["morl_runs"] / peo_runs,
              "seconds_at_least": runs_rows[-1]["morl_seconds"] / peo_seconds if peo_seconds else None})

    cost = front.model_extra.get("evaluation_cost") if front.model_extra else None

    lines = [f"Bundle {args.bundle}: {len(split.selection)} selection / {len(split.confirmation)} confirmation "
             "prompts; hypervolume on the confirmation prompts, 95% prompt-level intervals, differences paired.", "",
             "| PEO family | policies | hv [95% CI] | MORL + corners (5 policies) hv | PEO - MORL [95% CI] | verdict |",
             "|---|---|---|---|---|---|"]
    for r in policy_rows:
        lines.append(f"| {r['family']} | {r['policies']} | {r['hv']:.3f} [{r['hv_ci'][0]:.3f}, {r['hv_ci'][1]:.3f}] "
                     f"| {r['other_hv']:.3f} | {r['difference']:+.3f} [{r['difference_ci'][0]:+.3f}, "
                     f"{r['difference_ci'][1]:+.3f}] | {r['verdict']} |")
    lines += ["", f"MORL interior only (3 policies): hv {morl_only['other_hv']:.3f}; 5 soups minus it "
                  f"{morl_only['difference']:+.3f} [{morl_only['difference_ci'][0]:+.3f}, "
                  f"{morl_only['difference_ci'][1]:+.3f}] ({morl_only['verdict']}).", "",
              f"| MORL DPO runs (PEO: {peo_runs}) | MORL train s | MORL hv [95% CI] | PEO hv | PEO - MORL [95% CI] |",
              "|---|---|---|---|---|"]
    for r in runs_rows:
        lines.append(f"| {r['morl_runs']} | {r['morl_seconds']:.1f} | {r['other_hv']:.3f} [{r['other_hv_ci'][0]:.3f}, "
                     f"{r['other_hv_ci'][1]:.3f}] | {r['hv']:.3f} | {r['difference']:+.3f} "
                     f"[{r['difference_ci'][0]:+.3f}, {r['difference_ci'][1]:+.3f}] |")
    lines += ["", "Training-cost ratio MORL / PEO at equal hypervolume: " + json.dumps(ratio)]
    text = "\n".join(lines)
    print(text)
    write_report("equal_budget", {
        "bundle": str(args.bundle), "split": split.model_dump(), "policies": policy_rows, "morl_interior": morl_only,
        "training_runs": runs_rows, "cost_ratio_at_equal_hv": ratio, "extra_morl_seconds":
        round(time.perf_counter() - started, 1), "evaluation_cost": cost,
        "table": text}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
