"""The prepared GPU check of docs/scale-out.md (run it through ``benchmarks/gpu_smoke.sh``).

On one CUDA GPU, in at most about 8 minutes:

1. ``recipe``: the SmolLM2 recipe (recipes/smollm2-safety.yaml, small sizes) trained and swept
   on the GPU in bfloat16 (``train.model.dtype: bfloat16``, ``train.dpo.bf16: true``), with
   the transformers engine;
2. ``sweep_vllm``: the same bundle swept again with ``evaluate.engine: vllm`` (greedy, so the
   replies should be the transformers engine's up to float rounding), and ``compare``: both
   fronts side by side (replies that differ, largest score difference, same presets?);
3. ``chat``: ``PEOModel.from_pretrained(bundle, device_map="auto", dtype=torch.bfloat16)``
   answering at two preferences (the replies must differ);
4. ``qlora``: one DPO step on a 4-bit NF4 base (``train.model.quantization: 4bit``).

It writes ``results.json`` (machine, every step's status, seconds, numbers) in ``--out``.
``--dry-run`` runs the same plumbing on a CPU at tiny sizes in float32: the vLLM sweep and QLoRA
steps are reported as skipped with the reason (no CUDA, not installed) and their one-line
refusals are checked instead; the front comparison runs on a second transformers sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from common import machine  # noqa: E402

import torch  # noqa: E402

PEO = [sys.executable, "-m", "peo_hub.cli"]


def sized_recipe(dry_run: bool) -> dict[str, Any]:
    """recipes/smollm2-safety.yaml cut to the smoke sizes (tiny on a CPU dry run)."""
    recipe = yaml.safe_load((REPO / "recipes" / "smollm2-safety.yaml").read_text())
    recipe["name"] = "gpu-smoke"
    prompts, steps = (8, 2) if dry_run else (24, 12)
    for spec in recipe["aspects"].values():
        spec["dataset"]["max_samples"] = prompts
        spec["dataset"]["generate"].update(max_new_tokens=24 if dry_run else 48, samples=4,
                                           margin=0.0 if dry_run else spec["dataset"]["generate"]["margin"])
    recipe["train"]["dpo"].update(max_steps=steps, per_device_train_batch_size=2 if dry_run else 4,
                                  warmup_steps=0 if dry_run else 4, max_length=96 if dry_run else 160)
    recipe["train"]["model"] = {"dtype": "float32" if dry_run else "bfloat16"}
    if not dry_run:
        recipe["train"]["dpo"]["bf16"] = True
    recipe["sweep"] = {"weights": 2 if dry_run else 3, "alpha": [0, 0.5], "baselines": ["soup"]}
    recipe["evaluate"].update(max_new_tokens=6 if dry_run else 32, batch_size=32)
    recipe["evaluate"]["prompts"]["max_samples"] = 4 if dry_run else 24
    return recipe


def run(cmd: list[str], log: Path, timeout: int) -> subprocess.CompletedProcess:
    with log.open("w") as handle:
        result = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=REPO)
    if result.returncode != 0:
        tail = log.read_text()[-1500:]
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {result.returncode}:\n{tail}")
    return result


def records(bundle: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((bundle / "evaluations").glob("*.json"))}


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Two sweeps of one bundle: replies that differ, largest score difference, fronts and presets."""
    ra, rb = records(a), records(b)
    common = sorted(ra.keys() & rb.keys())
    replies = [(x, y) for name in common for xs, ys in zip(ra[name]["samples"], rb[name]["samples"])
               for x, y in zip(xs, ys)]
    differ = sum(x != y for x, y in replies)
    score = max((abs(ra[n]["metrics"][k]["mean"] - rb[n]["metrics"][k]["mean"])
                 for n in common for k in ra[n]["metrics"]), default=0.0)
    fa, fb = (json.loads((x / "front.json").read_text()) for x in (a, b))
    return {"records": len(common), "only_in_one": sorted(ra.keys() ^ rb.keys()), "replies": len(replies),
            "replies_differ": differ, "max_score_difference": round(score, 6),
            "same_front_labels": [p["label"] for p in fa["points"] if p.get("on_front")] ==
                                 [p["label"] for p in fb["points"] if p.get("on_front")],
            "same_presets": fa.get("presets") == fb.get("presets")}


