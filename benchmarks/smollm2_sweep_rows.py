"""What the real world's sweep pays per row, and two settings that change it without changing a reply.

    OMP_NUM_THREADS=2 python benchmarks/smollm2_sweep_rows.py --run /work/runs/smollm2-bench

A point of ``recipes/smollm2-safety.yaml``'s sweep is 245 greedy replies of up to 48 tokens
(prompts of 34-50 tokens), plus the judges and the guard; it takes about two minutes on two
cores, and the sweep's 24 points are most of the real run's time (docs/worlds.md, "Cost").
This script measures, on a finished run of that recipe (``--run``), the sweep's own code paths:

* ``batch_size``: the four interior points of the grid (w_helpful 0.25 / 0.75, alpha 0 / 0.5)
  on ``--prompts`` evaluation prompts, generated together as the sweep does
  (:func:`peo_hub.evaluate.sweep.point_replies`) at ``evaluate.batch_size`` 32 (the recipe's),
  64 and 128, in interleaved rounds; every reply is checked against the run's own records,
  which were generated at 32;
* ``prompt_cache``: the prompt cache of 64 rows at one preference
  (:func:`peo_hub.family.engines.prompt_cache`) with the LM head run on the last prompt
  position only (``logits_to_keep=1``, as the code does now) against every position (as it
  did before); the cache must be the same.

Ratios are best-of-rounds, measured in the same run; the JSON keeps every time.
Results: ``benchmarks/results/smollm2_sweep_rows.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

from common import machine, summary, write_report

import torch  # noqa: E402  (common sets the offline environment first)

from peo_hub.core.policy import make_preference  # noqa: E402
from peo_hub.data.chat import render_prompt  # noqa: E402

ASPECTS = ["helpful", "harmless"]


def interior_points() -> list:
    return [make_preference(ASPECTS, {"helpful": w, "harmless": 1 - w}, alpha=a) for w in (0.25, 0.75)
            for a in (0.0, 0.5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run of recipes/smollm2-safety.yaml")
    parser.add_argument("--prompts", type=int, default=48, help="evaluation prompts (every k-th of the run's)")
    parser.add_argument("--batch-sizes", default="32,64,128")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    import peo_hub.family.engines as engines
    from peo_hub.evaluate.sweep import point_replies
    from peo_hub.family.model import PEOModel

    evaluations = args.run / "evaluations"
    everything = json.loads((evaluations / "base-c-helpful0.00-harmless0.00.json").read_text())["prompts"]
    prompts = everything[::max(1, len(everything) // args.prompts)][:args.prompts]
    tokenizer = AutoTokenizer.from_pretrained(args.run / "base")
    model = PEOModel.from_pretrained(args.run)
    model.range_warnings = False
    rendered = [render_prompt(tokenizer, p) for p in prompts]
    points = interior_points()
    recorded = [json.loads((evaluations / f"{'soup' if p.alpha == 0 else 'peo'}-{p.label()}.json").read_text())
                ["samples"] for p in points]

    sizes = [int(s) for s in args.batch_sizes.split(",")]
    times: dict[str, list[float]] = {str(b): [] for b in sizes}
    same: dict[str, int] = {}
    for round_ in range(args.rounds):
        for size in sizes[round_ % len(sizes):] + sizes[:round_ % len(sizes)]:  # rotated: drift hits all alike
            spec = SimpleNamespace(batch_size=size, samples=1, temperature=0.0, top_p=1.0, max_new_tokens=48)
            start = time.perf_counter()
            replies = [r for _, r in point_replies(model, tokenizer, rendered, points, spec, 0)]
            times[str(size)].append(round(time.perf_counter() - start, 2))
            same[str(size)] = sum(reply == record[prompt] for point, record in zip(replies, recorded)
                                  for prompt, reply in zip(prompts, point))
            print(f"batch_size {size}: {times[str(size)][-1]} s, replies as recorded {same[str(size)]}"
                  f"/{len(points) * len(prompts)}", flush=True)

    ids = tokenizer(rendered[:64] if len(rendered) >= 64 else (rendered * 2)[:64], add_special_tokens=False)["input_ids"]
    batch = engines.left_padded(ids, max(map(len, ids)), tokenizer.pad_token_id)
    rows = [points[1]] * len(ids)
    keeps = engines.keeps_logits
    cache_times: dict[str, list[float]] = {"last_position_logits": [], "every_position_logits": []}
    caches = {}
    for _ in range(args.rounds + 1):
        for name, keep in (("last_position_logits", keeps), ("every_position_logits", lambda _: False)):
            engines.keeps_logits = keep
            start = time.perf_counter()
            with torch.inference_mode():
                caches[name] = engines.prompt_cache(model, batch["input_ids"], batch["attention_mask"], rows,
                                                    list(range(len(ids))))
            cache_times[name].append(round(time.perf_counter() - start, 2))
    engines.keeps_logits = keeps
    cache_same = all(torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values) for a, b in
                     zip(caches["last_position_logits"].layers, caches["every_position_logits"].layers))

    best = {k: min(v) for k, v in times.items()}
    report = {
        "machine": machine(), "command": "python benchmarks/smollm2_sweep_rows.py --run RUN "
                                          f"--prompts {args.prompts} --batch-sizes {args.batch_sizes} --rounds {args.rounds}",
        "run": str(args.run), "points": [p.label() for p in points], "prompts": len(prompts),
        "batch_size": {"seconds": {k: summary(v) for k, v in times.items()},
                       "ratio_to_32_best": {k: round(v / best[str(sizes[0])], 3) for k, v in best.items()},
                       "replies_as_recorded": same, "replies_compared": len(points) * len(prompts)},
        "prompt_cache": {"rows": len(ids), "seconds": {k: summary(v) for k, v in cache_times.items()},
                         "ratio_best": round(min(cache_times["last_position_logits"])
                                             / min(cache_times["every_position_logits"]), 3),
                         "same_cache": cache_same},
    }
    write_report("smollm2_sweep_rows", report, args.output)
    print(json.dumps({"batch_size": report["batch_size"]["ratio_to_32_best"],
                      "prompt_cache": report["prompt_cache"]["ratio_best"], "same_cache": cache_same}))


if __name__ == "__main__":
    main()
