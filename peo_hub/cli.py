"""``peo-hub``: the command line. Thin on purpose: each verb is one call into a module.

User mistakes surface as :class:`~peo_hub.errors.PEOError` and are printed as one line
(``error: ...``) with a non-zero exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from peo_hub.errors import PEOError


def _recipe_validate(args: argparse.Namespace) -> int:
    from peo_hub.recipe import load_recipe
    from peo_hub.run import preflight

    recipe = load_recipe(args.recipe)
    if not args.schema_only:
        plan = preflight(recipe)  # the same checks `recipe run` makes before its first write
        pairs = ", ".join(f"{a} {plan.data[a].train.num_rows} pairs" for a in recipe.aspects)
        print(f"ok: {args.recipe} is a valid recipe ({pairs}; {len(plan.prompts)} evaluation prompts; "
              f"base {recipe.base_model})")
        return 0
    print(f"ok: {args.recipe} is a valid recipe ({len(recipe.aspects)} aspects: {', '.join(recipe.aspects)})")
    return 0


def _recipe_run(args: argparse.Namespace) -> int:
    from peo_hub.pipeline import run_recipe

    bundle = run_recipe(args.recipe, output=args.output, resume=args.resume, push=args.push)
    print(f"bundle written to {bundle}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from peo_hub.bundle import open_bundle
    from peo_hub.export import check_point_output, write_point
    from peo_hub.hub import bundle_folder
    from peo_hub.lora import load_bundle_adapters
    from peo_hub.model import warn_coefficients
    from peo_hub.policy import make_preference, parse_assignments

    weights = parse_assignments(args.weights, "weights") if args.weights else None
    coefficients = parse_assignments(args.coefficients, "coefficients") if args.coefficients else None
    check_point_output(args.output, args.as_)  # before any download or work
    bundle = open_bundle(bundle_folder(args.bundle), source=args.bundle)
    preference = make_preference(bundle.aspects, weights=weights, alpha=args.alpha, coefficients=coefficients,
                                 formulation=bundle.manifest.formulation)
    adapters = load_bundle_adapters(bundle)
    warn_coefficients(bundle.manifest, preference.coefficients)
    out = write_point(bundle, preference, args.output, args.as_, adapters=adapters)
    print(f"wrote {args.as_} to {out}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from peo_hub.hub import push_bundle
    from peo_hub.ids import check_repo_id

    check_repo_id(args.repo_id)
    if args.space:  # every id is checked before anything is published
        check_repo_id(args.space, "Space id")
    url = push_bundle(args.bundle, args.repo_id, private=args.private)
    print(f"pushed {args.bundle} to {url}")
    if args.space:
        from peo_hub.hub import push_space

        print(f"space published at {push_space(args.space, bundle_repo_id=args.repo_id, private=args.private)}")
    return 0


def _space(args: argparse.Namespace) -> int:
    from peo_hub.space import launch

    launch(args.bundle, host=args.host, port=args.port)
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; use 1-65535, e.g. 7860") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number; use 1-65535, e.g. 7860")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peo-hub",
        description="PEO: one LoRA adapter per preference aspect, a dial at inference time.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    recipe = verbs.add_parser("recipe", help="validate or run a YAML recipe")
    recipe_verbs = recipe.add_subparsers(dest="recipe_verb", required=True, metavar="ACTION")
    validate = recipe_verbs.add_parser(
        "validate", help="check a recipe without training: the fields, and everything `recipe run` checks before "
                         "its first write (base model, data, prompts, judges, DPO and LoRA settings)")
    validate.add_argument("recipe", help="path to RECIPE.yaml")
    validate.add_argument("--schema-only", action="store_true",
                          help="only the fields (fast: no base model, data or judge is loaded)")
    validate.set_defaults(func=_recipe_validate)
    run = recipe_verbs.add_parser("run", help="train aspect adapters, sweep, write a bundle")
    run.add_argument("recipe", help="path to RECIPE.yaml")
    run.add_argument("--output", "-o", default=None, help="bundle folder (default: runs/<recipe name>)")
    run.add_argument("--resume", action="store_true", help="keep finished aspects and sweep points")
    run.add_argument("--push", metavar="REPO_ID", default=None, help="push the bundle to this Hub repo")
    run.set_defaults(func=_recipe_run)

    merge = verbs.add_parser("merge", help="materialise one preference point")
    merge.add_argument("bundle", help="bundle folder or Hub repo id")
    merge.add_argument("--weights", help="e.g. helpful=0.7,harmless=0.3")
    merge.add_argument("--coefficients", help="raw per-aspect coefficients (task arithmetic)")
    merge.add_argument("--alpha", type=float, default=0.0, help="extrapolation (0 = soup)")
    merge.add_argument("--output", "-o", required=True, help="output folder (or .yaml file)")
    merge.add_argument("--as", dest="as_", choices=["adapter", "model", "yaml"], default="adapter")
    merge.set_defaults(func=_merge)

    push = verbs.add_parser("push", help="push a bundle to the Hugging Face Hub")
    push.add_argument("bundle")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--space", metavar="SPACE_REPO_ID", default=None,
                      help="also publish the demo Space, loading this bundle")
    push.set_defaults(func=_push)

    space = verbs.add_parser("space", help="serve the preference-slider chat app locally")
    space.add_argument("bundle", help="bundle folder or Hub repo id")
    space.add_argument("--host", default="127.0.0.1")
    space.add_argument("--port", type=_port, default=7860, help="1-65535 (default 7860)")
    space.set_defaults(func=_space)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
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
