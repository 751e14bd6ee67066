"""What does generating at a fixed preference cost, live vs fused vs the bare base model?

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/generation_throughput.py [--quick] [--device cuda]

A PEO policy is ``base + Σ cᵢ Δᵢ``. Live, every one of the N aspect adapters runs on every
forward pass (N extra pairs of small matmuls per adapted layer); fused, the combination is
merged into the base weights, so generation should cost what the base model costs. This
script measures greedy generation throughput (tokens/s; exactly ``--new-tokens`` new
tokens per sequence, forced with ``min_new_tokens = max_new_tokens``; prompt processing
included) for:

* ``base``:   the base model alone, plain ``transformers``, no PEFT wrapping;
* ``fused``:  ``PEOModel`` after ``set_preference(..., fuse=True)``, bundles with N = 2 and 4;
* ``live``:   ``PEOModel`` at the same preference, N = 1, 2, 4 active adapters;
* ``fused, wrappers removed`` (a diagnostic): the fused weights with PEFT's LoRA layer
  wrappers replaced by their base layers, to show where a fused-vs-base gap comes from;

at batch 1 and batch 8, on the embedded toy world's model shape (0.3M parameters) and on a
synthetic ~100M-parameter Llama. Bundles are built in a temporary folder (random base,
random non-zero rank-8 LoRA adapters on every linear layer; the N = 1 and 2 bundles share
the N = 4 bundle's base and first adapters). The configurations are timed in interleaved
rounds (each round runs every configuration once, in a rotated order) so that drift in the
machine's load hits them alike; ratios use the best round of each (least disturbed on a
shared CPU), medians are kept in the JSON. It also times one merged LoRA layer against its
own base layer, to size the cost that remains when fused (PEFT's wrapper stays in place).
``--quick`` skips the 100M model and uses fewer rounds. Results go to
``benchmarks/results/generation_throughput[_quick|_cuda].json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from common import SIZES, aspect_names, build_bundle, subset_bundle, summary, timed, write_report

import torch  # noqa: E402  (common sets the offline environment first)

MODELS = ("toy-world", "llama-100m")
LIVE_N = (1, 2, 4)
FUSED_N = (2, 4)
BATCHES = (1, 8)
UNWRAPPED = "fused, wrappers removed"
ALPHA = 0.5  # the preference: equal weights over the N aspects, alpha 0.5 (cᵢ = 1.5 / N)


def preference(n: int) -> dict[str, float]:
    return {a: 1.0 / n for a in aspect_names(n)}


def load_models(bundle: Path, device: str) -> dict[str, Any]:
    """Every configuration, loaded side by side: {name: object with .generate(**kwargs)}."""
    from transformers import AutoModelForCausalLM

    from peo_hub import PEOModel

    models: dict[str, Any] = {}
    base = AutoModelForCausalLM.from_pretrained(bundle / "full" / "base").to(device).eval()
    models["base"] = base
    for n in FUSED_N:
        m = PEOModel.from_pretrained(bundle / f"n{n}", device=device)
        m.set_preference(preference(n), alpha=ALPHA, fuse=True)
        models[f"fused N={n}"] = m
    for n in LIVE_N:
        m = PEOModel.from_pretrained(bundle / f"n{n}", device=device)
        m.set_preference(preference(n), alpha=ALPHA)
        models[f"live N={n}"] = m
    # Diagnostic, not a PEOModel mode: the fused weights with PEFT's LoRA wrappers swapped
    # back for their base layers (PEFT ``unload()``; the merged weights stay), i.e. the cost
    # of fused generation if the wrappers were taken out of the forward pass.
    n = FUSED_N[-1]
    m = PEOModel.from_pretrained(bundle / f"n{n}", device=device)
    m.set_preference(preference(n), alpha=ALPHA, fuse=True)
    models[f"{UNWRAPPED} N={n}"] = m.peft_model.unload().eval()
    return models


def generate_fn(model: Any, inputs: dict[str, torch.Tensor], new_tokens: int, pad_id: int) -> Callable[[], Any]:
    kwargs = dict(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=pad_id)
    if hasattr(model, "peft_model"):  # PEOModel: its own generate (lock + inference mode)
        return lambda: model.generate(**kwargs)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(**kwargs)
    return run


def wrapper_overhead(models: dict[str, Any], batch: int, device: str, sync: Callable[[], None] | None,
                     chunks: int = 20, calls: int = 100) -> dict[str, float]:
    """Per-call cost of a merged PEFT LoRA layer over its own base ``nn.Linear``, decode-shaped input.

    In fused mode PEFT's ``LoraLayer.forward`` only checks its arguments and calls the base
    layer, so this difference times the number of LoRA layers and forward passes is what
    fused generation pays over the base model. Calls are timed back to back in chunks (one
    synchronisation per chunk), as they run inside a forward pass.
    """
    peo = models[f"fused N={FUSED_N[-1]}"]
    layer = peo._layers[0]
    base_layer = layer.get_base_layer()
    x = torch.randn(batch, 1, base_layer.in_features, device=device)

    def chunk(f: Callable[[torch.Tensor], Any]) -> None:
        for _ in range(calls):
            f(x)

    with torch.inference_mode():
        for f in (layer, base_layer):  # warm-up
            chunk(f)
        wrapped = statistics.median(timed(lambda i: chunk(layer), chunks, sync)) / calls
        plain = statistics.median(timed(lambda i: chunk(base_layer), chunks, sync)) / calls
    return {"wrapped_us": wrapped * 1e6, "plain_us": plain * 1e6, "overhead_us": (wrapped - plain) * 1e6,
            "lora_layers": len(peo._layers)}


def check_outputs(models: dict[str, Any], inputs: dict[str, torch.Tensor], new_tokens: int,
                  pad_id: int) -> dict[str, Any]:
    """Greedy outputs: fused must match live at the same N (same policy); base must differ."""
    out = {name: generate_fn(m, inputs, new_tokens, pad_id)().cpu() for name, m in models.items()}
    checks: dict[str, Any] = {}
    for n in FUSED_N:
        same = (out[f"fused N={n}"] == out[f"live N={n}"]).all(dim=1).float().mean().item()
        checks[f"fused_equals_live_N{n}_fraction_of_sequences"] = same
    n = FUSED_N[-1]
    checks[f"unwrapped_equals_fused_N{n}"] = torch.equal(out[f"{UNWRAPPED} N={n}"], out[f"fused N={n}"])
    checks["base_differs_from_live_N2"] = not torch.equal(out["base"], out["live N=2"])
    lengths = {o.shape[1] - inputs["input_ids"].shape[1] for o in out.values()}
    checks["new_tokens_per_sequence"] = sorted(lengths)
    return checks


def fit_live(best: dict[str, float], base_s: float) -> dict[str, float]:
    """Least-squares ``t(N) = a + b·N`` over the live runs: b per adapter, a the fixed PEFT cost."""
    ns = list(LIVE_N)
    ts = [best[f"live N={n}"] for n in ns]
    mean_n, mean_t = statistics.fmean(ns), statistics.fmean(ts)
    b = sum((n - mean_n) * (t - mean_t) for n, t in zip(ns, ts)) / sum((n - mean_n) ** 2 for n in ns)
    a = mean_t - b * mean_n
    return {"per_adapter_s": b, "per_adapter_pct_of_base": 100 * b / base_s,
            "intercept_s": a, "intercept_pct_over_base": 100 * (a / base_s - 1)}


def bench_model(name: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    size = SIZES[name]
    root = workdir / name
    n_params = build_bundle(root / "full", size, rank=8, aspects=aspect_names(max(LIVE_N)))
    for n in sorted(set(LIVE_N) | set(FUSED_N)):
        subset_bundle(root / "full", root / f"n{n}", aspect_names(n))
    models = load_models(root, args.device)
    pad_id = models["base"].config.pad_token_id
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    rounds = args.rounds or (3 if args.quick else (5 if name == "llama-100m" else 10))
    gen = torch.Generator().manual_seed(0)
    result: dict[str, Any] = {"params": n_params, "rounds": rounds, "batches": {}}
    for batch in BATCHES:
        ids = torch.randint(3, size["vocab_size"], (batch, args.prompt_tokens), generator=gen)
        inputs = {"input_ids": ids.to(args.device), "attention_mask": torch.ones_like(ids).to(args.device)}
        fns = {c: generate_fn(m, inputs, args.new_tokens, pad_id) for c, m in models.items()}
        if batch == BATCHES[-1]:  # the check runs every configuration once: it is the warm-up too
            result["checks"] = check_outputs(models, inputs, args.new_tokens, pad_id)
        else:
            for fn in fns.values():  # warm-up
                fn()
        times: dict[str, list[float]] = {c: [] for c in fns}
        names = list(fns)
        for r in range(rounds):
            for c in names[r % len(names):] + names[:r % len(names)]:
                times[c] += timed(lambda i: fns[c](), 1, sync)
        stats = {c: summary(t) for c, t in times.items()}
        best = {c: s["best"] for c, s in stats.items()}
        base_s = best["base"]
        tokens = batch * args.new_tokens
        rows = {c: {**stats[c], "tokens_per_s": tokens / best[c], "tokens_per_s_median": tokens / stats[c]["median"],
                    "time_vs_base": best[c] / base_s} for c in fns}
        overhead = wrapper_overhead(models, batch, args.device, sync)
        forward_passes = args.new_tokens  # one prefill + new_tokens - 1 decode steps
        overhead["predicted_fused_gap_pct"] = (100 * overhead["overhead_us"] * 1e-6 * overhead["lora_layers"]
                                               * forward_passes / base_s)
        result["batches"][str(batch)] = {
            "configs": rows,
            "fused_gap_pct": {f"N={n}": 100 * (best[f"fused N={n}"] / base_s - 1) for n in FUSED_N},
            "live_fit": fit_live(best, base_s),
            "lora_wrapper": overhead,
        }
        print(f"[{name}] batch {batch}: " + ", ".join(f"{c} {rows[c]['tokens_per_s']:.0f} tok/s" for c in rows),
              file=sys.stderr, flush=True)
    del models
    return result


def table(results: dict[str, dict[str, Any]], new_tokens: int) -> str:
    lines = []
    for name, r in results.items():
        lines.append(f"**{name}** ({r['params'] / 1e6:.2f}M params; tokens/s from the best of {r['rounds']} "
                     f"interleaved rounds; x = time relative to base)\n")
        batches = list(r["batches"])
        lines.append("| configuration | " + " | ".join(f"batch {b}: tokens/s (time vs base)" for b in batches) + " |")
        lines.append("|---|" + "---|" * len(batches))
        for c in r["batches"][batches[0]]["configs"]:
            cells = [f"{r['batches'][b]['configs'][c]['tokens_per_s']:,.0f} ({r['batches'][b]['configs'][c]['time_vs_base']:.3f}x)"
                     for b in batches]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines.append("| live: cost per active adapter (fit over N = 1, 2, 4) | " + " | ".join(
            f"+{r['batches'][b]['live_fit']['per_adapter_pct_of_base']:.1f}% of base" for b in batches) + " |")
        lines.append("| live: fixed cost of the PEFT wrapping (fit at N = 0) | " + " | ".join(
            f"{r['batches'][b]['live_fit']['intercept_pct_over_base']:+.1f}%" for b in batches) + " |")
        lines.append("| fused gap predicted from the LoRA wrapper's per-call cost | " + " | ".join(
            f"{r['batches'][b]['lora_wrapper']['overhead_us']:.1f} µs x {r['batches'][b]['lora_wrapper']['lora_layers']}"
            f" layers x {new_tokens} passes = {r['batches'][b]['lora_wrapper']['predicted_fused_gap_pct']:.1f}%"
            for b in batches) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy model only, 3 rounds")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--new-tokens", type=int, default=32, help="new tokens per sequence (default 32)")
    parser.add_argument("--prompt-tokens", type=int, default=16, help="prompt length (default 16)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per configuration")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    models = MODELS[:1] if args.quick else MODELS
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="peo-bench-gen-") as tmp:
        for name in models:
            print(f"[{name}] building bundles and measuring ...", file=sys.stderr, flush=True)
            results[name] = bench_model(name, Path(tmp), args)
    text = table(results, args.new_tokens)
    print(text)
    stem = "generation_throughput" + ("_quick" if args.quick else "") + (
        "_" + args.device.split(":")[0] if args.device != "cpu" else "")
    settings = {"device": args.device, "new_tokens": args.new_tokens, "prompt_tokens": args.prompt_tokens,
                "alpha": ALPHA, "weights": "equal over the N aspects", "lora_rank": 8, "decoding": "greedy",
                "timing": "best of interleaved rounds; medians kept too", "wall_s": time.perf_counter() - start}
    write_report(stem, {"settings": settings, "results": results, "table": text}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
