"""Bundles for the "nothing damaged gets through" tests: a tiny composed bundle, and copies with one file damaged
the ways disks, downloads and diverged trainings damage them (a NaN in a valid file, half the bytes, the file gone).

The bundle is a random 2-layer Qwen2 with the byte-level BPE tokenizer of tests/support/realdata.py (so llama.cpp
export and Ollama's template check accept it) and two PEFT LoRA adapters, composed with ``peo-hub compose``:
every reader (load, merge, export, compose, push, the Space) can take it in about a second.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

DAMAGES = ("nan-adapter", "truncated-adapter", "deleted-adapter", "nan-base", "truncated-base", "deleted-base")
ADAPTER_FILE = "adapters/helpful/adapter_model.safetensors"
BASE_FILE = "base/model.safetensors"


def tiny_bundle(root: Path) -> Path:
    """A composed bundle (base inside) on a tiny Qwen2, aspects helpful and harmless; returns its folder."""
    from archmodels import build_tiny
    from llamacpp_check import random_adapter

    from peo_hub.cli import main

    root.mkdir(parents=True, exist_ok=True)
    base = build_tiny("qwen2", root / "src-base")
    for i, name in enumerate(("helpful", "harmless")):
        random_adapter(base, root / f"src-{name}", seed=i + 1, relative=0.3, r=4, lora_alpha=8,
                       target_modules=["q_proj", "v_proj"])
    bundle = root / "bundle"
    assert main(["compose", str(base), "--adapter", f"helpful={root / 'src-helpful'}", "--adapter",
                 f"harmless={root / 'src-harmless'}", "--output", str(bundle)]) == 0
    return bundle


def put_nan(path: Path) -> str:
    """Write a NaN into the first floating tensor of a safetensors file (still a valid file); returns its name."""
    tensors = load_file(str(path))
    name = next(k for k, v in sorted(tensors.items()) if v.is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(path), metadata={"format": "pt"})
    return name


def damage(bundle: Path, kind: str) -> tuple[Path, str | None]:
    """Damage ``bundle`` in place as ``kind`` (one of :data:`DAMAGES`); returns (the file, the NaN tensor or None)."""
    target = bundle / (ADAPTER_FILE if kind.endswith("adapter") else BASE_FILE)
    how = kind.split("-")[0]
    if how == "nan":
        return target, put_nan(target)
    if how == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif how == "deleted":
        target.unlink()
    else:
        raise ValueError(kind)
    return target, None


def damaged_copy(bundle: Path, dest: Path, kind: str) -> tuple[Path, Path, str | None]:
    """A copy of ``bundle`` at ``dest`` damaged as ``kind``: (the copy, the damaged file, the NaN tensor)."""
    shutil.copytree(bundle, dest)
    target, tensor = damage(dest, kind)
    return dest, target, tensor


def first_float(path: Path) -> torch.Tensor:
    return next(v for _, v in sorted(load_file(str(path)).items()) if v.is_floating_point())
