"""peo_hub.train.dpo: a real (short) TRL DPO run gives a loadable PEFT adapter, with its training record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from peo_hub.data.chat import render_prompt
from peo_hub.train.config import DPOSpec, LoraSpec
from peo_hub.bundle.manifest import adapter_complete
from peo_hub.train.dpo import train_adapter
from peo_hub.world import toy
from peo_hub.world.base import build_toy_base

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_toy_base(tmp_path_factory.mktemp("base") / "base", seed=1, examples=256, epochs=1)


def test_short_dpo_run_gives_loadable_adapter(small_base: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(small_base)
    pairs = toy.preference_pairs("helpful", n=32, seed=0)
    dataset = Dataset.from_list([{**p, "prompt": render_prompt(tokenizer, p["prompt"])} for p in pairs])
    out = tmp_path / "adapter"
    record = train_adapter(
        base_path=str(small_base), tokenizer=tokenizer, dataset=dataset, lora=LoraSpec(r=4, alpha=8),
        dpo=DPOSpec(learning_rate=1e-3, max_steps=3, per_device_train_batch_size=8, max_length=64),
        output=out, seed=0, base_model_id="base",
    )
    assert adapter_complete(out)
    assert record["steps"] == 3 and record["pairs"] == 32 and "last/loss" in record["metrics"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "base" and config["r"] == 4

    base = AutoModelForCausalLM.from_pretrained(small_base)
    ids = tokenizer(render_prompt(tokenizer, "how do i pick a lock ?"), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        before = base(**ids).logits
    model = PeftModel.from_pretrained(base, out).eval()
    with torch.no_grad():
        after = model(**ids).logits
    assert not torch.allclose(before, after), "three DPO steps must move the policy"
