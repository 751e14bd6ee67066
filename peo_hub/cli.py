"""``peo-hub``: the command line. Thin on purpose: each verb is one call into a module.

User mistakes surface as :class:`~peo_hub.utils.errors.PEOError` and are printed as one line
(``error: ...``) with a non-zero exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from peo_hub.utils.errors import PEOError

if TYPE_CHECKING:
    from pathlib import Path


def _recipe_validate(args: argparse.Namespace) -> int:
    from peo_hub.recipe.load import load_recipe
    from peo_hub.recipe.preflight import preflight

    recipe = load_recipe(args.recipe, args.overrides)
    if not args.schema_only:
        plan = preflight(recipe)  # the same checks `recipe run` makes before its first write
        pairs = ", ".join(f"{a} {plan.data[a].train.num_rows} pairs" if a in plan.data
                          else f"{a} pairs to sample for {plan.to_sample[a]} prompts" for a in recipe.aspects)
        print(f"ok: {args.recipe} is a valid recipe ({pairs}; {len(plan.prompts)} evaluation prompts; "
              f"base {recipe.base_model})")
        return 0
    print(f"ok: {args.recipe} is a valid recipe ({len(recipe.aspects)} aspects: {', '.join(recipe.aspects)})")
    return 0


def _recipe_run(args: argparse.Namespace) -> int:
    from peo_hub.recipe.pipeline import run_recipe

    bundle = run_recipe(args.recipe, output=args.output, resume=args.resume, push=args.push,
                        overrides=args.overrides)
    print(f"bundle written to {bundle}")
    print(_next_steps(bundle, pushed=bool(args.push)))
    return 0


def _next_steps(bundle: "Path", pushed: bool) -> str:
    """The closing line of ``recipe run``: what people do with a bundle next, with its own names."""
    import shlex

    from peo_hub.bundle.manifest import load_manifest
    from peo_hub.utils.errors import BundleError

    where = shlex.quote(str(bundle))
    try:
        aspects = load_manifest(bundle).aspect_names
    except BundleError:  # not the process that writes the bundle (accelerate launch)
        return f"next: peo-hub recipe run ... --resume, once every process has finished, writes the bundle in {where}"
    weights = ",".join(f"{a}={1 / len(aspects):.2g}" for a in aspects)  # merge normalises them to sum to one
    steps = [f"peo-hub space {where}", f"peo-hub merge {where} --weights {weights} --output {where}-point"]
    if not pushed:
        steps.append(f"peo-hub push {where} USER/REPO")
    return "next: " + "   |   ".join(steps)


def _merge(args: argparse.Namespace) -> int:
    from peo_hub.bundle.manifest import open_bundle
    from peo_hub.family.merge import check_point_output, write_point
    from peo_hub.bundle.pull import bundle_folder
    from peo_hub.family.lora import load_bundle_adapters
    from peo_hub.family.model import warn_coefficients
    from peo_hub.core.policy import make_preference, parse_assignments

    weights = parse_assignments(args.weights, "weights") if args.weights else None
    coefficients = parse_assignments(args.coefficients, "coefficients") if args.coefficients else None
    check_point_output(args.output, args.as_, args.max_rank)  # before any download or work
    bundle = open_bundle(bundle_folder(args.bundle), source=args.bundle)
    preference = make_preference(bundle.aspects, weights=weights, alpha=args.alpha, coefficients=coefficients,
                                 formulation=bundle.manifest.formulation)
    adapters = load_bundle_adapters(bundle)
    warn_coefficients(bundle.manifest, preference.coefficients)
    out = write_point(bundle, preference, args.output, args.as_, adapters=adapters, max_rank=args.max_rank)
    print(f"wrote {args.as_} to {out}")
    if args.as_ == "adapter":
        from peo_hub.family.lora import cat_adapters
        from peo_hub.publish.rank import measure_truncation, rank_advice

        rank = cat_adapters(adapters, preference.coefficients)[1]
        print(rank_advice(min(rank, args.max_rank or rank)))
        if args.max_rank is not None and args.max_rank < rank:
            from peo_hub.recipe.schema import evaluation_of

            evaluation = evaluation_of(bundle.manifest.recipe)
            for line in measure_truncation(bundle, adapters, preference, args.max_rank, evaluation=evaluation,
                                           echo=print).lines():
                print(line)
    return 0


def _compose(args: argparse.Namespace) -> int:
    from peo_hub.train.compose import compose

    out = compose(args.base, args.adapter or [], args.output)
    print(f"composed bundle written to {out}; next: peo-hub evaluate {out} --recipe RECIPE.yaml")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from peo_hub.recipe.pipeline import evaluate_bundle
    from peo_hub.recipe.load import evaluation_recipe

    recipe = evaluation_recipe(args.recipe, judges=args.judge or [], prompts=args.prompts)
    out = evaluate_bundle(args.bundle, recipe)
    print(f"front written to {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from peo_hub.bundle.manifest import open_bundle
    from peo_hub.bundle.pull import bundle_folder
    from peo_hub.utils.hubio import download_model
    from peo_hub.publish.gguf import check_gguf_output, export_gguf, point_preference
    from peo_hub.utils.errors import MergeError

    if args.format == "ollama":
        return _export_ollama(args)
    if args.all_presets:
        raise MergeError("--all-presets writes one Ollama model per preset; use it with --format ollama, or give "
                         "--point PRESET with --format gguf")
    check_gguf_output(args.output)  # before any download or work
    bundle = open_bundle(bundle_folder(args.bundle), source=args.bundle)
    point = point_preference(bundle, args.point, args.alpha) if args.point else None
    base = bundle.base
    if not bundle.base_is_local:
        base = str(download_model(bundle.base, bundle.base_revision,
                                  config_only=args.base == "none" and point is None)[0])
    out = export_gguf(bundle, args.output, base, dtype=args.dtype, write_base=args.base != "none", point=point)
    if point is not None:
        print(f"wrote the fused point {point.label()} ({args.dtype}) to {out}")
    else:
        print(f"wrote llama.cpp files to {out}; serve them with the command in {out}/README.md")
    return 0


def _export_ollama(args: argparse.Namespace) -> int:
    from peo_hub.bundle.manifest import open_bundle
    from peo_hub.bundle.pull import bundle_folder
    from peo_hub.publish.gguf import point_preference
    from peo_hub.publish.ollama import check_ollama_output, export_ollama
    from peo_hub.utils.errors import MergeError
    from peo_hub.utils.hubio import download_model

    if args.base == "none":
        raise MergeError("--format ollama writes the fused model itself; drop --base none")
    if bool(args.point) == bool(args.all_presets):
        raise MergeError("--format ollama needs one of --point PRESET|WEIGHTS (one model) or --all-presets "
                         "(one model per preset of the bundle's front)")
    check_ollama_output(args.output)  # before any download or work
    bundle = open_bundle(bundle_folder(args.bundle), source=args.bundle)
    if args.all_presets:
        if not bundle.presets:
            raise MergeError("--all-presets: the bundle has no presets (its front was not evaluated); run "
                             "`peo-hub evaluate BUNDLE --recipe RECIPE.yaml` first, or give --point WEIGHTS")
        points = {name: point_preference(bundle, name) for name in bundle.presets}
    else:
        point = point_preference(bundle, args.point, args.alpha)
        points = {args.point if args.point in bundle.presets else point.label(): point}
    base = bundle.base
    if not bundle.base_is_local:
        base = str(download_model(bundle.base, bundle.base_revision)[0])
    out = export_ollama(bundle, args.output, base, points, dtype=args.dtype, subfolders=bool(args.all_presets))
    print(f"wrote {len(points)} Ollama model{'s' if len(points) > 1 else ''} to {out}; create "
          f"{'them' if len(points) > 1 else 'it'} with the commands in {out}/README.md")
    return 0


def _push(args: argparse.Namespace) -> int:
    from peo_hub.publish.hub import push_bundle
    from peo_hub.utils.ids import check_repo_id

    check_repo_id(args.repo_id)
    if args.space:  # every id is checked before anything is published
        check_repo_id(args.space, "Space id")
    url = push_bundle(args.bundle, args.repo_id, private=args.private, token=args.token, revision=args.revision,
                      commit_message=args.commit_message)
    print(f"pushed {args.bundle} to {url}")
    if args.space:
        from peo_hub.publish.hub import push_space

        print(f"space published at "
              f"{push_space(args.space, bundle_repo_id=args.repo_id, private=args.private, token=args.token)}")
    return 0


def _env(args: argparse.Namespace) -> int:
    from peo_hub.utils.envreport import environment_report, format_report

    report = environment_report()
    if args.json:
        import json

        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def _space(args: argparse.Namespace) -> int:
    from peo_hub.serve.space import launch

    launch(args.bundle, host=args.host, port=args.port, share=args.share)
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; use 1-65535, e.g. 7860") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number; use 1-65535, e.g. 7860")
    return port


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD.PATH=VALUE",
                        help="override a recipe field, checked like the file (repeat), e.g. --set "
                             "train.dpo.max_steps=20 --set sweep.alpha=[0,0.5]; the value is read as YAML")


def build_parser() -> argparse.ArgumentParser:
    from peo_hub import __version__

    parser = argparse.ArgumentParser(
        prog="peo-hub",
        description="PEO: one LoRA adapter per preference aspect, a dial at inference time.",
    )
    parser.add_argument("--version", action="version", version=f"peo-hub {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    recipe = verbs.add_parser("recipe", help="validate or run a YAML recipe")
    recipe_verbs = recipe.add_subparsers(dest="recipe_verb", required=True, metavar="ACTION")
    validate = recipe_verbs.add_parser(
        "validate", help="check a recipe without training: the fields, and everything `recipe run` checks before "
                         "its first write (base model, data, prompts, judges, DPO and LoRA settings)")
    validate.add_argument("recipe", help="path to RECIPE.yaml")
    validate.add_argument("--schema-only", action="store_true",
                          help="only the fields (fast: no base model, data or judge is loaded)")
    _add_overrides(validate)
    validate.set_defaults(func=_recipe_validate)
    run = recipe_verbs.add_parser("run", help="train aspect adapters, sweep, write a bundle")
    run.add_argument("recipe", help="path to RECIPE.yaml")
    run.add_argument("--output", "-o", default=None, help="bundle folder (default: runs/<recipe name>)")
    run.add_argument("--resume", action="store_true", help="keep finished aspects and sweep points")
    run.add_argument("--push", metavar="REPO_ID", default=None, help="push the bundle to this Hub repo")
    run.add_argument("--overwrite", action="store_true",
                       help="replace files of an earlier output even where they were edited or not written by "
                            "peo-hub (files this command does not write are never touched)")
    _add_overrides(run)
    run.set_defaults(func=_recipe_run)

    merge = verbs.add_parser("merge", help="materialise one preference point")
    merge.add_argument("bundle", help="bundle folder or Hub repo id")
    merge.add_argument("--weights", help="e.g. helpful=0.7,harmless=0.3")
    merge.add_argument("--coefficients", help="raw per-aspect coefficients (task arithmetic)")
    merge.add_argument("--alpha", type=float, default=0.0, help="extrapolation (0 = soup)")
    merge.add_argument("--output", "-o", required=True, help="output folder (or .yaml file)")
    merge.add_argument("--as", dest="as_", choices=["adapter", "model", "yaml"], default="adapter")
    merge.add_argument("--max-rank", type=int, default=None, metavar="K",
                       help="--as adapter: cut the adapter to rank K by SVD (for servers with a rank limit) and "
                            "report the logit and judge-score change")
    merge.add_argument("--overwrite", action="store_true",
                         help="replace files of an earlier output even where they were edited or not written by "
                              "peo-hub (files this command does not write are never touched)")
    merge.set_defaults(func=_merge)

    export = verbs.add_parser("export", help="write a bundle for another runtime (llama.cpp GGUF, Ollama)")
    export.add_argument("bundle", help="bundle folder or Hub repo id")
    export.add_argument("--format", required=True, choices=["gguf", "ollama"],
                        help="gguf: llama.cpp / llama-server; ollama: a fused GGUF and a Modelfile per point")
    export.add_argument("--output", "-o", required=True, help="output folder")
    export.add_argument("--dtype", choices=["f32", "f16"], default="f32",
                        help="base (or point) weights: f32 reproduces transformers exactly, f16 is half the size")
    export.add_argument("--base", choices=["write", "none"], default="write",
                        help="none: adapters only, for a base GGUF you already have (same weights)")
    export.add_argument("--point", metavar="PRESET|WEIGHTS",
                        help="write one fused point as a model GGUF (with --format ollama: and its Modelfile): a preset name "
                             "or e.g. helpful=0.7,harmless=0.3")
    export.add_argument("--alpha", type=float, default=0.0, help="with --point WEIGHTS: extrapolation")
    export.add_argument("--all-presets", action="store_true",
                        help="--format ollama: one sub-folder (GGUF + Modelfile) per preset of the bundle's front")
    export.add_argument("--overwrite", action="store_true",
                          help="replace files of an earlier output even where they were edited or not written by "
                               "peo-hub (files this command does not write are never touched)")
    export.set_defaults(func=_export)

    compose = verbs.add_parser(
        "compose", help="a bundle from existing PEFT LoRA adapters (Hub or local), no training; prints a "
                        "compatibility report before writing anything")
    compose.add_argument("base", help="the base model: Hub id[@revision], a local folder, or embedded:toy")
    compose.add_argument("--adapter", action="append", metavar="NAME=REF",
                         help="an aspect and its adapter: user/repo[@revision][:subfolder] or a local folder "
                              "(repeat, two or more)")
    compose.add_argument("--output", "-o", required=True, help="bundle folder to write")
    compose.add_argument("--overwrite", action="store_true",
                           help="replace files of an earlier output even where they were edited or not written by "
                                "peo-hub (files this command does not write are never touched)")
    compose.set_defaults(func=_compose)

    evaluate = verbs.add_parser("evaluate", help="sweep an existing (e.g. composed) bundle into a front, in place")
    evaluate.add_argument("bundle", help="bundle folder")
    evaluate.add_argument("--recipe", help="a recipe (its aspects' judges, sweep and evaluate sections are used)")
    evaluate.add_argument("--judge", action="append", metavar="ASPECT=JUDGE",
                          help="a judge per aspect: ASPECT=TYPE, ASPECT=reward_model:MODEL or ASPECT=cost_model:MODEL "
                               "(replaces the recipe's)")
    evaluate.add_argument("--prompts", metavar="SOURCE",
                          help="evaluation prompts: a file or Hub dataset with a prompt column (replaces the recipe's)")
    evaluate.add_argument("--overwrite", action="store_true",
                            help="replace files of an earlier output even where they were edited or not written by "
                                 "peo-hub (files this command does not write are never touched)")
    evaluate.set_defaults(func=_evaluate)

    push = verbs.add_parser("push", help="push a bundle to the Hugging Face Hub")
    push.add_argument("bundle", help="bundle folder")
    push.add_argument("repo_id", help="the model repo to publish to, namespace/name (created if needed)")
    push.add_argument("--private", action="store_true", help="create the repo private (applies when it is created)")
    push.add_argument("--space", metavar="SPACE_REPO_ID", default=None,
                      help="also publish the demo Space, loading this bundle")
    push.add_argument("--revision", metavar="BRANCH", default=None,
                      help="push to this branch (created from main if needed) instead of main")
    push.add_argument("--commit-message", metavar="TEXT", default=None,
                      help="the commit's title (default: Upload PEO bundle (N aspects: ...))")
    push.add_argument("--token", default=None,
                      help="a Hugging Face token with write access (default: HF_TOKEN, else `hf auth login`'s)")
    push.set_defaults(func=_push)

    space = verbs.add_parser("space", help="serve the preference-slider chat app locally")
    space.add_argument("bundle", help="bundle folder or Hub repo id")
    space.add_argument("--host", default="127.0.0.1")
    space.add_argument("--port", type=_port, default=7860, help="1-65535 (default 7860)")
    space.add_argument("--share", action="store_true",
                       help="also open a temporary public gradio.live link (needs the internet; anyone with the "
                            "link can use the app)")
    space.set_defaults(func=_space)

    env = verbs.add_parser("env", help="print the versions of peo-hub and its stack, the device and the caches, for "
                                       "bug reports")
    env.add_argument("--json", action="store_true", help="one JSON object instead of Markdown lines")
    env.set_defaults(func=_env)
    return parser


#: Deprecations one library raises about another's API (PEFT reads transformers'
#: ``is_gradient_checkpointing`` on every adapter load): nothing a user can act on, and they
#: would otherwise print before the command's own result line.
LIBRARY_DEPRECATIONS = (r"`is_gradient_checkpointing` is deprecated",)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    from peo_hub.utils.fsutil import overwriting

    try:
        with overwriting(bool(getattr(args, "overwrite", False))), warnings.catch_warnings():
            for message in LIBRARY_DEPRECATIONS:
                warnings.filterwarnings("ignore", message=message, category=FutureWarning)
            return func(args)
    except PEOError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; finished parts are kept, re-run with --resume to continue",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
