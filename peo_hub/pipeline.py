"""``peo-hub recipe run``: phases 1-3 end to end, resumable, into one bundle folder.

Order of work and what makes it safe to interrupt:

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

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from peo_hub import __version__
from peo_hub.bundle import AspectEntry, Manifest, MANIFEST_NAME, save_manifest
from peo_hub.errors import RecipeError
from peo_hub.fsutil import atomic_dir, atomic_write_json, atomic_write_text, clean_stale_temps
from peo_hub.policy import make_preference, weight_grid
from peo_hub.recipe import Recipe, load_recipe
from peo_hub.train import adapter_complete, mix_datasets, train_adapter

logger = logging.getLogger(__name__)
RUN_STATE = ".peo_run.json"  # the recipe a folder was started with; guards --resume


def recipe_fingerprint(recipe: Recipe) -> dict[str, Any]:
    """What must not change between a run and its ``--resume`` (everything but where to push)."""
    return recipe.model_dump(mode="json", exclude={"hub"})


def _prepare_output(recipe: Recipe, output: Path, resume: bool) -> None:
    """Refuse to mix two runs in one folder; remember the recipe for ``--resume``."""
    state = output / RUN_STATE
    fingerprint = recipe_fingerprint(recipe)
    started = output.exists() and any(
        child.name != RUN_STATE and ".tmp-" not in child.name for child in output.iterdir()
    )  # a folder holding only the run record never got past set-up: reuse it freely
    if started:
        if not resume:
            raise RecipeError(
                f"output folder {output} is not empty; pass --resume to continue that run, or --output NEW_DIR"
            )
        if state.is_file():
            previous = json.loads(state.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
            if changed:
                raise RecipeError(
                    f"{output} was started with a different recipe (changed: {', '.join(changed)}); "
                    "use a new --output for the new recipe"
                )
        elif not (output / MANIFEST_NAME).is_file():
            raise RecipeError(f"{output} is not a peo-hub run folder; choose another --output")
    output.mkdir(parents=True, exist_ok=True)
    for folder in (output, output / "adapters", output / "evaluations", output / "baselines" / "morl"):
        clean_stale_temps(folder)
    atomic_write_json(state, fingerprint)


def _check_base(recipe: Recipe) -> None:
    """Fail in one line, before anything is written, when the base model cannot be had."""
    from peo_hub.world.base import is_embedded

    base = recipe.base_model
    if is_embedded(base):
        return
    looks_like_path = base.startswith((".", "/", "~")) or base.count("/") > 1 or Path(base).exists()
    if looks_like_path and not Path(base).expanduser().is_dir():
        raise RecipeError(f"base_model folder {base} does not exist; give a model folder, a Hub id or embedded:toy")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(str(Path(base).expanduser()) if looks_like_path else base,
                                   revision=recipe.base_model_revision)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(
            f"cannot load base_model {base!r}: {first}; check the id or path (offline, it must be in the HF cache)"
        ) from None


def _base_source(recipe: Recipe) -> tuple[str, str]:
    """(where to load the base from, what the manifest calls it).

    A Hub id is kept as is (users can get it themselves); an embedded or local base is
    copied into the bundle's ``base/`` (see :func:`_copy_base`) and called ``base``.
    """
    from peo_hub.world.base import ensure_embedded_base, is_embedded

    if is_embedded(recipe.base_model):
        return str(ensure_embedded_base(recipe.base_model, seed=recipe.seed)), "base"
    if Path(recipe.base_model).expanduser().is_dir():
        return str(Path(recipe.base_model).expanduser()), "base"
    return recipe.base_model, recipe.base_model


def _copy_base(source: str, output: Path) -> str:
    inside = output / "base"
    if not (inside / "config.json").is_file():
        with atomic_dir(inside) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
    return str(inside)


def _manifest(recipe: Recipe, base_id: str, records: dict[str, dict[str, Any]],
              data_provenance: dict[str, dict[str, Any]]) -> Manifest:
    aspects = {
        name: AspectEntry(
            adapter=f"adapters/{name}",
            judge=spec.judge.model_dump(exclude_none=True),
            dataset=data_provenance[name],
            train_seconds=records[name].get("train_seconds"),
            train_metrics=records[name].get("metrics", {}),
        )
        for name, spec in recipe.aspects.items()
    }
    return Manifest(
        peo_hub_version=__version__,
        base_model=base_id,
        base_model_revision=recipe.base_model_revision if base_id != "base" else None,
        aspects=aspects,
        lora=recipe.train.lora.model_dump(),
        recipe=recipe.model_dump(mode="json"),
    )


def run_recipe(recipe_path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
               resume: bool = False, push: str | None = None) -> Path:
    """Run a recipe into a bundle folder; returns the folder. See the module docstring."""
    from transformers import AutoTokenizer

    from peo_hub.data import load_preference_data, load_prompts
    from peo_hub.evaluate import require_engine

    recipe = load_recipe(recipe_path)
    require_engine(recipe.evaluate)  # a missing vLLM must fail now, not after training
    out = Path(output or Path("runs") / (recipe.name or "run"))
    repo_id = push or recipe.hub.repo_id

    # Everything a user can get wrong is checked before the first write: the base, every
    # aspect's data, the evaluation prompts.
    _check_base(recipe)
    base_source, base_id = _base_source(recipe)
    tokenizer = AutoTokenizer.from_pretrained(base_source, revision=recipe.base_model_revision)
    data, provenance = {}, {}
    for aspect, spec in recipe.aspects.items():
        loaded = load_preference_data(spec.dataset, tokenizer)
        data[aspect], provenance[aspect] = loaded.train, loaded.provenance()
    load_prompts(recipe.evaluate.prompts)

    _prepare_output(recipe, out, resume)
    base_path = _copy_base(base_source, out) if base_id == "base" else base_source

    # Phase 1: one adapter per aspect.
    records: dict[str, dict[str, Any]] = {}
    for aspect, spec in recipe.aspects.items():
        folder = out / "adapters" / aspect
        if resume and adapter_complete(folder):
            records[aspect] = json.loads((folder / "training_info.json").read_text())
            tqdm.write(f"[{aspect}] adapter already trained, kept ({folder})")
            continue
        tqdm.write(f"[{aspect}] DPO on {data[aspect].num_rows} pairs from {spec.dataset.source}")
        records[aspect] = train_adapter(
            base_path=base_path, tokenizer=tokenizer, dataset=data[aspect], lora=recipe.train.lora,
            dpo=recipe.train.dpo, output=folder, seed=recipe.seed, base_model_id=base_id,
            base_revision=recipe.base_model_revision if base_id != "base" else None,
            info={"aspect": aspect},
        )
    manifest = _manifest(recipe, base_id, records, provenance)
    save_manifest(out, manifest)

    # Baseline: MORL, one DPO run per interior weight vector on the mixed data.
    morl_records = {}
    if "morl" in recipe.sweep.baselines:
        morl_records = _train_morl(recipe, out, base_path, base_id, tokenizer, data, resume)

    # Phases 2-3: the sweep.
    from peo_hub.sweep import run_sweep

    points = run_sweep(recipe, out, tokenizer, morl_records)
    _finish(recipe, out, manifest, points, records, morl_records)
    if repo_id:
        from peo_hub.hub import push_bundle

        url = push_bundle(out, repo_id, private=recipe.hub.private)
        tqdm.write(f"pushed to {url}")
    return out


def _train_morl(recipe: Recipe, out: Path, base_path: str, base_id: str, tokenizer: Any,
                data: dict[str, Any], resume: bool) -> dict[str, dict[str, Any]]:
    aspects = list(recipe.aspects)
    records: dict[str, dict[str, Any]] = {}
    for weights in weight_grid(aspects, recipe.sweep.weights):
        if max(weights.values()) == 1.0:
            continue  # corners are the aspect adapters themselves
        label = make_preference(aspects, weights).label()
        folder = out / "baselines" / "morl" / label
        if not (resume and adapter_complete(folder)):
            tqdm.write(f"[morl {label}] DPO on the mixture")
            train_adapter(
                base_path=base_path, tokenizer=tokenizer, dataset=mix_datasets(data, weights, recipe.seed),
                lora=recipe.train.lora, dpo=recipe.train.dpo, output=folder, seed=recipe.seed,
                base_model_id=base_id, info={"weights": weights, "method": "morl"},
            )
        records[label] = {**json.loads((folder / "training_info.json").read_text()), "weights": weights,
                          "adapter": str(folder.relative_to(out))}
    return records


def _finish(recipe: Recipe, out: Path, manifest: Manifest, points: list[dict[str, Any]],
            records: dict[str, dict[str, Any]], morl_records: dict[str, dict[str, Any]]) -> None:
    """front.json/png, merges for the front and presets, the card, the manifest summary."""
    from peo_hub.card import write_model_card
    from peo_hub.merge import mergekit_config, mergekit_yaml, open_bundle
    from peo_hub.pareto import build_front, plot_front, save_front

    aspects = list(recipe.aspects)
    front = build_front(aspects, points)
    front["training_seconds"] = {
        "peo": round(sum(r.get("train_seconds", 0.0) for r in records.values()), 2),
        "morl": round(sum(r.get("train_seconds", 0.0) for r in morl_records.values()), 2),
        "peo_runs": len(records),
        "morl_runs": len(morl_records),
    }
    save_front(front, out)
    plot_front(front, out / "front.png")

    view = open_bundle(out)
    merges = out / "merges"
    with atomic_dir(merges) as tmp:
        for point in front["points"]:
            if not point["on_front"]:
                continue
            preference = make_preference(aspects, coefficients=point["coefficients"])
            config = mergekit_config(view, point["coefficients"], relative_to=out)
            label = point.get("label") or preference.label()
            atomic_write_text(tmp / f"{label}.yaml", mergekit_yaml(config, preference))

    manifest.presets = front.get("presets", {})
    manifest.front = {
        "hypervolume": front["hypervolume"],
        "n_points": len(front["points"]),
        "on_front": sum(bool(p["on_front"]) for p in front["points"]),
        "training_seconds": front["training_seconds"],
    }
    save_manifest(out, manifest)
    write_model_card(out)
    tqdm.write("hypervolume: " + ", ".join(f"{k}={v:.4f}" for k, v in front["hypervolume"].items()))
