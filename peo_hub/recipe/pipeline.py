"""``peo-hub recipe run``: phases 1-3 end to end, resumable, into one bundle folder.

Order of work and what makes it safe to interrupt:

0. the pre-flight (:func:`peo_hub.recipe.preflight.preflight`): everything that can be checked without
   training, before anything is written; then the run folder is claimed
   (:class:`peo_hub.recipe.folder.RunFolder`);
1. the base model (the embedded toy is built once and cached; a local or embedded base is
   copied into ``base/`` so a Hub user can get it); pairs sampled from it for aspects with
   ``dataset.generate`` (cached and resumable, :mod:`peo_hub.train.selfpairs`);
2. one DPO LoRA run per aspect into ``adapters/<aspect>/``: each folder appears only when
   complete (atomic rename); ``--resume`` skips finished ones; then ``peo_config.json``;
3. the sweep: every (weights, alpha) point, the base, and the baselines, evaluated with
   live preference switching; each point's record lands in ``evaluations/<point>.json``
   when done, so a resumed sweep continues where it stopped;
4. ``front.json``, ``front.png``, ``merges/<point>.yaml`` for the front, the model card,
   and the manifest's presets and front summary; wall-clock training seconds go to
   ``timings.json``, so the same recipe, seed and machine give the same front.json, byte for byte.

With several training seeds (``seeds`` / ``--seeds``), phases 1-3 run once per seed, seed by
seed (so a stopped run resumes per seed and, within a seed, per adapter and per point): the
first seed into the folders above (its adapters are the bundle's), every other seed into
``seeds/<seed>/`` (its own ``peo_config.json``, adapters, MORL baselines, records and front);
every seed is swept on the same prompts with the same split and sampling seed, and
``front.json`` gains ``seeds`` and ``across_seeds`` (:mod:`peo_hub.evaluate.across_seeds`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tqdm.auto import tqdm

from peo_hub import __version__
from peo_hub.bundle.manifest import (BASE_DIR, MERGES_DIR, PLOT_NAME, RUN_LOG, TIMINGS_NAME, AspectEntry, Manifest,
                                     save_manifest)
from peo_hub.evaluate.baselines.registry import method_costs
from peo_hub.evaluate.confirm import front_from_records
from peo_hub.utils.errors import RecipeError
from peo_hub.bundle.front import FAMILY_METHODS
from peo_hub.utils.fsutil import atomic_dir, atomic_write_json, atomic_write_text
from peo_hub.core.policy import make_preference, weight_grid
from peo_hub.recipe.progress import library_output_to
from peo_hub.recipe.schema import EvaluationRecipe, Recipe, recipe_json
from peo_hub.recipe.load import load_recipe
from peo_hub.recipe.preflight import Plan, preflight
from peo_hub.recipe.folder import sample_pairs
from peo_hub.recipe.folder import RunFolder
from peo_hub.core.stats import split_prompts

if TYPE_CHECKING:
    from peo_hub.evaluate.sweep import SweepJob

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
        recipe=recipe_json(recipe),
    )


@dataclass
class Replicate:
    """One training seed's run: its folder (the bundle's, or ``seeds/<seed>/``), training records and sweep."""

    seed: int
    root: Path
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # aspect -> training record
    morl: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> MORL training record
    evaluations: list[dict[str, Any]] = field(default_factory=list)


def _replicate_manifest(manifest: Manifest, folder: RunFolder, seed: int) -> Manifest:
    """A replicate's ``seeds/<seed>/peo_config.json``: its own adapters, the run's base (a relative path when
    it ships inside), so ``PEOModel.from_pretrained("RUN/seeds/<seed>")`` loads that seed's family."""
    root = folder.replicate_root(seed)
    base = manifest.base_model
    if base == BASE_DIR:
        base = Path(os.path.relpath(folder.root / BASE_DIR, root)).as_posix()
    return manifest.model_copy(update={"base_model": base})


