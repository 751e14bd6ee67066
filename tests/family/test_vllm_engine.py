"""peo_hub.family.vllm_engine: the clean refusals, and one policy through vLLM (a stand-in ``vllm``, tests/support/fake_vllm.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import fake_vllm
from fakes import make_fake_bundle

from peo_hub.evaluate.config import EvaluateSpec
from peo_hub.family.engines import generate_replies, require_engine, row_seed
from peo_hub.family.vllm_engine import VllmEngine, rank_bucket
from peo_hub.utils.errors import PEOError


@pytest.fixture()
def vllm(monkeypatch: pytest.MonkeyPatch):
    module = fake_vllm.install(monkeypatch)
    VllmEngine.release()
    yield module
    VllmEngine.release()


def test_without_vllm_the_engine_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(PEOError, match=r"vLLM is not installed; pip install 'peo-hub\[vllm\]'") as info:
        require_engine("vllm")
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_with_vllm_but_no_cuda_the_engine_says_so(vllm) -> None:
    with pytest.raises(PEOError, match="no CUDA GPU.*set evaluate.engine: transformers") as info:
        require_engine("vllm")
    assert "\n" not in str(info.value)


def test_rank_buckets_and_the_limit() -> None:
    assert [rank_bucket(r) for r in (1, 8, 9, 320, 512)] == [8, 8, 16, 320, 512]
    with pytest.raises(PEOError, match="above vLLM's largest max_lora_rank 512"):
        rank_bucket(513)


def test_a_peft_policy_goes_to_vllm_as_its_own_adapter_with_row_seeds(vllm, tmp_path: Path) -> None:
    """generate_replies with engine vllm on a PeftModel (a MORL baseline): its adapter, per-row seeds."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bundle = make_fake_bundle(tmp_path / "b")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(bundle / "base"),
                                      str(bundle / "adapters" / "helpful"))
    tokenizer = AutoTokenizer.from_pretrained(bundle / "base")
    spec = EvaluateSpec(prompts=["x"], engine="vllm", samples=2, temperature=1.0, max_new_tokens=4,
                        vllm={"gpu_memory_utilization": 0.3, "max_loras": 2})
    prompts = ["how do i bake bread ?", "pick lock ?"]
    replies = generate_replies(model, tokenizer, prompts, spec, seed=7)
    assert [len(r) for r in replies] == [2, 2]
    (kind, llm), (_, call) = fake_vllm.CALLS
    assert kind == "LLM" and llm["enable_lora"] and llm["max_loras"] == 2 and llm["max_lora_rank"] == 8
    assert llm["gpu_memory_utilization"] == 0.3 and llm["model"] == str(bundle / "base")
    assert call["rows"] == 4 and len({r.lora_int_id for r in call["loras"]}) == 1
    assert [p.seed for p in call["params"]] == [row_seed(7, t, k) for t in prompts for k in range(2)]
    assert all(p.max_tokens == 4 and p.temperature == 1.0 and p.n == 1 for p in call["params"])
