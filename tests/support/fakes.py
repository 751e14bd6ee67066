"""Small random PEO bundles for tests that need adapters but not training.

The adapters are PEFT LoRA adapters with random (non-zero) A and B, so every aspect
really changes the logits; the base is a 2-layer Llama with a word-level tokenizer.
Building one takes well under a second.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from peo_hub.bundle.manifest import AspectEntry, Manifest, save_manifest
from peo_hub.world.tokenizer import build_word_tokenizer

WORDS = "how do i bake bread fix bike pick lock ? . , sure first then mix flour bake sorry can not help".split()


def make_base(path: Path, seed: int = 0, hidden: int = 32, layers: int = 2):
    """Save a random tiny Llama + word tokenizer to ``path``; return (model, tokenizer)."""
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(WORDS)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer


def make_adapter(base_path: Path, out: Path, seed: int, r: int = 4, lora_alpha: int = 8,
                 target_modules: Sequence[str] | str = "all-linear", **lora_kwargs: Any) -> None:
    """Save a random LoRA adapter (B != 0, so it has an effect) for the base at ``base_path``.

    ``lora_kwargs`` go to ``LoraConfig`` as they are (e.g. ``use_rslora=True``).
    """
    torch.manual_seed(seed)
    base = LlamaForCausalLM.from_pretrained(base_path)
    config = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=target_modules,
                        init_lora_weights=False, task_type="CAUSAL_LM", **lora_kwargs)
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(0.5)
    peft_model.save_pretrained(out)


def make_fake_bundle(root: Path, aspects: Sequence[str] = ("helpful", "harmless"), seed: int = 0,
                     r: int = 4, adapter_options: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """A complete bundle folder (base inside, one random adapter per aspect, manifest).

    ``adapter_options`` maps an aspect to ``make_adapter`` overrides (``r``, ``lora_alpha``,
    ``target_modules``, ``use_rslora``...), for bundles whose adapters differ in shape.
    """
    root = Path(root)
    make_base(root / "base", seed=seed)
    entries = {}
    for i, aspect in enumerate(aspects):
        options = {"r": r, **dict((adapter_options or {}).get(aspect, {}))}
        make_adapter(root / "base", root / "adapters" / aspect, seed=seed + 1 + i, **options)
        entries[aspect] = AspectEntry(adapter=f"adapters/{aspect}", judge={"type": "toy_" + aspect})
    save_manifest(root, Manifest(base_model="base", aspects=entries,
                                 lora={"r": r, "alpha": 2 * r, "target_modules": "all-linear"}))
    return root


def folder_digest(folder: Path) -> str:
    """A hash of every file's name and bytes under ``folder``: "left exactly as it was"."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()