def run_recipe(recipe_path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
               resume: bool = False, push: str | None = None, overrides: Sequence[str] = (),
               seeds: list[int] | None = None, keep_seed_adapters: bool = True) -> Path:
    """Run a recipe into a bundle folder; returns the folder. See the module docstring.

    ``overrides``: ``FIELD.PATH=VALUE`` strings (``--set``) applied on top of the file; the
    recipe the run records is the overridden one. ``seeds`` (``--seeds``) then replaces the
    recipe's ``seed`` and ``seeds``; ``keep_seed_adapters`` False (``--drop-seed-adapters``)
    deletes the adapters of every seed but the first once the front is written (their records
    and fronts stay, so the result can still be checked).
    """
    recipe = load_recipe(recipe_path, overrides)
    if seeds is not None:
        recipe = recipe.with_seeds(seeds)
    repo_id = push or recipe.hub.repo_id
    if repo_id:  # every prerequisite of the push now (id, token, Hub, write access), not after the whole run
        from peo_hub.publish.hub import check_push_access
        from peo_hub.utils.ids import check_repo_id

        check_repo_id(repo_id, "--push repo id")
        check_push_access(repo_id, action=f"push the run to {repo_id}")
    folder = RunFolder(output or Path("runs") / (recipe.name or "run"), recipe, overrides=overrides)
    # Everything a user can get wrong is checked before the first write.
    plan = preflight(recipe)
    _refuse_nested(folder.root, plan.base)
    folder.prepare(resume)
    log = folder.root / RUN_LOG
    with library_output_to(log):
        tqdm.write(f"run folder {folder.root}; the libraries' logs and per-step metrics go to {log}")
        sample_pairs(plan, folder)  # aspects whose pairs the base model samples (dataset.generate)
        if not _run_phases(plan, folder, resume):
            return folder.root  # one of several `accelerate launch` processes: process 0 writes the front
        if not keep_seed_adapters:
            for seed in recipe.training_seeds[1:]:
                folder.drop_adapters(seed)
    if repo_id:
        from peo_hub.publish.hub import push_bundle

        url = push_bundle(folder.root, repo_id, private=recipe.hub.private)
        tqdm.write(f"pushed to {url}")
    return folder.root


def _refuse_nested(output: Path, base: Any) -> None:
    """A run folder inside the local base it copies (or the base inside the output) would copy
    the base into itself: refused before any write."""
    if not base.ships_inside:
        return
    out, source = output.absolute().resolve(), Path(base.source).resolve()
    if out == source or source in out.parents:
        raise RecipeError(f"--output {output} is inside the base model folder {base.source}, which the run copies "
                          "into its output; choose an output outside it")
    if out in source.parents and source != out / "base":
        raise RecipeError(f"the base model folder {base.source} is inside --output {output}, which would copy it "
                          "into itself; move the base or choose another output")


def _morl_grid(recipe: Recipe) -> list[dict[str, float]]:
    """MORL's weight vectors: the interior of the grid (the corners are the aspect adapters)."""
    if "morl" not in recipe.sweep.baselines:
        return []
    return [w for w in weight_grid(list(recipe.aspects), recipe.sweep.weights) if max(w.values()) < 1.0]


