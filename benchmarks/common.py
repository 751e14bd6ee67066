"""Shared pieces of the benchmark scripts: synthetic bundles, timing, machine info, reports.

Every benchmark builds its models here so that "the toy model" and "the 100M Llama" mean
the same shapes in every table, and every JSON result carries the same machine record.
Scripts import this as ``from common import ...`` (they run as ``python benchmarks/X.py``,
which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ASPECTS = ("helpful", "harmless")
SIZES: dict[str, dict[str, int]] = {
    # switch_latency's toy: the tests' fake-bundle shape (hidden 32, 2 layers)
    "toy": dict(hidden_size=32, num_hidden_layers=2, intermediate_size=64, num_attention_heads=4,
                vocab_size=64),
    # the embedded world's base model (peo_hub/world/base.py): what `recipes/toy.yaml` trains
    "toy-world": dict(hidden_size=96, num_hidden_layers=2, intermediate_size=256, num_attention_heads=4,
                      vocab_size=208),
    # a small real-world-shaped Llama (GPT-2-small width and depth)
    "llama-100m": dict(hidden_size=768, num_hidden_layers=12, intermediate_size=2048,
                       num_attention_heads=12, vocab_size=8192),
}


def aspect_names(n: int) -> tuple[str, ...]:
    """``n`` aspect names: the usual two first, then ``aspect3``, ``aspect4``..."""
    return ASPECTS[:n] + tuple(f"aspect{i + 1}" for i in range(len(ASPECTS), n))


# ----------------------------------------------------------------------------- building

def build_bundle(root: Path, size: dict[str, int], rank: int = 8, seed: int = 0,
                 aspects: Sequence[str] = ASPECTS) -> int:
    """A bundle with a random Llama base of ``size`` and one random LoRA adapter per aspect.

    Adapters (rank ``rank``, every linear layer but ``lm_head``, non-zero A and B) are
    written directly as PEFT files (config + safetensors), which is what PEFT itself would
    save; aspect ``i`` is seeded ``seed + 1 + i``, so bundles built with more aspects share
    their first adapters. Returns the base's parameter count.
    """
    from peft import LoraConfig
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from peo_hub.bundle.manifest import AspectEntry, Manifest, save_manifest
    from peo_hub.world.tokenizer import build_word_tokenizer

    torch.manual_seed(seed)
    words = "how do i bake bread fix bike pick lock ? . , sure first then mix flour sorry can not help".split()
    tokenizer = build_word_tokenizer(words)
    config = LlamaConfig(**size, num_key_value_heads=size["num_attention_heads"], max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    linear = {n: m for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    entries = {}
    for i, aspect in enumerate(aspects):
        gen = torch.Generator().manual_seed(seed + 1 + i)
        tensors = {}
        for name, module in linear.items():
            a = torch.randn(rank, module.in_features, generator=gen) / module.in_features ** 0.5
            b = torch.randn(module.out_features, rank, generator=gen) * 0.01
            tensors[f"base_model.model.{name}.lora_A.weight"] = a.contiguous()
            tensors[f"base_model.model.{name}.lora_B.weight"] = b.contiguous()
        folder = root / "adapters" / aspect
        LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=sorted(linear), task_type="CAUSAL_LM",
                   base_model_name_or_path=str(root / "base")).save_pretrained(str(folder))
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        entries[aspect] = AspectEntry(adapter=f"adapters/{aspect}")
    save_manifest(root, Manifest(base_model="base", aspects=entries,
                                 lora={"r": rank, "alpha": 2 * rank, "target_modules": "all-linear"}))
    return sum(p.numel() for p in model.parameters())


def subset_bundle(source: Path, dest: Path, aspects: Sequence[str]) -> Path:
    """A bundle of some of ``source``'s aspects, sharing its files through symlinks.

    Lets one benchmark compare 1, 2 and 4 active adapters over the very same base and
    adapter weights without writing the base again.
    """
    from peo_hub.bundle.manifest import load_manifest, save_manifest

    manifest = load_manifest(source)
    dest.mkdir(parents=True)
    (dest / "base").symlink_to((source / manifest.base_model).resolve(), target_is_directory=True)
    (dest / "adapters").mkdir()
    for aspect in aspects:
        (dest / "adapters" / aspect).symlink_to((source / manifest.aspects[aspect].adapter).resolve(),
                                                target_is_directory=True)
    manifest.aspects = {a: manifest.aspects[a] for a in aspects}
    save_manifest(dest, manifest)
    return dest


# ----------------------------------------------------------------------------- measuring

def merge_point(bundle: Path, output: Path, kind: str, weights: dict[str, float], alpha: float = 0.0) -> Path:
    """What `peo-hub merge BUNDLE --weights ... --alpha ... --as KIND --output OUTPUT` does, through the library."""
    from peo_hub.bundle.manifest import open_bundle
    from peo_hub.family.merge import write_point
    from peo_hub.core.policy import make_preference

    opened = open_bundle(bundle)
    return write_point(opened, make_preference(opened.aspects, weights, alpha=alpha), output, kind)


def timed(fn: Callable[[int], Any], repeats: int, sync: Callable[[], None] | None = None) -> list[float]:
    """Seconds per call of ``fn(i)`` for ``repeats`` calls (``sync`` waits for a GPU, if any)."""
    times = []
    for i in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        fn(i)
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return times


def summary(times: Sequence[float]) -> dict[str, float]:
    """Best (least disturbed by the other processes on a shared CPU), median, and count."""
    return {"best": min(times), "median": statistics.median(times), "n": len(times)}


# ----------------------------------------------------------------------------- reporting

def machine() -> dict[str, Any]:
    """Where a result was measured: CPU model and cores, library versions, threads, date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    import peft
    import transformers

    try:
        mergekit_version = version("mergekit")
    except PackageNotFoundError:
        mergekit_version = None
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "mergekit": mergekit_version, "python": platform.python_version(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_report(name: str, report: dict[str, Any], output: str | os.PathLike[str] | None = None) -> Path:
    """Write ``report`` (plus the machine record) to ``benchmarks/results/<name>.json``, atomically."""
    from peo_hub.utils.fsutil import atomic_write_json

    out = Path(output) if output else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {"benchmark": name, "machine": report.pop("machine", None) or machine(), **report})
    print(f"wrote {out}", file=sys.stderr)
    return out
