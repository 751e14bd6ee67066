"""Live, fused and per-row policies in bfloat16 on the truncated SmolLM2, against explicitly merged references.

The reference for coefficients c is the base with ``W + Σ cᵢ sᵢ Bᵢ Aᵢ`` computed in float64
from the adapter files and loaded into a plain transformers model, once in float32 and once
cast to bfloat16. A bfloat16 model cannot be closer to the float32 reference than bfloat16
rounding allows, so the tolerances are stated relative to the largest |logit| and set from
what the bf16-merged reference itself misses by (about 0.7 % here):

* live and per-row (the adapters run in float32 beside bf16 weights: PEFT keeps them there):
  within 1.5 % of the largest |logit| of the float32 reference;
* fused (``W + Δ`` rounded to bf16 once more, inside the merged weight): within 2 %;
* a row of a per-row batch equals the same preference run live, bitwise;
* float32: live within 1e-5 of the largest |logit| (float32 rounding only).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from peo_hub import PEOModel

PREFERENCES = [{"helpful": 1.2, "harmless": 0.3}, {"helpful": 0.4, "harmless": 1.1}]
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea."]
LIVE_TOL, FUSED_TOL, FP32_TOL = 0.015, 0.02, 1e-5


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base folder, root): the truncated SmolLM2; root holds its two random adapters (one rsLoRA) and bundle/."""
    from smollm2 import smollm2_two_aspect_bundle, truncated_smollm2

    root = tmp_path_factory.mktemp("precision")
    smollm2_two_aspect_bundle(root)
    return truncated_smollm2(), root


def merged_reference(base: Path, root: Path, coefficients: dict[str, float], dtype: torch.dtype) -> torch.nn.Module:
    """The base with W + Σ cᵢ sᵢ Bᵢ Aᵢ from the adapter files (float64 sums), then cast to ``dtype``."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    state = {k: v.double() for k, v in model.state_dict().items()}
    for aspect, c in coefficients.items():
        config = json.loads((root / aspect / "adapter_config.json").read_text())
        tensors = load_file(root / aspect / "adapter_model.safetensors")
        for key, A in tensors.items():
            if key.endswith(".lora_A.weight"):
                B, r = tensors[key.replace(".lora_A.", ".lora_B.")], A.shape[0]
                scale = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
                module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
                state[module + ".weight"] += c * scale * (B.double() @ A.double())
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(dtype).eval()


def _batch(tokenizer) -> dict[str, torch.Tensor]:
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
             for q in QUESTIONS]
    return tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)


@torch.no_grad()
def _logits(model, batch) -> torch.Tensor:
    return model(**batch).logits.float()


def _relative(actual: torch.Tensor, expected: torch.Tensor, mask: torch.Tensor) -> float:
    """max |actual - expected| over the unpadded positions, relative to the largest |expected| there."""
    return ((actual - expected).abs()[mask].max() / expected[mask].abs().max()).item()


def test_bf16_live_fused_and_per_row_against_merged_references(smol):
    base, root = smol
    m = PEOModel.from_pretrained(root / "bundle", dtype=torch.bfloat16)
    batch = _batch(m.tokenizer)
    mask = batch["attention_mask"].bool()
    with m.row_preferences([{"coefficients": p} for p in PREFERENCES]):
        rows = _logits(m.model, batch)
    for i, coefficients in enumerate(PREFERENCES):
        ref32 = _logits(merged_reference(base, root, coefficients, torch.float32), batch)[i]
        ref16 = _logits(merged_reference(base, root, coefficients, torch.bfloat16), batch)[i]
        floor = _relative(ref16, ref32, mask[i])  # what bf16 weights alone miss by
        assert 0 < floor < LIVE_TOL
        m.set_preference(coefficients=coefficients)
        live = _logits(m.model, batch)[i]
        assert _relative(live, ref32, mask[i]) < LIVE_TOL
        assert torch.equal(rows[i][mask[i]], live[mask[i]])  # per-row = live, bitwise
        m.set_preference(coefficients=coefficients, fuse=True)
        assert m.fused and m.exact_unfuse
        fused = _logits(m.model, batch)[i]
        assert _relative(fused, ref32, mask[i]) < FUSED_TOL
        assert _relative(fused, ref16, mask[i]) < FUSED_TOL
    # unfusing in bf16 restores the weights bitwise (kept copy), so live is as before
    m.set_preference(coefficients=PREFERENCES[0])
    again = _logits(m.model, batch)[0]
    m.set_preference(coefficients=PREFERENCES[0], fuse=True)
    m.set_preference(coefficients=PREFERENCES[0])
    assert torch.equal(_logits(m.model, batch)[0], again)


def test_fp32_live_against_the_merged_reference(smol):
    base, root = smol
    m = PEOModel.from_pretrained(root / "bundle", dtype=torch.float32)
    batch = _batch(m.tokenizer)
    mask = batch["attention_mask"].bool()
    for i, coefficients in enumerate(PREFERENCES):
        m.set_preference(coefficients=coefficients)
        ref32 = _logits(merged_reference(base, root, coefficients, torch.float32), batch)[i]
        assert _relative(_logits(m.model, batch)[i], ref32, mask[i]) < FP32_TOL