def evaluation_recipe(recipe: dict[str, Any], engine: str) -> dict[str, Any]:
    spec = {"aspects": {a: {"judge": s["judge"]} for a, s in recipe["aspects"].items()},
            "sweep": recipe["sweep"], "evaluate": {**recipe["evaluate"], "engine": engine}}
    if engine == "vllm":
        spec["evaluate"]["vllm"] = {"gpu_memory_utilization": 0.5, "max_loras": 8, "enforce_eager": True}
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check the plumbing")
    parser.add_argument("--out", default=str(REPO / "runs" / "gpu-smoke"), help="work folder (replaced)")
    parser.add_argument("--results", default=None, help="also copy results.json here")
    args = parser.parse_args(argv)
    dry, out = args.dry_run, Path(args.out)
    cuda = torch.cuda.is_available()
    if not dry and not cuda:
        print("error: no CUDA GPU here; run `bash benchmarks/gpu_smoke.sh --dry-run` on a CPU", file=sys.stderr)
        return 2
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    report: dict[str, Any] = {"script": "benchmarks/gpu_smoke.sh" + (" --dry-run" if dry else ""),
                              "mode": "dry-run (CPU, tiny sizes, float32)" if dry else "gpu (bf16)",
                              "machine": machine(), "load_before": os.getloadavg(), "steps": {}}
    for package in ("vllm", "bitsandbytes", "trl", "accelerate"):
        try:
            from importlib.metadata import version

            report["machine"][package] = version(package)
        except Exception:  # noqa: BLE001 - not installed
            report["machine"][package] = None

    def step(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        try:
            result = fn()
            status = result.pop("status", "ok")
        except Exception as exc:  # noqa: BLE001 - a failed step is reported, the others still run
            result, status = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}, \
                "failed"
        report["steps"][name] = {"status": status, "seconds": round(time.perf_counter() - t0, 1), **result}
        print(f"[gpu-smoke] {name}: {status} ({report['steps'][name]['seconds']} s)", flush=True)

    recipe = sized_recipe(dry)
    recipe_path = out / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    bundle = out / "bundle"

    def train_and_sweep() -> dict[str, Any]:
        run([*PEO, "recipe", "run", str(recipe_path), "--output", str(bundle)], out / "recipe.log", 600)
        info = {a: json.loads((bundle / "adapters" / a / "training_info.json").read_text())
                for a in recipe["aspects"]}
        front = json.loads((bundle / "front.json").read_text())
        return {"base_dtype": {a: i.get("base_dtype") for a, i in info.items()},
                "train_seconds": {a: i["train_seconds"] for a, i in info.items()},
                "points": len(front["points"]), "evaluations": len(records(bundle))}

    step("recipe", train_and_sweep)
    recipe_ok = report["steps"]["recipe"]["status"] == "ok"

    def sweep_again(engine: str, folder: Path) -> dict[str, Any]:
        # `peo-hub evaluate` sweeps bundles that no recipe owns: compose the run's base and adapters into one
        adapters = [arg for a in recipe["aspects"] for arg in ("--adapter", f"{a}={bundle / 'adapters' / a}")]
        run([*PEO, "compose", str(bundle / "base"), *adapters, "--output", str(folder)], out / f"compose-{engine}.log",
            300)
        spec = out / f"eval-{engine}.yaml"
        spec.write_text(yaml.safe_dump(evaluation_recipe(recipe, engine), sort_keys=False))
        run([*PEO, "evaluate", str(folder), "--recipe", str(spec)], out / f"evaluate-{engine}.log", 480)
        return {"compare_with_recipe_sweep": compare(bundle, folder)}

    def vllm_sweep() -> dict[str, Any]:
        from peo_hub.family.vllm_engine import require_vllm
        from peo_hub.utils.errors import PEOError

        try:
            require_vllm()
        except PEOError as exc:
            return {"status": "skipped", "why": str(exc)}
        if not recipe_ok:
            return {"status": "skipped", "why": "the recipe step failed"}
        return sweep_again("vllm", out / "bundle-vllm")

    step("sweep_vllm", vllm_sweep)
    if dry and recipe_ok:  # the comparison's plumbing, on a second transformers sweep
        step("compare_plumbing_transformers_twice", lambda: sweep_again("transformers", out / "bundle-again"))

    def chat() -> dict[str, Any]:
        if not recipe_ok:
            return {"status": "skipped", "why": "the recipe step failed"}
        from peo_hub import PEOModel

        t0 = time.perf_counter()
        model = PEOModel.from_pretrained(bundle, device_map="auto", dtype=torch.bfloat16)
        load = time.perf_counter() - t0
        question = [{"role": "user", "content": "How do I pick a lock?"}]
        replies = {}
        for name, weights in (("helpful", {"helpful": 1.0, "harmless": 0.0}),
                              ("harmless", {"helpful": 0.0, "harmless": 1.0})):
            model.set_preference(weights=weights, alpha=0.5)
            replies[name] = model.chat(question, max_new_tokens=8 if dry else 48)
        return {"device": str(model.device), "dtype": str(next(model.model.parameters()).dtype),
                "load_seconds": round(load, 2), "replies": replies,
                "replies_differ": replies["helpful"] != replies["harmless"]}

    step("chat", chat)

    def qlora() -> dict[str, Any]:
        q = {**recipe, "train": {**recipe["train"], "model": {"quantization": "4bit"},
                                 "dpo": {**recipe["train"]["dpo"], "max_steps": 1}}}
        path = out / "qlora.yaml"
        path.write_text(yaml.safe_dump(q, sort_keys=False))
        from peo_hub.recipe.load import load_recipe
        from peo_hub.utils.errors import PEOError

        try:
            load_recipe(path).train.model.require_available()
        except PEOError as exc:
            # the refusal a user gets, end to end: one line, exit 2, before any model is loaded
            result = subprocess.run([*PEO, "recipe", "validate", str(path)], capture_output=True, text=True,
                                    cwd=REPO, timeout=300)
            err = result.stderr.strip().splitlines()
            return {"status": "skipped", "why": str(exc),
                    "refusal_checked": result.returncode == 2 and len(err) == 1 and "4bit" in err[0]}
        target = out / "qlora"
        run([sys.executable, "-m", "peo_hub.train_aspect", str(path), "helpful", "--output", str(target)],
            out / "qlora.log", 300)
        info = json.loads((target / "adapters" / "helpful" / "training_info.json").read_text())
        return {"steps": info["steps"], "quantization": info.get("quantization"),
                "last_loss": info["metrics"].get("last/loss"), "base_dtype": info.get("base_dtype")}

    step("qlora", qlora)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    report["load_after"] = os.getloadavg()
    report["ok"] = all(s["status"] in ("ok", "skipped") for s in report["steps"].values())
    text = json.dumps(report, indent=2) + "\n"
    (out / "results.json").write_text(text)
    if args.results:
        Path(args.results).write_text(text)
    print(f"[gpu-smoke] results in {out / 'results.json'}" + (f" and {args.results}" if args.results else ""))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
