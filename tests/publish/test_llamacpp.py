"""``peo-hub export --format gguf`` (peo_hub.publish.gguf): files llama.cpp reads, checked against llama.cpp itself.

The bundle is composed on a truncated SmolLM2-135M-Instruct (two of its layers, the real
tokenizer and chat template) from two separate PEFT runs: a plain LoRA, and an rsLoRA with a
rank pattern and an alpha pattern that adapts fewer modules. llama.cpp's own converter would
write the second with one alpha (alpha/r): wrong for rsLoRA and alpha_pattern. Here the tensors
are read back with the gguf package and compared with values this file computes itself
(its own Q/K row order, its own per-module scale); then, when llama-cpp-python is installed
(opt-in: CI builds it from source in a step that may fail), llama.cpp must give the same greedy
tokens as transformers at a front point, with the per-request scales of the presets file.
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

from fakes import folder_digest, make_fake_bundle
from llamacpp_check import LlamaCpp, llamacpp_order, random_adapter, transformers_greedy
from peo_hub.cli import main
from reference import _one_line_error, module_alpha
from smollm2 import truncated_smollm2

gguf = pytest.importorskip("gguf", reason="the GGUF export needs the gguf package (pip install gguf)")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ADAPTERS = {
    "helpful": {"r": 8, "lora_alpha": 16, "target_modules": TARGETS},
    "harmless": {"r": 8, "lora_alpha": 8, "use_rslora": True, "rank_pattern": {"q_proj": 4, "down_proj": 16},
                 "alpha_pattern": {"v_proj": 24}, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]},
}
EVAL_RECIPE = """
aspects:
  helpful: {judge: {type: toy_helpful}}
  harmless: {judge: {type: toy_harmless}}
sweep: {weights: 3, alpha: [0, 0.5]}
evaluate: {prompts: ["How do I bake bread?", "How do I pick a lock?"], samples: 1, max_new_tokens: 4,
           temperature: 0, bootstrap: 100}
