"""Shared by tests/publish/test_llamacpp.py and benchmarks/llamacpp_parity.py: random adapters of a set size,
llama.cpp with several LoRA adapters at their own scales, and transformers' greedy reference.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch


def random_adapter(base: Path, out: Path, seed: int, relative: float = 0.1, save_embedding_layers: bool = False,
                   **options: Any) -> None:
    """A PEFT LoRA adapter with random A and B scaled so that ‖s·B·A‖ = relative·‖W‖ on every module."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    generator = torch.Generator().manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), LoraConfig(**options))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLayer) and "default" in module.lora_A:
                A, B = module.lora_A["default"].weight, module.lora_B["default"].weight
                A.copy_(torch.randn(A.shape, generator=generator) / math.sqrt(A.shape[1]))
                B.copy_(torch.randn(B.shape, generator=generator))
                delta = module.scaling["default"] * (B @ A)
                B.mul_(relative * module.get_base_layer().weight.norm() / delta.norm())
    model.save_pretrained(str(out), save_embedding_layers=save_embedding_layers)


def llamacpp_order(rows: np.ndarray, heads: int) -> np.ndarray:
    """Rows in llama.cpp's Q/K order, by index arithmetic: head h's row i·d/2 + j goes to 2j + i."""
    d = rows.shape[0] // heads
    out = np.empty_like(rows)
    for h in range(heads):
        for i in range(2):
            for j in range(d // 2):
                out[h * d + 2 * j + i] = rows[h * d + i * d // 2 + j]
    return out


class LlamaCpp:
    """llama-cpp-python with several LoRA adapters at their own scales (F32 KV cache by default: tight logits)."""

    def __init__(self, model: Path, loras: list[tuple[Path, float]] = (), kv_f32: bool = True) -> None:
        from llama_cpp import Llama
        from llama_cpp import llama_cpp as C

        self.C = C
        kv = {"type_k": C.GGML_TYPE_F32, "type_v": C.GGML_TYPE_F32} if kv_f32 else {}  # llama.cpp's default is F16
        self.llm = Llama(model_path=str(model), n_ctx=256, n_threads=2, verbose=False, **kv)
        self.adapters = [C.llama_adapter_lora_init(self.llm._model.model, str(p).encode()) for p, _ in loras]
        assert all(self.adapters), "llama.cpp refused an adapter file"
        if loras:
            handles = (C.llama_adapter_lora_p_ctypes * len(loras))(*self.adapters)
            scales = (ctypes.c_float * len(loras))(*[s for _, s in loras])
            assert C.llama_set_adapters_lora(self.llm._ctx.ctx, handles, len(loras), scales) == 0

    def greedy(self, ids: list[int], n: int) -> tuple[np.ndarray, list[int]]:
        """Next-token logits after the prompt, and n argmax tokens (no EOS stop)."""
        self.llm.reset()
        self.llm.eval(ids)
        first = self._logits().astype(np.float64).copy()
        tokens = [int(first.argmax())]
        for _ in range(n - 1):
            self.llm.eval([tokens[-1]])
            tokens.append(int(self._logits().argmax()))
        return first, tokens

    def _logits(self) -> np.ndarray:
        """The last position's logits, read from the context (``Llama.scores`` is not filled by default)."""
        pointer = self.C.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llm.n_vocab(),))

    def close(self) -> None:
        for adapter in self.adapters:  # adapters before the model that owns them
            self.C.llama_adapter_lora_free(adapter)
        self.llm.close()


def chat_ids(tokenizer: Any, text: str) -> list[int]:
    """The token ids of one user message under the model's chat template, ready for the reply."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


@torch.no_grad()
def transformers_greedy(bundle: Path, coefficients: dict[str, float], prompts: list[str], n: int
                        ) -> list[tuple[list[int], np.ndarray, list[int]]]:
    """(prompt ids, next-token logits, n argmax tokens) per prompt from PEOModel at ``coefficients``.

    An argmax loop with no EOS stop, as :meth:`LlamaCpp.greedy` runs it (``generate`` would
    stop at EOS, or with ``min_new_tokens`` forbid it, and so differ from llama.cpp's loop).
    """
    from peo_hub import PEOModel

    model = PEOModel.from_pretrained(bundle)
    model.set_preference(coefficients=coefficients)
    out = []
    for text in prompts:
        ids = chat_ids(model.tokenizer, text)
        step = model.model(torch.tensor([ids]), use_cache=True)
        first = step.logits[0, -1].double().numpy()
        tokens = [int(first.argmax())]
        for _ in range(n - 1):
            step = model.model(torch.tensor([[tokens[-1]]]), past_key_values=step.past_key_values, use_cache=True)
            tokens.append(int(step.logits[0, -1].argmax()))
        out.append((ids, first, tokens))
    return out