def _run_phases(plan: Plan, folder: RunFolder, resume: bool) -> bool:
    """Phases 1-3 into a prepared run folder, seed by seed, as numbered tasks of the progress view.

    False on the processes of an ``accelerate launch`` sweep that are not process 0 (they
    evaluate their share of every seed's points; process 0 writes the front).
    """
    recipe = plan.recipe
    seeds = recipe.training_seeds
    per_seed = len(recipe.aspects) + len(_morl_grid(recipe))
    tasks = per_seed * len(seeds)
    from peo_hub.evaluate.sweep import run_sweep

    replicates: list[Replicate] = []
    manifest: Manifest | None = None
    gathered = True
    for index, seed in enumerate(seeds):
        first_task = index * per_seed + 1
        replicate = Replicate(seed, folder.replicate_root(seed))
        # Phase 1: one adapter per aspect.
        replicate.records = _train_aspects(plan, folder, resume, seed, first_task, tasks)
        if index == 0:
            manifest = _manifest(plan, replicate.records)
            save_manifest(folder.root, manifest)
        else:
            save_manifest(replicate.root, _replicate_manifest(_manifest(plan, replicate.records), folder, seed))
        # Baseline: MORL, one DPO run per interior weight vector on the mixed data.
        replicate.morl = _train_morl(plan, folder, resume, first_task=first_task + len(recipe.aspects), tasks=tasks,
                                     seed=seed)
        # Phases 2-3: the sweep.
        if len(seeds) > 1:
            tqdm.write(f"seed {seed}: sweep ({index + 1} of {len(seeds)} seeds)")
        evaluations = run_sweep(sweep_job(plan, folder, replicate.morl, seed=seed))
        if evaluations is None:
            gathered = False  # not process 0: on to the next seed's share
            continue
        replicate.evaluations = evaluations
        replicates.append(replicate)
    if not gathered:
        return False
    assert manifest is not None
    _finish(recipe, folder.root, manifest, replicates)
    return True


def _task(recipe: Recipe, seed: int, what: str) -> str:
    """A task's name in the progress view: the seed is named when there are several."""
    return f"seed {seed} {what}" if len(recipe.training_seeds) > 1 else what


def _train_aspects(plan: Plan, folder: RunFolder, resume: bool, seed: int, first_task: int, tasks: int
                   ) -> dict[str, dict[str, Any]]:
    """Phase 1 for one training seed: one adapter per aspect (finished ones kept under ``--resume``)."""
    recipe = plan.recipe
    records: dict[str, dict[str, Any]] = {}
    for number, (aspect, spec) in enumerate(recipe.aspects.items(), start=first_task):
        target = folder.adapter_dir(aspect, seed)
        name = _task(recipe, seed, aspect)
        kept = folder.kept(target) if resume else None
        if kept is not None:
            records[aspect] = kept
            tqdm.write(f"[{number}/{tasks}] {name}: adapter already trained, kept ({target})")
            continue
        tqdm.write(f"[{number}/{tasks}] {name}: DPO on {plan.data[aspect].train.num_rows} pairs from "
                   f"{spec.dataset.source}")
        records[aspect] = folder.train_one(plan, plan.data[aspect].train, target, {"aspect": aspect},
                                           progress=f"[{number}/{tasks}] train {name}", seed=seed)
    return records


def sweep_job(plan: Plan, folder: RunFolder, morl_records: dict[str, dict[str, Any]],
              seed: int | None = None) -> "SweepJob":
    """The sweep of a recipe's run (of one training seed's family), in the evaluate stage's terms.

    Every seed is swept with the run's seed (the same prompts, split and sampling streams:
    common random numbers, so seeds differ by their training only), from its own folder; the
    base is the one copied into the run if it ships inside. The points no training touches
    (the base, training-free baselines) are the same policy for every seed: the other seeds
    copy the first seed's records of them instead of generating them again.
    """
    from peo_hub.evaluate.records import RecordStore
    from peo_hub.evaluate.sweep import SweepJob

    recipe = plan.recipe
    return SweepJob(bundle=folder.replicate_root(seed), records=RecordStore(folder.evaluations_dir(seed)),
                    aspects={aspect: spec.judge for aspect, spec in recipe.aspects.items()},
                    sweep=recipe.sweep, evaluate=recipe.evaluate, seed=recipe.seed, prompts=plan.prompts,
                    tokenizer=plan.tokenizer, base=folder.base_path(plan.base), base_revision=plan.base.revision,
                    stamp=folder.fingerprint_hash, morl=morl_records,
                    shared=None if seed in (None, recipe.seed) else RecordStore(folder.evaluations_dir(recipe.seed)))


