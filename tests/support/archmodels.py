"""Tiny random-weight models of the architectures the GGUF export writes, with a byte-level BPE tokenizer.

Each is 2 layers, hidden 64, 4 heads (2 KV heads where the architecture has GQA), built
with transformers and saved as the Hub saves models, with the BPE tokenizer trained in
tests/support/realdata.py (vocabulary ~512, so the embedding is small) and the chat template of the
family the architecture ships with: ChatML (Qwen2, Qwen3, Mistral here), Phi-3's, Gemma's.
Weights are drawn with a wide ``initializer_range`` so that logits are far apart and greedy
tokens do not hinge on rounding. Deterministic under the seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
# Gemma 2's template (google/gemma-2-2b-it), BOS at the start, no system role.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
# Llama 3's template (Meta-Llama-3-8B-Instruct).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# model_type -> (chat template, special tokens beyond ChatML's, LoRA target modules, config class, config)
ARCHS: dict[str, dict[str, Any]] = {
    "qwen2": {"targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
    "qwen3": {"targets": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
              "config": {"head_dim": 32, "tie_word_embeddings": False}},
    "mistral": {"targets": ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"],
                "config": {"tie_word_embeddings": False, "sliding_window": None}},
    "phi3": {"targets": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], "template": PHI3_TEMPLATE,
             "specials": ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], "eos": "<|end|>",
             "config": {"num_key_value_heads": 4, "tie_word_embeddings": False}},
    "gemma2": {"targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"], "template": GEMMA_TEMPLATE,
               "specials": ["<bos>", "<start_of_turn>", "<end_of_turn>"], "eos": "<end_of_turn>", "bos": "<bos>",
               # a wide attention cap: transformers' SDPA path ignores it, llama.cpp always applies it
               "config": {"head_dim": 16, "query_pre_attn_scalar": 16, "attn_logit_softcapping": 1.0e4,
                          "final_logit_softcapping": 30.0, "sliding_window": 4096}},
}


def tokenizer_for(model_type: str) -> Any:
    """The realdata BPE tokenizer with the family's chat template and special tokens."""
    from realdata import CHATML_TEMPLATE, train_bpe_tokenizer

    spec = ARCHS.get(model_type, {})
    tokenizer = train_bpe_tokenizer(chat_template=spec.get("template", CHATML_TEMPLATE))
    if spec.get("specials"):
        tokenizer.add_special_tokens({"additional_special_tokens": spec["specials"]})
    if spec.get("eos"):
        tokenizer.eos_token = spec["eos"]
    if spec.get("bos"):
        tokenizer.bos_token = spec["bos"]
        tokenizer.add_bos_token = True
    return tokenizer


def build_tiny(model_type: str, path: Path, seed: int = 0) -> Path:
    """Save a random 2-layer ``model_type`` model with its tokenizer to ``path``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = tokenizer_for(model_type)
    options: dict[str, Any] = {
        "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
        "initializer_range": 0.25, "tie_word_embeddings": True, "rms_norm_eps": 1e-6,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, **ARCHS[model_type].get("config", {}),
    }
    config = AutoConfig.for_model(model_type, **options)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    with torch.no_grad():  # norms away from 1 (Gemma's from 0), so that a wrong norm writer shows
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.add_(0.3 * torch.randn_like(parameter))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
