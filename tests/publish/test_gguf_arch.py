"""``peo-hub export --format gguf`` beyond Llama: Qwen2, Qwen3, Mistral, Phi-3 and Gemma 2 (peo_hub.publish.gguf_arch).

Each architecture is a tiny random-weight model built here with transformers (tests/support/archmodels.py)
with two PEFT adapters (a plain LoRA and an rsLoRA on fewer modules), composed into a bundle
and exported. The GGUF files are read back with ``gguf.GGUFReader`` and compared with what
this file expects by its own tables: llama.cpp's tensor name of every Hugging Face weight,
Mistral's (Llama's) Q/K row order, Gemma's ``1 + w`` norms, each module's PEFT scale folded
into lora_b, the architecture's metadata. When llama-cpp-python is installed, llama.cpp must
tokenize a chat prompt as transformers does and give transformers' greedy tokens at one point,
from the fused file and from the base with both adapters at their per-request scales.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from archmodels import ARCHS, build_tiny
from llamacpp_check import LlamaCpp, llamacpp_order, random_adapter, transformers_greedy
from peo_hub.cli import main
from reference import _one_line_error

gguf = pytest.importorskip("gguf", reason="the GGUF export needs the gguf package (pip install gguf)")

# Hugging Face weight name (after model.layers.N.) -> llama.cpp's, per architecture: written out by hand.
COMMON = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
          "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
BLOCK_NAMES = {
    "qwen2": COMMON, "mistral": COMMON,
    "qwen3": {**COMMON, "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"},
    "phi3": {**COMMON, "self_attn.qkv_proj": "attn_qkv", "mlp.gate_up_proj": "ffn_up"},
    "gemma2": {**COMMON, "post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
               "post_feedforward_layernorm": "post_ffw_norm"},
}
LLAMACPP_ARCH = {"qwen2": "qwen2", "qwen3": "qwen3", "mistral": "llama", "phi3": "phi3", "gemma2": "gemma2"}
COEFFICIENTS = {"helpful": 0.5, "harmless": 1.5}  # helpful=0.25,harmless=0.75 with alpha 1
CHAT = ["What is the capital of France?", "How do I bake bread?"]


def expected_name(model_type: str, key: str) -> str:
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if key in top:
        return top[key]
    layer, rest = key.split(".")[2], ".".join(key.split(".")[3:])
    module, leaf = rest.rsplit(".", 1)
    return f"blk.{layer}.{BLOCK_NAMES[model_type][module]}.{leaf}"


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request, tmp_path_factory) -> dict[str, Any]:
    """A composed bundle on a tiny ``model_type`` base, exported as GGUF (base + adapters)."""
    model_type = request.param
    root = tmp_path_factory.mktemp(model_type)
    base = build_tiny(model_type, root / "base")
    targets = ARCHS[model_type]["targets"]
    options = {"helpful": {"r": 4, "lora_alpha": 8, "target_modules": targets},
               "harmless": {"r": 4, "lora_alpha": 4, "use_rslora": True, "target_modules": targets[:2]}}
    for i, (name, option) in enumerate(options.items()):
        random_adapter(base, root / name, seed=i + 1, relative=0.3, **option)
    bundle = root / "bundle"
    assert main(["compose", str(base), *[a for n in options for a in ("--adapter", f"{n}={root / n}")],
                 "--output", str(bundle)]) == 0
    out = root / "gguf"
    assert main(["export", str(bundle), "--format", "gguf", "--output", str(out)]) == 0
    return {"type": model_type, "bundle": bundle, "out": out, "root": root,
            "config": json.loads((bundle / "base" / "config.json").read_text())}


def _tensors(path: Path) -> dict[str, np.ndarray]:
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}


def _fields(path: Path) -> dict[str, Any]:
    return {k: f.contents() for k, f in gguf.GGUFReader(str(path)).fields.items()}


def _llamacpp_rows(model_type: str, key: str, rows: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """Llama-architecture (Mistral) Q/K rows in llama.cpp's order; NEOX architectures keep Hugging Face's."""
    if LLAMACPP_ARCH[model_type] != "llama":
        return rows
    if ".self_attn.q_proj." in key:
        return llamacpp_order(rows, config["num_attention_heads"])
    if ".self_attn.k_proj." in key:
        return llamacpp_order(rows, config["num_key_value_heads"])
    return rows


def test_every_weight_has_its_llamacpp_name_order_and_value(arch):
    model_type, config = arch["type"], arch["config"]
    path = arch["out"] / "base-f32.gguf"
    tensors = _tensors(path)
    weights = load_file(arch["bundle"] / "base" / "model.safetensors")
    tied = config.get("tie_word_embeddings") or model_type == "gemma2"
    expected = {expected_name(model_type, k): k for k in weights if not (k == "lm_head.weight" and tied)}
    assert set(tensors) == set(expected)
    if model_type == "qwen2":
        assert "blk.1.attn_q.bias" in tensors  # Qwen2's attention biases
    for name, key in expected.items():
        value = weights[key].numpy()
        if model_type == "gemma2" and key.endswith("norm.weight"):
            value = value + 1.0  # Gemma's RMSNorm multiplies by 1 + w, llama.cpp's by w
        np.testing.assert_allclose(tensors[name], _llamacpp_rows(model_type, key, value, config), rtol=0, atol=1e-6,
                                   err_msg=name)


def test_the_metadata_says_what_llamacpp_needs(arch):
    model_type, config = arch["type"], arch["config"]
    fields = _fields(arch["out"] / "base-f32.gguf")
    name = LLAMACPP_ARCH[model_type]
    assert fields["general.architecture"] == name
    assert fields[f"{name}.block_count"] == 2 and fields[f"{name}.context_length"] == 512
    assert fields[f"{name}.embedding_length"] == 64 and fields[f"{name}.feed_forward_length"] == 128
    assert fields[f"{name}.attention.head_count"] == 4
    assert fields[f"{name}.attention.head_count_kv"] == config["num_key_value_heads"]
    assert fields[f"{name}.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    rope = config.get("rope_parameters") or {}
    assert fields[f"{name}.rope.freq_base"] == pytest.approx(config.get("rope_theta", rope.get("rope_theta")))
    if model_type == "qwen3":  # head_dim 32 with hidden 64 / 4 heads: llama.cpp must be told
        assert fields["qwen3.attention.key_length"] == fields["qwen3.attention.value_length"] == 32
    if model_type == "gemma2":
        assert fields["gemma2.final_logit_softcapping"] == pytest.approx(30.0)
        assert fields["gemma2.attention.sliding_window"] == 4096
    assert len(fields["tokenizer.ggml.tokens"]) == config["vocab_size"]
    assert fields["tokenizer.ggml.pre"] == "gpt-2"  # a fresh byte-level BPE: GPT-2's split
    tokenizer_config = json.loads((arch["bundle"] / "base" / "tokenizer_config.json").read_text())
    tokens = fields["tokenizer.ggml.tokens"]
    assert tokens[fields["tokenizer.ggml.eos_token_id"]] == tokenizer_config["eos_token"]
    assert fields["tokenizer.chat_template"] == (arch["bundle"] / "base" / "chat_template.jinja").read_text()


def _scale(config: dict[str, Any], rank: int) -> float:
    return config["lora_alpha"] / (math.sqrt(rank) if config.get("use_rslora") else rank)


def test_each_adapter_has_its_scale_folded_and_the_base_row_order(arch):
    model_type = arch["type"]
    for aspect in ("helpful", "harmless"):
        path = arch["out"] / f"lora-{aspect}.gguf"
        fields = _fields(path)
        assert fields["general.architecture"] == LLAMACPP_ARCH[model_type] and fields["adapter.lora.alpha"] == 0.0
        tensors = _tensors(path)
        folder = arch["bundle"] / "adapters" / aspect
        adapter_config = json.loads((folder / "adapter_config.json").read_text())
        raw = load_file(folder / "adapter_model.safetensors")
        pairs = [k for k in raw if k.endswith(".lora_A.weight")]
        assert len(tensors) == 2 * len(pairs) > 0
        for key in pairs:
            A = raw[key]
            weight = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
            B = raw[key.replace("lora_A", "lora_B")].double().numpy() * _scale(adapter_config, A.shape[0])
            name = expected_name(model_type, weight)
            np.testing.assert_array_equal(tensors[name + ".lora_a"], A.numpy())
            np.testing.assert_allclose(tensors[name + ".lora_b"], _llamacpp_rows(model_type, weight, B, arch["config"]),
                                       rtol=1e-6, atol=1e-7)


def test_a_fused_point_is_the_exact_sum(arch, tmp_path):
    model_type = arch["type"]
    out = tmp_path / "point"
    assert main(["export", str(arch["bundle"]), "--format", "gguf", "--output", str(out), "--point",
                 "helpful=0.25,harmless=0.75", "--alpha", "1"]) == 0
    [model] = list(out.glob("point-*.gguf"))
    tensors = _tensors(model)
    weights = load_file(arch["bundle"] / "base" / "model.safetensors")
    target = ARCHS[model_type]["targets"][0]  # adapted by both aspects
    prefix = "self_attn." if "proj" in target and target[0] in "qkvo" else "mlp."
    for layer in (0, 1):
        key = f"model.layers.{layer}.{prefix}{target}.weight"
        expected = weights[key].double()
        for aspect, c in COEFFICIENTS.items():
            folder = arch["bundle"] / "adapters" / aspect
            adapter_config = json.loads((folder / "adapter_config.json").read_text())
            raw = load_file(folder / "adapter_model.safetensors")
            A = raw[f"base_model.model.{key[:-len('.weight')]}.lora_A.weight"].double()
            B = raw[f"base_model.model.{key[:-len('.weight')]}.lora_B.weight"].double()
            expected += c * _scale(adapter_config, A.shape[0]) * (B @ A)
        np.testing.assert_allclose(tensors[expected_name(model_type, key)],
                                   _llamacpp_rows(model_type, key, expected.numpy(), arch["config"]), atol=2e-6)


def test_llamacpp_tokenizes_and_generates_as_transformers(arch, tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (CI builds it from source in an "
                                            "optional step; locally: pip install llama-cpp-python)")
    from transformers import AutoTokenizer

    bundle, out = arch["bundle"], arch["out"]
    fused = tmp_path / "fused"
    assert main(["export", str(bundle), "--format", "gguf", "--output", str(fused), "--point",
                 "helpful=0.25,harmless=0.75", "--alpha", "1"]) == 0
    reference = transformers_greedy(bundle, COEFFICIENTS, CHAT, 8)
    base_only = transformers_greedy(bundle, {a: 0.0 for a in COEFFICIENTS}, CHAT, 8)
    # Gemma's GELU is a float16 table in ggml: its logits agree less tightly
    tolerance = 5e-3 if arch["type"] == "gemma2" else 1e-3
    runs = {"adapters": LlamaCpp(out / "base-f32.gguf", [(out / f"lora-{a}.gguf", c) for a, c in COEFFICIENTS.items()]),
            "fused": LlamaCpp(next(fused.glob("point-*.gguf")))}
    try:
        tokenizer = AutoTokenizer.from_pretrained(bundle / "base")
        text = tokenizer.apply_chat_template([{"role": "user", "content": "Hello there, how are you?"}],
                                             tokenize=False, add_generation_prompt=True)
        assert runs["fused"].llm.tokenize(text.encode(), add_bos=True, special=True) == tokenizer(text)["input_ids"]
        for (ids, first, tokens), (_, base_first, _) in zip(reference, base_only):
            assert np.abs(first - base_first).max() > 0.5  # the adapters really change the logits
            for name, run in runs.items():
                cpp_first, cpp_tokens = run.greedy(ids, 8)
                assert np.abs(cpp_first - first).max() < tolerance, name
                assert cpp_tokens == tokens, name
    finally:
        for run in runs.values():
            run.close()


def test_an_architecture_llamacpp_would_compute_differently_is_refused(tmp_path, capsys):
    base = build_tiny("gemma2", tmp_path / "gemma")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "query_pre_attn_scalar": 256}))
    random_adapter(base, tmp_path / "a", seed=1, r=2, lora_alpha=2, target_modules=["q_proj"])
    random_adapter(base, tmp_path / "b", seed=2, r=2, lora_alpha=2, target_modules=["v_proj"])
    assert main(["compose", str(base), "--adapter", f"helpful={tmp_path / 'a'}", "--adapter",
                 f"harmless={tmp_path / 'b'}", "--output", str(tmp_path / "bundle")]) == 0
    capsys.readouterr()
    for args in (["--format", "gguf"], ["--format", "ollama", "--point", "helpful=1,harmless=1"]):
        assert main(["export", str(tmp_path / "bundle"), *args, "--output", str(tmp_path / "out")]) == 2
        _one_line_error(capsys, "query_pre_attn_scalar=256", "head_dim=16", "peo-hub merge")
        assert not (tmp_path / "out").exists()