def _train_morl(plan: Plan, folder: RunFolder, resume: bool, first_task: int, tasks: int, seed: int | None = None
                ) -> dict[str, dict[str, Any]]:
    """MORL for one training seed (default: the run's): one DPO run per interior weight vector on the mixed
    data, mixed and trained with that seed; ``adapter`` paths are relative to the seed's folder."""
    from peo_hub.train.dpo import mix_datasets

    recipe = plan.recipe
    seed = recipe.seed if seed is None else seed
    aspects = list(recipe.aspects)
    data = {a: plan.data[a].train for a in aspects}
    root = folder.replicate_root(seed)
    records: dict[str, dict[str, Any]] = {}
    for number, weights in enumerate(_morl_grid(recipe), start=first_task):
        label = make_preference(aspects, weights).label()
        target = folder.morl_dir(label, seed)
        name = _task(recipe, seed, f"morl {label}")
        record = folder.kept(target) if resume else None
        if record is None:
            tqdm.write(f"[{number}/{tasks}] {name}: DPO on the mixture")
            record = folder.train_one(plan, mix_datasets(data, weights, seed), target,
                                      {"weights": weights, "method": "morl"},
                                      progress=f"[{number}/{tasks}] train {name}", seed=seed)
        records[label] = {**record, "weights": weights, "adapter": str(target.relative_to(root))}
    return records