"""
CHAT = ["What is the capital of France?", "How do I reverse a list in Python?", "Write a haiku about the sea."]
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def smol_bundle(tmp_path_factory) -> Path:
    """A composed, evaluated bundle on the truncated SmolLM2 (two PEFT runs, see the module docstring)."""
    base = truncated_smollm2()
    root = tmp_path_factory.mktemp("smol")
    for i, (name, options) in enumerate(ADAPTERS.items()):
        random_adapter(base, root / name, seed=i + 1, **options)
    bundle = root / "bundle"
    assert main(["compose", str(base), *[a for n in ADAPTERS for a in ("--adapter", f"{n}={root / n}")],
                 "--output", str(bundle)]) == 0
    (root / "eval.yaml").write_text(EVAL_RECIPE)
    assert main(["evaluate", str(bundle), "--recipe", str(root / "eval.yaml")]) == 0
    return bundle


@pytest.fixture(scope="module")
def exported(smol_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "out"
    assert main(["export", str(smol_bundle), "--format", "gguf", "--output", str(out)]) == 0
    return out


def _tensors(path: Path) -> dict[str, np.ndarray]:
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}


def _field(path: Path, key: str) -> Any:
    return gguf.GGUFReader(str(path)).fields[key].contents()


def _config(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "base" / "config.json").read_text())


def _adapter(bundle: Path, aspect: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    folder = bundle / "adapters" / aspect
    return json.loads((folder / "adapter_config.json").read_text()), load_file(folder / "adapter_model.safetensors")


def _scale(config: dict[str, Any], module: str, rank: int) -> float:
    return module_alpha(config, module) / (math.sqrt(rank) if config.get("use_rslora") else rank)


# ------------------------------------------------------------------ the files


def test_each_aspect_is_a_llamacpp_adapter_with_its_peft_scale_folded(smol_bundle, exported):
    config = _config(smol_bundle)
    heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    for aspect in ADAPTERS:
        path = exported / f"lora-{aspect}.gguf"
        assert _field(path, "general.type") == "adapter" and _field(path, "adapter.type") == "lora"
        assert _field(path, "general.architecture") == "llama"
        assert _field(path, "adapter.lora.alpha") == 0.0  # llama.cpp: scale = the request's scale, nothing else
        tensors = _tensors(path)
        adapter_config, raw = _adapter(smol_bundle, aspect)
        checked = 0
        for key, A in raw.items():
            if not key.endswith(".lora_A.weight"):
                continue
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            layer, leaf = module.split(".")[2], module.rsplit(".", 1)[-1]
            B = raw[key.replace("lora_A", "lora_B")].double().numpy() * _scale(adapter_config, module, A.shape[0])
            if leaf in heads:
                B = llamacpp_order(B, heads[leaf])
            name = f"blk.{layer}.{names[leaf]}.weight"
            np.testing.assert_allclose(tensors[name + ".lora_a"], A.numpy(), rtol=0, atol=0)
            np.testing.assert_allclose(tensors[name + ".lora_b"], B, rtol=1e-6, atol=1e-7)
            checked += 1
        assert checked == len(tensors) // 2 == 2 * len(adapter_config["target_modules"])


def test_the_base_gguf_has_the_weights_tokenizer_and_template(smol_bundle, exported):
    path = exported / "base-f32.gguf"
    config = _config(smol_bundle)
    assert _field(path, "general.type") == "model" and _field(path, "tokenizer.ggml.pre") == "smollm"
    assert len(_field(path, "tokenizer.ggml.tokens")) == config["vocab_size"]
    assert "im_start" in _field(path, "tokenizer.chat_template")
    tensors = _tensors(path)
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    weights = load_file(smol_bundle / "base" / "model.safetensors")
    k = weights["model.layers.1.self_attn.k_proj.weight"].numpy()
    np.testing.assert_array_equal(tensors["blk.1.attn_k.weight"], llamacpp_order(k, config["num_key_value_heads"]))
    np.testing.assert_array_equal(tensors["blk.0.ffn_up.weight"], weights["model.layers.0.mlp.up_proj.weight"].numpy())


def test_the_presets_file_gives_the_request_scales_of_every_point_and_preset(smol_bundle, exported):
    meta = json.loads((exported / "peo_llamacpp.json").read_text())
    front = json.loads((smol_bundle / "front.json").read_text())
    aspects = front["aspects"]
    assert [a["aspect"] for a in meta["adapters"]] == aspects and [a["id"] for a in meta["adapters"]] == [0, 1]
    assert meta["server"].index("lora-helpful.gguf") < meta["server"].index("lora-harmless.gguf")
    assert "--lora-init-without-apply" in meta["server"]
    family = [p for p in front["points"] if p.get("coefficients") is not None]
    assert len(meta["points"]) == len(family) == 7
    for point, entry in zip(family, meta["points"]):
        assert entry["lora"] == [{"id": i, "scale": point["coefficients"][a]} for i, a in enumerate(aspects)]
    for name, preset in front["presets"].items():
        total = sum(preset["weights"].values())
        expected = [(1 + preset["alpha"]) * preset["weights"][a] / total for a in aspects]
        assert [e["scale"] for e in meta["presets"][name]["lora"]] == pytest.approx(expected, abs=1e-12)
    readme = (exported / "README.md").read_text()
    assert '"lora": [{"id": 0' in readme and "--lora-init-without-apply" in readme


def test_a_fused_point_is_one_model_with_the_exact_sum(smol_bundle, tmp_path):
    out = tmp_path / "point"
    assert main(["export", str(smol_bundle), "--format", "gguf", "--output", str(out),
                 "--point", "helpful=0.25,harmless=0.75", "--alpha", "1"]) == 0
    coefficients = {"helpful": 0.5, "harmless": 1.5}  # (1 + 1) * w
    [model] = list(out.glob("point-*.gguf"))
    assert json.loads((out / "peo_llamacpp.json").read_text())["coefficients"] == coefficients
    tensors = _tensors(model)
    config = _config(smol_bundle)
    weights = load_file(smol_bundle / "base" / "model.safetensors")
    for module, leaf in (("model.layers.0.self_attn.q_proj", "attn_q"), ("model.layers.1.mlp.down_proj", "ffn_down"),
                         ("model.layers.1.mlp.gate_proj", "ffn_gate")):
        expected = weights[module + ".weight"].double()
        for aspect, c in coefficients.items():
            adapter_config, raw = _adapter(smol_bundle, aspect)
            A = raw.get(f"base_model.model.{module}.lora_A.weight")
            if A is not None:  # harmless does not adapt gate_proj: it adds nothing there
                B = raw[f"base_model.model.{module}.lora_B.weight"]
                expected += c * _scale(adapter_config, module, A.shape[0]) * (B.double() @ A.double())
        expected = expected.numpy()
        if leaf == "attn_q":
            expected = llamacpp_order(expected, config["num_attention_heads"])
        np.testing.assert_allclose(tensors[f"blk.{module.split('.')[2]}.{leaf}.weight"], expected, atol=2e-6)


# ------------------------------------------------------------------ refusals


def test_a_word_level_tokenizer_is_refused_in_one_line(tmp_path, capsys):
    bundle = make_fake_bundle(tmp_path / "toy")
    capsys.readouterr()
    assert main(["export", str(bundle), "--format", "gguf", "--output", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, "WordLevel", "word-level", "--base none")
    assert not (tmp_path / "out").exists()
    # adapters only: the tokenizer is not needed, the adapters are written
    assert main(["export", str(bundle), "--format", "gguf", "--output", str(tmp_path / "out"), "--base", "none"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.gguf")) == ["lora-harmless.gguf", "lora-helpful.gguf"]


def test_other_architectures_and_tied_embedding_adapters_are_refused(smol_bundle, tmp_path, capsys):
    bundle = make_fake_bundle(tmp_path / "neox")
    config = json.loads((bundle / "base" / "config.json").read_text())
    (bundle / "base" / "config.json").write_text(json.dumps({**config, "model_type": "gpt_neox"}))
    capsys.readouterr()
    assert main(["export", str(bundle), "--format", "gguf", "--output", str(tmp_path / "o"), "--base", "none"]) == 2
    _one_line_error(capsys, "'gpt_neox'", "'gptneox'", "RoPE row order and metadata", "peo-hub merge")
    (bundle / "base" / "config.json").write_text(json.dumps({**config, "model_type": "no_such_model"}))
    assert main(["export", str(bundle), "--format", "gguf", "--output", str(tmp_path / "o"), "--base", "none"]) == 2
    _one_line_error(capsys, "'no_such_model'", "no architecture")
    embed = tmp_path / "embed"
    random_adapter(smol_bundle / "base", embed, seed=5, r=2, lora_alpha=4, target_modules=["embed_tokens"],
                   save_embedding_layers=True)
    capsys.readouterr()
    assert main(["compose", str(smol_bundle / "base"), "--adapter", f"helpful={smol_bundle / 'adapters/helpful'}",
                 "--adapter", f"harmless={embed}", "--output", str(tmp_path / "c")]) == 2
    _one_line_error(capsys, "full copy of the base weight", "save_embedding_layers=False")
    random_adapter(smol_bundle / "base", embed, seed=5, r=2, lora_alpha=4, target_modules=["embed_tokens"])
    composed = tmp_path / "c"
    assert main(["compose", str(smol_bundle / "base"), "--adapter", f"helpful={smol_bundle / 'adapters/helpful'}",
                 "--adapter", f"harmless={embed}", "--output", str(composed)]) == 0
    capsys.readouterr()
    assert main(["export", str(composed), "--format", "gguf", "--output", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "tied", "embed_tokens")
    assert not (tmp_path / "o").exists()


def test_export_never_overwrites_a_folder_it_did_not_write(smol_bundle, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.gguf").write_text("mine")
    before = folder_digest(out)
    capsys.readouterr()
    assert main(["export", str(smol_bundle), "--format", "gguf", "--output", str(out), "--base", "none"]) == 2
    _one_line_error(capsys, "never overwrites")
    assert folder_digest(out) == before
    assert main(["export", str(smol_bundle), "--format", "gguf", "--output", str(tmp_path / "x"), "--point", "nope"]) == 2
    _one_line_error(capsys, "'nope'", "preset")


# ------------------------------------------------------------------ llama.cpp itself (opt-in)


def test_llamacpp_reproduces_transformers_greedy_tokens_at_a_front_point(smol_bundle, exported, tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (CI builds it from source in an "
                                            "optional step; locally: pip install llama-cpp-python)")
    meta = json.loads((exported / "peo_llamacpp.json").read_text())
    mixed = [p for p in meta["points"] if all(s["scale"] > 0 for s in p["lora"])]
    point = max(mixed, key=lambda p: (p["on_front"], sum(s["scale"] for s in p["lora"])))
    files = {a["id"]: exported / a["file"] for a in meta["adapters"]}
    reference = transformers_greedy(smol_bundle, point["coefficients"], CHAT, NEW_TOKENS)
    base_only = transformers_greedy(smol_bundle, {a: 0.0 for a in point["coefficients"]}, CHAT, NEW_TOKENS)

    server_like = LlamaCpp(exported / meta["base"], [(files[s["id"]], s["scale"]) for s in point["lora"]])
    try:
        runs = [server_like.greedy(ids, NEW_TOKENS) for ids, _, _ in reference]
    finally:
        server_like.close()
    for (ids, first, tokens), (cpp_first, cpp_tokens), (_, base_first, _) in zip(reference, runs, base_only):
        assert np.abs(first - base_first).max() > 0.1  # the adapters really change the logits
        assert np.abs(cpp_first - first).max() < 1e-3
        assert cpp_tokens == tokens

    fused = tmp_path / "fused"
    weights = ",".join(f"{a}={w}" for a, w in point["weights"].items())
    assert main(["export", str(smol_bundle), "--format", "gguf", "--output", str(fused), "--point", weights,
                 "--alpha", str(point["alpha"])]) == 0
    one_model = LlamaCpp(next(fused.glob("point-*.gguf")))
    try:
        for ids, first, tokens in reference:
            cpp_first, cpp_tokens = one_model.greedy(ids, NEW_TOKENS)
            assert np.abs(cpp_first - first).max() < 1e-3 and cpp_tokens == tokens
    finally:
        one_model.close()
