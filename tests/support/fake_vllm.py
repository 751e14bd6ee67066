"""A stand-in ``vllm`` package for CPU tests: vLLM 0.32's call signatures, transformers underneath.

vLLM needs a CUDA GPU, so the tests of peo-hub's vLLM engine put this module in
``sys.modules["vllm"]`` (and ``vllm.lora.request``) with :func:`install`. It implements the part
of vLLM's API peo-hub calls, with vLLM's argument names and checks (``max_lora_rank`` from
vLLM's list, ``lora_int_id >= 1``, one ``SamplingParams`` per prompt or one for all, an id
never reused for another adapter folder), generates with a transformers model (greedy, or
sampled from ``torch.Generator(seed)`` when ``temperature > 0``), and records every call in
:data:`CALLS`, so a test asserts on what peo-hub asked of vLLM, not on its own code.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import torch

#: Every constructor and generate call, in order: ("LLM", kwargs) and ("generate", details).
CALLS: list[tuple[str, dict[str, Any]]] = []

MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks


class SamplingParams:
    def __init__(self, n: int = 1, temperature: float = 1.0, top_p: float = 1.0, max_tokens: int | None = 16,
                 seed: int | None = None, prompt_logprobs: int | None = None, **other: Any) -> None:
        if prompt_logprobs is not None and prompt_logprobs < 0 and prompt_logprobs != -1:
            raise ValueError(f"prompt_logprobs must be non-negative or -1, got {prompt_logprobs}")
        self.n, self.temperature, self.top_p, self.max_tokens = n, temperature, top_p, max_tokens
        self.seed, self.prompt_logprobs, self.other = seed, prompt_logprobs, other


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str = ""

    def __post_init__(self) -> None:
        if self.lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {self.lora_int_id}")


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    prompt_logprobs: list[dict[int, Logprob] | None] | None = None
    lora_request: LoRARequest | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LLM:
    def __init__(self, model: str, tokenizer: str | None = None, revision: str | None = None,
                 tokenizer_revision: str | None = None, dtype: str = "auto", seed: int = 0,
                 gpu_memory_utilization: float = 0.92, enforce_eager: bool = False, enable_lora: bool = False,
                 max_loras: int = 1, max_lora_rank: int = 16, **kwargs: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if max_lora_rank not in MAX_LORA_RANKS:
            raise ValueError(f"max_lora_rank {max_lora_rank} is not one of {MAX_LORA_RANKS}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        CALLS.append(("LLM", {"model": model, "tokenizer": tokenizer, "revision": revision, "dtype": dtype,
                              "seed": seed, "gpu_memory_utilization": gpu_memory_utilization,
                              "enforce_eager": enforce_eager, "enable_lora": enable_lora, "max_loras": max_loras,
                              "max_lora_rank": max_lora_rank, **kwargs}))
        self.path, self.revision, self.enable_lora, self.max_lora_rank = model, revision, enable_lora, max_lora_rank
        self.base = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or model, revision=tokenizer_revision)
        self.loras: dict[int, tuple[str, Any]] = {}

    def _model(self, request: LoRARequest | None) -> Any:
        if request is None:
            return self.base
        if not self.enable_lora:
            raise ValueError("LoRA is not enabled! Start the engine with enable_lora=True")
        known = self.loras.get(request.lora_int_id)
        if known is not None:
            if known[0] != request.lora_path:  # vLLM would silently serve the cached adapter's weights
                raise AssertionError(f"lora_int_id {request.lora_int_id} reused for another adapter")
            return known[1]
        import json
        from pathlib import Path

        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        config = json.loads((Path(request.lora_path) / "adapter_config.json").read_text())
        if int(config["r"]) > self.max_lora_rank:
            raise ValueError(f"LoRA rank {config['r']} is greater than max_lora_rank {self.max_lora_rank}")
        base = AutoModelForCausalLM.from_pretrained(self.path, revision=self.revision, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, request.lora_path, torch_device="cpu").eval()
        self.loras[request.lora_int_id] = (request.lora_path, model)
        return model

    def generate(self, prompts: Any, sampling_params: Any = None, *, use_tqdm: Any = True,
                 lora_request: Any = None, priority: Any = None, **other: Any) -> list[RequestOutput]:
        prompts = prompts if isinstance(prompts, list) else [prompts]
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params or SamplingParams()] * len(prompts)
        loras = lora_request if isinstance(lora_request, list) else [lora_request] * len(prompts)
        if len(params) != len(prompts) or len(loras) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params/lora_request must be the same.")
        CALLS.append(("generate", {"rows": len(prompts), "prompts": [list(p["prompt_token_ids"]) for p in prompts],
                                   "params": params, "loras": loras}))
        return [self._one(list(p["prompt_token_ids"]), s, r) for p, s, r in zip(prompts, params, loras)]

    @torch.no_grad()
    def _one(self, ids: list[int], params: SamplingParams, lora: LoRARequest | None) -> RequestOutput:
        model = self._model(lora)
        prompt = torch.tensor([ids])
        prompt_logprobs = None
        if params.prompt_logprobs is not None:
            logp = torch.log_softmax(model(input_ids=prompt).logits[0].float(), dim=-1)
            prompt_logprobs = [None] + [{ids[j]: Logprob(float(logp[j - 1, ids[j]]))} for j in range(1, len(ids))]
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        generator = torch.Generator().manual_seed(params.seed if params.seed is not None else 0)
        new: list[int] = []
        for _ in range(params.max_tokens or 16):
            logits = model(input_ids=torch.tensor([ids + new])).logits[0, -1].float()
            if params.temperature == 0:
                token = int(logits.argmax())
            else:
                probs = torch.softmax(logits / params.temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            new.append(token)
            if token in eos:
                break
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return RequestOutput(ids, [CompletionOutput(0, text, new)], prompt_logprobs, lora)


def install(monkeypatch: Any) -> types.ModuleType:
    """Put this stand-in in ``sys.modules`` as ``vllm`` and ``vllm.lora.request`` (undone by ``monkeypatch``)."""
    CALLS.clear()
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest  # type: ignore[attr-defined]
    vllm.lora, lora.request = lora, request  # type: ignore[attr-defined]
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    return vllm