def evaluation_cost(evaluations: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    """What the sweep spent, in policies evaluated and replies generated: the PEO family's
    grid and the baselines (base, MORL), so methods compare at equal cost."""
    n_prompts = len(evaluations[0]["prompts"]) if evaluations else 0

    def full(records: list[dict[str, Any]]) -> dict[str, int]:
        return {"policies": len(records), "replies": len(records) * n_prompts * samples}

    grid = [r for r in evaluations if r["method"] in FAMILY_METHODS]
    baselines = [r for r in evaluations if r["method"] not in FAMILY_METHODS]
    cost: dict[str, Any] = {"grid": full(grid), "baselines": full(baselines)}
    return cost


def _training_seconds(replicate: Replicate) -> dict[str, Any]:
    return {"peo": round(sum(r.get("train_seconds", 0.0) for r in replicate.records.values()), 2),
            "morl": round(sum(r.get("train_seconds", 0.0) for r in replicate.morl.values()), 2),
            "peo_runs": len(replicate.records), "morl_runs": len(replicate.morl)}


def _finish(recipe: Recipe | EvaluationRecipe, out: Path, manifest: Manifest, replicates: list[Replicate],
            trained: bool = True) -> None:
    """front.json/png (and every other seed's front.json), merges for the front, the card, the manifest
    summary, timings.json. ``trained``: the adapters were trained by this run, so their seeds are known."""
    from peo_hub.bundle.card import write_model_card
    from peo_hub.bundle.front import AcrossSeeds
    from peo_hub.bundle.manifest import open_bundle
    from peo_hub.bundle.plot import plot_front
    from peo_hub.evaluate.across_seeds import SeedFront, across_seeds
    from peo_hub.family.merge import mergekit_config, mergekit_yaml

    aspects = list(recipe.aspects)
    spec = recipe.evaluate
    seeds = [r.seed for r in replicates]
    selection, confirmation = split_prompts(len(replicates[0].evaluations[0]["prompts"]), spec.selection_fraction,
                                            recipe.seed)
    fronts = [front_from_records(aspects, r.evaluations, selection, confirmation, resamples=spec.bootstrap,
                                 seed=recipe.seed, guard_thresholds=spec.guard,
                                 selection_fraction=spec.selection_fraction,
                                 training_runs={"peo": len(r.records), "morl": len(r.morl)},
                                 evaluation_cost=evaluation_cost(r.evaluations, spec.samples),
                                 method_cost=method_costs([e["method"] for e in r.evaluations], recipe.sweep, aspects,
                                                          len(r.morl)))
              for r in replicates]
    for replicate, other in zip(replicates[1:], fronts[1:]):
        other.seeds = [replicate.seed]  # that seed's own front, for checking it
        other.save(replicate.root)
    front = fronts[0]
    front.seeds = seeds if trained else None
    front.across_seeds = AcrossSeeds.model_validate(across_seeds(
        [SeedFront(r.seed, f, r.evaluations) for r, f in zip(replicates, fronts)], confirmation,
        resamples=spec.bootstrap, seed=recipe.seed))
    if not trained:
        front.across_seeds.note = ("one set of adapters, not trained by this run: nothing measures how these numbers "
                                   "move with another training run")
    front.save(out)
    plot_front(front, out / PLOT_NAME, replicates=fronts[1:])
    timings = {"about": "wall-clock DPO seconds and run counts (kept out of front.json, which a rerun of the same "
                        "recipe on the same machine reproduces byte for byte)",
               "training_seconds": _training_seconds(replicates[0]),
               "per_seed": {str(r.seed): _training_seconds(r) for r in replicates}}
    if trained:
        atomic_write_json(out / TIMINGS_NAME, timings)

    bundle = open_bundle(out)
    with atomic_dir(out / MERGES_DIR) as tmp:
        for point in front.points:
            if not point.on_front or point.coefficients is None:
                continue
            preference = make_preference(aspects, coefficients=point.coefficients)
            config = mergekit_config(bundle, point.coefficients, relative_to=out)
            atomic_write_text(tmp / f"{point.label or preference.label()}.yaml", mergekit_yaml(config, preference))

    manifest.presets = {name: preset.model_dump(mode="json", exclude_none=True) for name, preset in front.presets.items()}
    across = front.across_seeds
    manifest.front = {
        "hypervolume": front.hypervolume,
        "hypervolume_ci": front.hypervolume_ci,
        "hypervolume_difference": {k: d.model_dump(mode="json") for k, d in (front.hypervolume_difference or {}).items()},
        "n_points": len(front.points),
        "on_front": sum(p.on_front for p in front.points),
        "training_seconds": timings["training_seconds"],
        "seeds": front.seeds,
        "across_seeds": {k: {"estimate": d.estimate, "ci": d.ci, "verdict": d.verdict}
                         for k, d in across.hypervolume_difference.items()},
    }
    save_manifest(out, manifest)
    write_model_card(out)
    tqdm.write("hypervolume (confirmation prompts): " + ", ".join(f"{k}={v:.4f}" for k, v in front.hypervolume.items()))
    for name, diff in (front.hypervolume_difference or {}).items():
        tqdm.write(f"{name}: {diff.estimate:+.4f}, 95% CI {diff.ci}, {diff.verdict}")
    if across.n_seeds > 1:
        for name, entry in across.hypervolume_difference.items():
            ci = "no interval" if entry.ci is None else f"[{entry.ci[0]:+.4f}, {entry.ci[1]:+.4f}]"
            tqdm.write(f"{name} over {across.n_seeds} seeds: {entry.estimate:+.4f}, 95% CI {ci} (seeds and prompts "
                       f"resampled), per seed " + ", ".join(f"{v:+.4f}" for v in entry.per_seed) + f": {entry.verdict}")
    elif trained:
        tqdm.write("these verdicts rest on one training run (seed "
                   f"{replicates[0].seed}); --seeds 0,1,2,3,4 measures how they move with the training seed")


def evaluate_bundle(bundle_dir: str | os.PathLike[str], recipe: EvaluationRecipe) -> Path:
    """``peo-hub evaluate``: sweep an existing bundle (e.g. a composed one) into a front, in place.

    The same sweep and the same front, plot, merges, presets and card as ``recipe run``'s
    phases 2-3 (:func:`peo_hub.evaluate.sweep.run_sweep`, then :func:`_finish`), on adapters that were
    not trained here. Evaluation records carry the evaluation's hash, so a re-run with the
    same recipe resumes and one with another recipe is refused instead of mixing the two.
    Everything that can fail early (the bundle and its adapters, the aspects, the prompts,
    the engine, a hand-written README) is checked before the first write.
    """
    from transformers import AutoTokenizer

    from peo_hub.bundle.manifest import CARD_NAME, RUN_RECORD, open_bundle
    from peo_hub.bundle.card import is_generated_card
    from peo_hub.data.load import load_prompts
    from peo_hub.family.engines import require_engine
    from peo_hub.utils.fsutil import ledger_of, overwrite_allowed, read_json
    from peo_hub.family.lora import load_bundle_adapters
    from peo_hub.bundle.manifest import EVALUATIONS_DIR
    from peo_hub.evaluate.records import RecordStore
    from peo_hub.evaluate.sweep import SweepJob, run_sweep
    from peo_hub.recipe.folder import fingerprint_hash, recipe_fingerprint

    bundle = open_bundle(bundle_dir)
    root, manifest = bundle.root, bundle.manifest
    if (root / RUN_RECORD).is_file() or "train" in manifest.recipe:
        raise RecipeError(f"{root} was trained by `peo-hub recipe run`, and its front belongs to that recipe; re-run "
                          f"`peo-hub recipe run RECIPE --output {root} --resume` instead")
    if set(recipe.aspects) != set(bundle.aspects):
        raise RecipeError(f"the recipe's aspects ({', '.join(recipe.aspects)}) are not the bundle's "
                          f"({', '.join(bundle.aspects)}); give one judge per aspect of the bundle")
    readme = root / CARD_NAME
    if (readme.is_file() and not overwrite_allowed()
            and not is_generated_card(readme.read_text(encoding="utf-8", errors="replace"))):
        raise RecipeError(f"{readme} was written by hand and evaluating rewrites the model card; move it aside "
                          "first (and back afterwards), or pass --overwrite to replace it")
    ledger = ledger_of(root)
    if ledger is not None:
        ledger.check(edited_only=True)  # a README or record changed since: refused now, not after the sweep
    # The bundle's order is the order everywhere (sliders, front, manifest).
    recipe = recipe.model_copy(update={"aspects": {a: recipe.aspects[a] for a in bundle.aspects}})
    load_bundle_adapters(bundle)
    require_engine(recipe.evaluate.engine)
    prompts = load_prompts(recipe.evaluate.prompts)
    tokenizer = AutoTokenizer.from_pretrained(bundle.base, revision=bundle.base_revision)
    store = RecordStore(root / EVALUATIONS_DIR)
    stamp = fingerprint_hash(recipe_fingerprint(recipe))
    for record in store.paths():
        found = read_json(record, f"delete {store.folder} and evaluate again")
        if not isinstance(found, dict) or found.get("recipe_hash") != stamp:
            raise RecipeError(f"{record} comes from another evaluation (or another recipe); delete "
                              f"{store.folder} to evaluate this bundle again with this recipe")
    # The base is used where it is (a bundle's base/ folder or a Hub id), never copied.
    job = SweepJob(bundle=root, records=store, aspects={aspect: spec.judge for aspect, spec in recipe.aspects.items()},
                   sweep=recipe.sweep, evaluate=recipe.evaluate, seed=recipe.seed, prompts=prompts,
                   tokenizer=tokenizer, base=bundle.base, base_revision=bundle.base_revision, stamp=stamp)
    evaluations = run_sweep(job)
    if evaluations is None:  # one of several `accelerate launch` processes: process 0 writes the front
        return root
    for aspect, spec in recipe.aspects.items():
        manifest.aspects[aspect].judge = spec.judge.model_dump(mode="json", exclude_none=True)
    manifest.recipe = recipe_json(recipe)
    _finish(recipe, root, manifest, [Replicate(recipe.seed, root, evaluations=evaluations)], trained=False)
    return root
