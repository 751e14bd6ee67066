"""How much does changing the preference cost, in each realisation of a PEO policy?

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/switch_latency.py [--quick]

For a toy model and a synthetic ~100M-parameter Llama (random weights, two random rank-8
LoRA aspect adapters on every linear layer), measured in one run on one machine:

* live switch   ``set_preference(w, alpha)``: rescales the adapters (no tensor touched);
* fused switch  ``set_preference(..., fuse=True)``: unmerge the previous point, merge the new;
* export        ``export_adapter(dir)``: one exact rank-16 LoRA adapter written to disk;
* mergekit      ``peo-hub merge --as model``: a full ``task_arithmetic`` merge written to disk.

It also shows that a live switch copies no weights (every base weight keeps its storage,
torch allocates nothing, the Python heap barely moves) and what each mode costs per
forward pass. ``--quick`` skips the 100M model. Results go to
``benchmarks/results/switch_latency.json`` with the machine's description.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from common import SIZES, build_bundle, machine, merge_point, timed, write_report  # noqa: E402
from peo_hub import PEOModel  # noqa: E402

POINTS = [({"helpful": 0.7, "harmless": 0.3}, 0.5), ({"helpful": 0.2, "harmless": 0.8}, 1.0)]
MODELS = ("toy", "llama-100m")  # shapes in common.SIZES


# ----------------------------------------------------------------------------- measuring

def torch_bytes_allocated(fn: Callable[[], Any]) -> int:
    """Bytes torch allocated on the CPU while running ``fn`` (profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return int(sum(max(e.self_cpu_memory_usage, 0) for e in prof.key_averages()))


def python_heap_peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def switch(model: PEOModel, i: int, fuse: bool = False) -> None:
    weights, alpha = POINTS[i % len(POINTS)]
    model.set_preference(weights, alpha=alpha, fuse=fuse)


def bench_size(name: str, size: dict[str, int], workdir: Path, repeats: dict[str, int]) -> dict[str, Any]:
    root = workdir / name
    start = time.perf_counter()
    n_params = build_bundle(root / "bundle", size)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    model = PEOModel.from_pretrained(root / "bundle")
    load_s = time.perf_counter() - start

    base_params = {n: p for n, p in model.model.named_parameters() if "lora_" not in n}
    target_bytes = sum(layer.get_base_layer().weight.numel() * layer.get_base_layer().weight.element_size()
                       for layer in model._layers)
    ptrs = {n: p.data_ptr() for n, p in base_params.items()}
    snapshot = {n: p.detach().clone() for n, p in base_params.items()}

    timed(lambda i: switch(model, i), 50)  # warm-up
    live = timed(lambda i: switch(model, i), repeats["live"])
    live_alloc = torch_bytes_allocated(lambda: switch(model, 1))
    live_heap = python_heap_peak(lambda: [switch(model, i) for i in range(100)])
    same_storage = all(p.data_ptr() == ptrs[n] for n, p in base_params.items())
    unchanged = all(torch.equal(p, snapshot[n]) for n, p in base_params.items())

    x = torch.randint(3, size["vocab_size"], (1, 64))
    with torch.inference_mode():
        model.model(x)
        live_fwd = timed(lambda i: model.model(x), repeats["forward"])

    fused = timed(lambda i: switch(model, i, fuse=True), repeats["fused"])
    fused_alloc = torch_bytes_allocated(lambda: switch(model, 0, fuse=True))
    with torch.inference_mode():
        fused_fwd = timed(lambda i: model.model(x), repeats["forward"])
    model.set_preference(POINTS[0][0], alpha=POINTS[0][1])  # live again: weights unmerged
    drift = max(((p - snapshot[n]).abs().max() / snapshot[n].abs().max().clamp_min(1e-30)).item()
                for n, p in base_params.items())
    del snapshot

    export = timed(lambda i: model.export_adapter(root / f"export{i}"), repeats["export"])
    del model
    merge = timed(lambda i: merge_point(root / "bundle", root / f"merged{i}", "model",
                                          weights=POINTS[0][0], alpha=POINTS[0][1]), repeats["mergekit"])
    shutil.rmtree(root, ignore_errors=True)

    med = statistics.median
    result = {
        "params": n_params,
        "target_weight_bytes": target_bytes,
        "build_s": build_s,
        "load_s": load_s,
        "live_switch_us": med(live) * 1e6,
        "live_switch_us_p90": sorted(live)[int(0.9 * len(live))] * 1e6,
        "live_switch_torch_bytes_allocated": live_alloc,
        "live_100_switches_python_heap_peak_bytes": live_heap,
        "live_switch_keeps_weight_storage": same_storage,
        "live_switch_leaves_weights_bitwise_equal": unchanged,
        "fused_switch_ms": med(fused) * 1e3,
        "fused_switch_torch_bytes_allocated": fused_alloc,
        "fused_round_trips": repeats["fused"] + 1,
        "weight_drift_after_fused_round_trips_max_rel": drift,
        "export_adapter_ms": med(export) * 1e3,
        "mergekit_model_s": med(merge),
        "forward_ms_live_best": min(live_fwd) * 1e3,
        "forward_ms_fused_best": min(fused_fwd) * 1e3,
        "repeats": repeats,
    }
    live_s = med(live)
    result["ratio_vs_live"] = {"fused_switch": med(fused) / live_s, "export_adapter": med(export) / live_s,
                               "mergekit_model": med(merge) / live_s}
    return result


# ----------------------------------------------------------------------------- reporting

def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    rows = [("| realisation | " + " | ".join(f"{n} ({results[n]['params'] / 1e6:.2f}M params)" for n in names)
             + " |"), "|---|" + "---|" * len(names)]

    def row(label: str, key: str, scale: float, ratio_key: str | None) -> str:
        cells = []
        for n in names:
            r = results[n]
            cell = fmt_time(r[key] * scale)
            if ratio_key:
                cell += f" ({r['ratio_vs_live'][ratio_key]:,.0f}x live)"
            cells.append(cell)
        return f"| {label} | " + " | ".join(cells) + " |"

    rows.append(row("live switch (`set_preference`)", "live_switch_us", 1e-6, None))
    rows.append(row("fused switch (`fuse=True`: unmerge + merge)", "fused_switch_ms", 1e-3, "fused_switch"))
    rows.append(row("exact LoRA export to disk (`--as adapter`)", "export_adapter_ms", 1e-3, "export_adapter"))
    rows.append(row("full mergekit merge to disk (`--as model`)", "mergekit_model_s", 1.0, "mergekit_model"))
    rows.append("| forward pass, 64 tokens (best of N): live / fused | " + " | ".join(
        f"{results[n]['forward_ms_live_best']:.1f} ms / {results[n]['forward_ms_fused_best']:.1f} ms"
        for n in names) + " |")
    rows.append("| weight drift after the fused round trips (max relative) | " + " | ".join(
        f"{results[n]['weight_drift_after_fused_round_trips_max_rel']:.1e} "
        f"({results[n]['fused_round_trips']} trips)" for n in names) + " |")
    rows.append("| torch bytes allocated (cumulative) by one switch: live / fused | " + " | ".join(
        f"{results[n]['live_switch_torch_bytes_allocated']:,} / {results[n]['fused_switch_torch_bytes_allocated']:,}"
        f" (adapted weights: {results[n]['target_weight_bytes']:,})" for n in names) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy model only (skip the ~100M model)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--output", default=None,
                        help="JSON path (default benchmarks/results/switch_latency[_quick].json)")
    args = parser.parse_args(argv)
    if args.output is None:
        stem = "switch_latency_quick" if args.quick else "switch_latency"
        args.output = str(Path(__file__).parent / "results" / f"{stem}.json")
    torch.set_num_threads(args.threads)
    sizes = {n: SIZES[n] for n in (MODELS[:1] if args.quick else MODELS)}
    repeats = {
        "toy": {"live": 2000, "forward": 50, "fused": 50, "export": 10, "mergekit": 2},
        "llama-100m": {"live": 2000, "forward": 10, "fused": 5, "export": 3, "mergekit": 1},
    }
    import mergekit.merge  # noqa: F401  (import cost is not part of a merge)

    results = {}
    with tempfile.TemporaryDirectory(prefix="peo-bench-") as tmp:
        for name, size in sizes.items():
            print(f"[{name}] building and measuring ...", file=sys.stderr, flush=True)
            results[name] = bench_size(name, size, Path(tmp), repeats[name])
    report = {"benchmark": "switch_latency", "machine": machine(), "results": results, "table": table(results)}
    print(report["table"])
    for name, r in results.items():
        print(f"[{name}] live switch keeps every weight's storage: {r['live_switch_keeps_weight_storage']}; "
              f"torch bytes allocated: {r['live_switch_torch_bytes_allocated']}; Python heap peak over "
              f"100 switches: {r['live_100_switches_python_heap_peak_bytes']:,} B; "
              f"mergekit / live = {r['ratio_vs_live']['mergekit_model']:,.0f}x")
    write_report("switch_latency", report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
