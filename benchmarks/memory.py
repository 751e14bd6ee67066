"""How much memory does serving N preferences take: one PEO bundle vs N merged full models?

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/memory.py [--quick]

A PEO bundle serves every preference from one base plus N small adapters (``PEOModel``);
the alternatives (MORL, one model trained per preference, or one ``mergekit`` merge per
preference) hold one full copy of the weights per preference. For the synthetic ~100M
Llama (random weights, rank-8 adapters on every linear layer) and N = 2 and 4, each
configuration is loaded in a fresh Python process, which then generates 8 greedy tokens with
every model it holds (so the serving path has run once), and reports its peak resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and its resident size at the end
(``VmRSS``). The same process with the same imports and no model is the baseline
(interpreter + torch + transformers + peft + peo_hub), measured the same way and
subtracted. The merged copies are real ``peo-hub merge --as model`` outputs (mergekit
``task_arithmetic``, float32), one per preference. ``--quick`` uses the toy world's model.
Results go to ``benchmarks/results/memory[_quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORKER_FLAG = "--worker"
ALPHA = 0.5


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """The bundle (``n_max`` adapters, plus a subset bundle per N) and ``n_max`` merged models."""
    from common import SIZES, aspect_names, build_bundle, subset_bundle

    from common import merge_point

    root, n_max = Path(spec["root"]), spec["n_max"]
    names = aspect_names(n_max)
    params = build_bundle(root / "full", SIZES[spec["model"]], rank=8, aspects=names)
    bundles = {n: str(subset_bundle(root / "full", root / f"n{n}", aspect_names(n))) for n in spec["ns"]}
    merged = []
    for k in range(n_max):  # n_max distinct preferences: mostly aspect k, a little of the rest
        weights = {a: (0.7 if i == k else 0.3 / (n_max - 1)) for i, a in enumerate(names)}
        merged.append(str(merge_point(root / "full", root / f"merged{k}", "model", weights=weights,
                                        alpha=ALPHA)))
    return {"params": params, "bundles": bundles, "merged": merged,
            "aspects": {n: list(aspect_names(n)) for n in spec["ns"]}}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in the fresh process: import what every configuration imports, load, generate, report."""
    if spec["kind"] == "build":
        return build(spec)
    import torch
    import peft  # noqa: F401
    from transformers import AutoModelForCausalLM, LlamaForCausalLM  # noqa: F401  (the modeling code)
    from transformers.utils import logging as hf_logging

    from peo_hub.family.model import PEOModel

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10]])
    gen = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, min_new_tokens=8,
               do_sample=False)
    held: list[Any] = []
    params = 0
    if spec["kind"] == "peo":
        model = PEOModel.from_pretrained(spec["bundle"])
        model.set_preference(spec["weights"], alpha=ALPHA)
        model.generate(**gen, pad_token_id=0)
        held.append(model)
        params = sum(p.numel() for p in model.model.parameters())
    elif spec["kind"] == "merged":
        for path in spec["models"]:
            model = AutoModelForCausalLM.from_pretrained(path).eval()
            with torch.inference_mode():
                model.generate(**gen, pad_token_id=0)
            held.append(model)
            params += sum(p.numel() for p in model.parameters())
    return {"kind": spec["kind"], "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "vm_hwm_kb": _status_kb("VmHWM"), "rss_kb": _status_kb("VmRSS"), "params": params,
            "models_held": len(held)}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``worker(spec)`` in a fresh interpreter (one thread, offline) and read its report."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # Linux carries the parent's peak RSS into the child's ru_maxrss across fork + exec, so
    # this (launching) process stays small: it imports no torch until every worker has run.
    launcher_kb = _status_kb("VmRSS")
    proc = subprocess.run([sys.executable, __file__, WORKER_FLAG, json.dumps(spec)], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['kind']} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "launcher_rss_kb": launcher_kb}


def table(rows: list[dict[str, Any]], model: str, baseline_mb: float) -> str:
    lines = [f"**{model}**, one fresh process per row; MB above the import baseline "
             f"({baseline_mb:,.0f} MB: interpreter + torch + transformers + peft + peo_hub)\n",
             "| N | serving | models in memory | peak RSS | RSS after serving | ratio (peak) | ratio (after) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratios = ["n/a" if r[k] is None else f"{r[k]:.2f}x" for k in ("ratio_peak", "ratio_rss")]
        lines.append(f"| {r['n']} | {r['label']} | {r['models_held']} | {r['peak_mb']:,.1f} MB | "
                     f"{r['rss_mb']:,.1f} MB | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the toy world's model instead of the 100M one")
    parser.add_argument("--ns", type=int, nargs="+", default=[2, 4], help="numbers of preferences (default 2 4)")
    parser.add_argument("--baseline-repeats", type=int, default=3, help="baseline processes (median)")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/memory[_quick].json)")
    args = parser.parse_args(argv)

    model_name = "toy-world" if args.quick else "llama-100m"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peo-bench-mem-") as tmp:
        n_max = max(args.ns)
        print(f"[{model_name}] building a bundle with {n_max} adapters and {n_max} merged models ...",
              file=sys.stderr, flush=True)
        built = measure({"kind": "build", "root": tmp, "model": model_name, "n_max": n_max, "ns": args.ns})
        n_params, bundles, merged = built["params"], built["bundles"], built["merged"]
        baselines = [measure({"kind": "baseline"}) for _ in range(args.baseline_repeats)]
        base_peak = statistics.median(b["peak_kb"] for b in baselines) / 1024
        base_rss = statistics.median(b["rss_kb"] for b in baselines) / 1024
        rows = []
        for n in args.ns:
            weights = {a: 1.0 / n for a in built["aspects"][str(n)]}
            for label, spec in ((f"PEO bundle: base + {n} adapters (PEOModel)",
                                 {"kind": "peo", "bundle": bundles[str(n)], "weights": weights}),
                                (f"{n} merged full models",
                                 {"kind": "merged", "models": merged[:n]})):
                print(f"[{model_name}] N={n}: {label} ...", file=sys.stderr, flush=True)
                r = measure(spec)
                rows.append({"n": n, "label": label, **r, "peak_mb": r["peak_kb"] / 1024 - base_peak,
                             "rss_mb": r["rss_kb"] / 1024 - base_rss})
    from common import machine, write_report  # torch only now: every worker has run

    for row in rows:
        peo = next(r for r in rows if r["n"] == row["n"] and r["kind"] == "peo")
        # a model far smaller than the import baseline's noise (--quick) has no meaningful ratio
        row["ratio_peak"] = row["peak_mb"] / peo["peak_mb"] if peo["peak_mb"] > 1 else None
        row["ratio_rss"] = row["rss_mb"] / peo["rss_mb"] if peo["rss_mb"] > 1 else None
    text = table(rows, f"{model_name} ({n_params / 1e6:.1f}M params, float32: "
                       f"{n_params * 4 / 2**20:,.0f} MB of weights)", base_peak)
    print(text)
    report = {"machine": machine(),
              "settings": {"model": model_name, "params": n_params, "weight_mb_float32": n_params * 4 / 2**20,
                           "lora_rank": 8, "ns": args.ns, "alpha": ALPHA, "generate_new_tokens": 8, "worker_threads": 1,
                           "baseline_repeats": args.baseline_repeats, "config_repeats": 1,
                           "wall_s": time.perf_counter() - start},
              "baseline": {"peak_mb": base_peak, "rss_mb": base_rss, "runs": baselines},
              "rows": rows, "table": text}
    write_report("memory_quick" if args.quick else "memory", report, args.output)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:
        print(json.dumps(worker(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())
