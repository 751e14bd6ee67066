"""``python -m peo_hub.train_aspect RECIPE ASPECT --output DIR``: one aspect's DPO run, for ``accelerate launch``.

Why a separate entry point: ``accelerate launch`` starts one copy of a script per GPU, and
the whole ``recipe run`` (every aspect, the sweep, the judges, the plots) must not run N
times over. This module trains exactly one aspect's adapter, the same way ``recipe run``
does (same base resolution, data, seed and ``train_adapter`` call), into the same place,
``DIR/adapters/<aspect>/``, renamed into place by the main process only once complete.
Afterwards ``peo-hub recipe run RECIPE --output DIR --resume`` finds the finished adapters,
keeps them, trains any aspect still missing, and runs the sweep::

    accelerate launch --config_file recipes/accelerate/ddp.yaml \\
        -m peo_hub.train_aspect recipes/pku-saferlhf-qwen2.5-0.5b.yaml helpful --output runs/pku
    accelerate launch --config_file recipes/accelerate/ddp.yaml \\
        -m peo_hub.train_aspect recipes/pku-saferlhf-qwen2.5-0.5b.yaml harmless --output runs/pku
    peo-hub recipe run recipes/pku-saferlhf-qwen2.5-0.5b.yaml --output runs/pku --resume

With training seeds (``seeds`` in the recipe, or ``--seeds`` given to ``recipe run``), ``--seed S``
trains that seed's adapter (into ``DIR/seeds/S/adapters/<aspect>/`` for every seed but the
first): seeds are independent runs, so separate launches (e.g. one per GPU set, with
``CUDA_VISIBLE_DEVICES``) can train different seeds at once; the ``recipe run --resume``
that follows must list those seeds, with the same first one (the run's seed).

Run as plain ``python -m`` it is one process on one device (or the CPU): the same code path.
Two aspects may train at once into one folder (e.g. on two GPU sets): each writes only its
own adapter folder. Do not start ``recipe run --resume`` on the folder while one is still
training: it clears leftover temporary folders, which includes a save in progress.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from peo_hub.utils.errors import PEOError, RecipeError


def train_aspect(recipe_path: str | Path, aspect: str, output: str | Path | None = None,
                 overrides: Sequence[str] = (), seed: int | None = None, seeds: list[int] | None = None) -> Path:
    """Train ``aspect``'s adapter of the recipe into ``output/adapters/<aspect>``; returns that folder.

    ``overrides``: the ``--set FIELD.PATH=VALUE`` of ``recipe run``; give the same ones to
    both, or the run refuses the adapter as made by another recipe. ``seeds`` replaces the
    recipe's training seeds (as ``recipe run --seeds``); ``seed`` picks one of them (default:
    the first, whose adapters are the bundle's; the others train into ``seeds/<seed>/``).

    An adapter that is already complete is kept (like ``--resume``). Safe under
    ``accelerate launch``: the main process runs the pre-flight first (downloads happen
    once), every process trains, only the main process writes.
    """
    import torch
    from accelerate import PartialState

    from peo_hub.recipe.load import load_recipe
    from peo_hub.recipe.folder import RunFolder
    from peo_hub.recipe.preflight import preflight
    from peo_hub.recipe.folder import sample_pairs

    recipe = load_recipe(recipe_path, overrides)
    if seeds is not None:
        recipe = recipe.with_seeds(seeds)
    if aspect not in recipe.aspects:
        raise RecipeError(
            f"aspect {aspect!r} is not in {recipe_path}; choose one of: {', '.join(recipe.aspects)}"
        )
    if seed is not None and seed not in recipe.training_seeds:
        raise RecipeError(f"--seed {seed} is not one of the recipe's training seeds "
                          f"({', '.join(map(str, recipe.training_seeds))}); give one of them, or --seeds")
    run = RunFolder(output or Path("runs") / (recipe.name or "run"), recipe, overrides=overrides)
    target = run.adapter_dir(aspect, seed)
    # cpu=True without CUDA so that torchrun/accelerate CPU processes form a gloo group here
    # too; the trainer's own arguments later set up the same state again.
    state = PartialState(cpu=not torch.cuda.is_available())
    write_record = run.check_may_take_adapters()
    if run.kept(target) is not None:
        if state.is_main_process:
            print(f"[{aspect}] adapter already trained, kept ({target}); delete it to retrain")
        return target

    with state.main_process_first():
        plan = preflight(recipe)
        if state.is_main_process:
            run.root.mkdir(parents=True, exist_ok=True)
            if write_record:  # so that `recipe run --resume` accepts the folder
                run.write_record()
            run.base_path(plan.base)  # the copy in base/, made once by the main process
        sample_pairs(plan, run)  # the main process samples, the others read its cache

    if state.is_main_process:
        print(f"[{aspect}] DPO on {plan.data[aspect].train.num_rows} pairs from {recipe.aspects[aspect].dataset.source} "
              f"({state.num_processes} process(es), {state.distributed_type.value})")
    run.train_one(plan, plan.data[aspect].train, target, {"aspect": aspect}, seed=seed)
    return target


def _seed_list(text: str) -> list[int]:
    from peo_hub.recipe.schema import parse_seed_list

    try:
        return parse_seed_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m peo_hub.train_aspect",
        description="Train one aspect's DPO LoRA adapter of a recipe (launchable with `accelerate launch`); "
                    "then `peo-hub recipe run RECIPE --output DIR --resume` picks it up.",
    )
    parser.add_argument("recipe", help="path to RECIPE.yaml")
    parser.add_argument("aspect", help="the aspect to train, as named in the recipe")
    parser.add_argument("--output", "-o", default=None, help="bundle folder (default: runs/<recipe name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD.PATH=VALUE",
                        help="override a recipe field, as `peo-hub recipe run --set` (repeat; give the same ones to both)")
    parser.add_argument("--seeds", type=_seed_list, default=None, metavar="S0,S1,...",
                        help="the run's training seeds, as given to `recipe run --seeds` (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=None,
                        help="which training seed to train (default: the first, whose adapters are the bundle's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        folder = train_aspect(args.recipe, args.aspect, output=args.output, overrides=args.overrides, seed=args.seed,
                              seeds=args.seeds)
    except PEOError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; no adapter folder was written for this aspect, run it again", file=sys.stderr)
        return 130
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"adapter in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
