"""``peo-hub recipe run``: phases 1-3 end to end, resumable, into one bundle folder.

Order of work and what makes it safe to interrupt:

0. the pre-flight (:func:`peo_hub.run.preflight`): everything that can be checked without
   training, before anything is written; then the run folder is claimed
   (:class:`peo_hub.run.RunFolder`);
1. the base model (the embedded toy is built once and cached; a local or embedded base is
   copied into ``base/`` so a Hub user can get it);
2. one DPO LoRA run per aspect into ``adapters/<aspect>/``: each folder appears only when
   complete (atomic rename); ``--resume`` skips finished ones; then ``peo_config.json``;
3. the sweep: every (weights, alpha) point, the base, and the baselines, evaluated with
   live preference switching; each point's record lands in ``evaluations/<point>.json``
   when done, so a resumed sweep continues where it stopped;
4. ``front.json``, ``front.png``, ``merges/<point>.yaml`` for the front, the model card,
   and the manifest's presets and front summary.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from peo_hub import __version__
from peo_hub.bundle import MERGES_DIR, PLOT_NAME, AspectEntry, Manifest, save_manifest
from peo_hub.confirm import front_from_records
from peo_hub.front import FAMILY_METHODS
from peo_hub.fsutil import atomic_dir, atomic_write_text
from peo_hub.policy import make_preference, weight_grid
from peo_hub.recipe import Recipe, load_recipe
from peo_hub.run import Plan, RunFolder, preflight
from peo_hub.stats import split_prompts

logger = logging.getLogger(__name__)


def _manifest(plan: Plan, records: dict[str, dict[str, Any]]) -> Manifest:
    recipe = plan.recipe
    aspects = {
        name: AspectEntry(
            adapter=f"adapters/{name}",
            judge=spec.judge.model_dump(exclude_none=True),
            dataset=plan.data[name].provenance(),
            train_seconds=records[name].get("train_seconds"),
            train_metrics=records[name].get("metrics", {}),
        )
        for name, spec in recipe.aspects.items()
    }
    return Manifest(
        peo_hub_version=__version__,
        base_model=plan.base.name,
        base_model_revision=plan.base.revision,
        base_source=plan.base.provenance,
        aspects=aspects,
        lora=recipe.train.lora.model_dump(),
        recipe=recipe.model_dump(mode="json"),
    )


def run_recipe(recipe_path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
               resume: bool = False, push: str | None = None) -> Path:
    """Run a recipe into a bundle folder; returns the folder. See the module docstring."""
    recipe = load_recipe(recipe_path)
    repo_id = push or recipe.hub.repo_id
    if repo_id:
        from peo_hub.ids import check_repo_id

        check_repo_id(repo_id, "--push repo id")
    folder = RunFolder(output or Path("runs") / (recipe.name or "run"), recipe)
    # Everything a user can get wrong is checked before the first write.
    plan = preflight(recipe)
    folder.prepare(resume)

    # Phase 1: one adapter per aspect.
    records: dict[str, dict[str, Any]] = {}
    for aspect, spec in recipe.aspects.items():
        target = folder.adapter_dir(aspect)
        kept = folder.kept(target) if resume else None
        if kept is not None:
            records[aspect] = kept
            tqdm.write(f"[{aspect}] adapter already trained, kept ({target})")
            continue
        tqdm.write(f"[{aspect}] DPO on {plan.data[aspect].train.num_rows} pairs from {spec.dataset.source}")
        records[aspect] = folder.train_one(plan, plan.data[aspect].train, target, {"aspect": aspect})
    manifest = _manifest(plan, records)
    save_manifest(folder.root, manifest)

    # Baseline: MORL, one DPO run per interior weight vector on the mixed data.
    morl_records = _train_morl(plan, folder, resume) if "morl" in recipe.sweep.baselines else {}

    # Phases 2-3: the sweep.
    from peo_hub.sweep import run_sweep

    evaluations = run_sweep(plan, folder, morl_records)
    _finish(recipe, folder, manifest, evaluations, records, morl_records)
    if repo_id:
        from peo_hub.hub import push_bundle

        url = push_bundle(folder.root, repo_id, private=recipe.hub.private)
        tqdm.write(f"pushed to {url}")
    return folder.root


def _train_morl(plan: Plan, folder: RunFolder, resume: bool) -> dict[str, dict[str, Any]]:
    from peo_hub.train import mix_datasets

    recipe = plan.recipe
    aspects = list(recipe.aspects)
    data = {a: plan.data[a].train for a in aspects}
    records: dict[str, dict[str, Any]] = {}
    for weights in weight_grid(aspects, recipe.sweep.weights):
        if max(weights.values()) == 1.0:
            continue  # corners are the aspect adapters themselves
        label = make_preference(aspects, weights).label()
        target = folder.morl_dir(label)
        record = folder.kept(target) if resume else None
        if record is None:
            tqdm.write(f"[morl {label}] DPO on the mixture")
            record = folder.train_one(plan, mix_datasets(data, weights, recipe.seed), target,
                                      {"weights": weights, "method": "morl"})
        records[label] = {**record, "weights": weights, "adapter": str(target.relative_to(folder.root))}
    return records


def evaluation_cost(evaluations: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    """What the sweep spent, in policies evaluated and replies generated: the PEO family's
    fixed grid, the alpha search (its trials on the selection prompts plus the kept points on
    every prompt) and the baselines (base, MORL), so grid and search compare at equal cost."""
    n_prompts = len(evaluations[0]["prompts"]) if evaluations else 0

    def full(records: list[dict[str, Any]]) -> dict[str, int]:
        return {"policies": len(records), "replies": len(records) * n_prompts * samples}

    search = [r for r in evaluations if r.get("source") == "search"]
    grid = [r for r in evaluations if r["method"] in FAMILY_METHODS and r.get("source") != "search"]
    baselines = [r for r in evaluations if r["method"] not in FAMILY_METHODS]
    cost: dict[str, Any] = {"grid": full(grid), "baselines": full(baselines)}
    if search:
        trials = [r["search"] for r in search]
        cost["search"] = {"trial_policies": sum(t["trials"] for t in trials), "kept_policies": len(search),
                          "replies": sum(t["trials"] * t["trial_prompts"] for t in trials) * samples
                          + full(search)["replies"]}
    return cost


def _finish(recipe: Recipe, folder: RunFolder, manifest: Manifest, evaluations: list[dict[str, Any]],
            records: dict[str, dict[str, Any]], morl_records: dict[str, dict[str, Any]]) -> None:
    """front.json/png, merges for the front, the card, the manifest summary."""
    from peo_hub.bundle import open_bundle
    from peo_hub.card import write_model_card
    from peo_hub.export import mergekit_config, mergekit_yaml
    from peo_hub.plot import plot_front

    out = folder.root
    aspects = list(recipe.aspects)
    training_seconds = {
        "peo": round(sum(r.get("train_seconds", 0.0) for r in records.values()), 2),
        "morl": round(sum(r.get("train_seconds", 0.0) for r in morl_records.values()), 2),
        "peo_runs": len(records),
        "morl_runs": len(morl_records),
    }
    spec = recipe.evaluate
    selection, confirmation = split_prompts(len(evaluations[0]["prompts"]), spec.selection_fraction, recipe.seed)
    front = front_from_records(aspects, evaluations, selection, confirmation, resamples=spec.bootstrap,
                               seed=recipe.seed, guard_thresholds=spec.guard,
                               selection_fraction=spec.selection_fraction, training_seconds=training_seconds,
                               evaluation_cost=evaluation_cost(evaluations, spec.samples))
    front.save(out)
    plot_front(front, out / PLOT_NAME)

    bundle = open_bundle(out)
    with atomic_dir(out / MERGES_DIR) as tmp:
        for point in front.points:
            if not point.on_front or point.coefficients is None:
                continue
            preference = make_preference(aspects, coefficients=point.coefficients)
            config = mergekit_config(bundle, point.coefficients, relative_to=out)
            atomic_write_text(tmp / f"{point.label or preference.label()}.yaml", mergekit_yaml(config, preference))

    manifest.presets = {name: preset.model_dump(mode="json", exclude_none=True) for name, preset in front.presets.items()}
    manifest.front = {
        "hypervolume": front.hypervolume,
        "hypervolume_ci": front.hypervolume_ci,
        "hypervolume_difference": {k: d.model_dump(mode="json") for k, d in (front.hypervolume_difference or {}).items()},
        "n_points": len(front.points),
        "on_front": sum(p.on_front for p in front.points),
        "training_seconds": training_seconds,
    }
    save_manifest(out, manifest)
    write_model_card(out)
    tqdm.write("hypervolume (confirmation prompts): " + ", ".join(f"{k}={v:.4f}" for k, v in front.hypervolume.items()))
    for name, diff in (front.hypervolume_difference or {}).items():
        tqdm.write(f"{name}: {diff.estimate:+.4f}, 95% CI {diff.ci}, {diff.verdict}")
