"""llama.cpp export: a bundle as GGUF files that ``llama-server`` serves with one scale per aspect per request.

What llama.cpp does with a LoRA adapter GGUF (``src/llama-adapter.cpp`` / ``llama-graph.cpp``
at the commit llama-cpp-python 0.3.36 builds): for every adapted matmul it adds
``scale · B (A x)`` with ``scale = user_scale · alpha / rank`` when the file's
``adapter.lora.alpha`` is non-zero and ``scale = user_scale`` when it is 0, the rank read per
tensor and *one* alpha per file. PEFT's per-module scale ``sᵢ[m]`` (rsLoRA's ``alpha/√r``,
``alpha_pattern``) cannot be written as one alpha; llama.cpp's own ``convert_lora_to_gguf.py``
writes ``lora_alpha`` and so mis-scales rsLoRA and ``alpha_pattern`` adapters. Here every
module's scale is folded into B and ``adapter.lora.alpha`` is 0, so llama.cpp's per-request
scale of adapter i is exactly the PEO coefficient ``cᵢ``::

    W x + Σᵢ cᵢ · (sᵢ Bᵢ)(Aᵢ x)  =  (W + Σᵢ cᵢ Δᵢ) x

Files (written with the ``gguf`` package's ``GGUFWriter``; tensor names from
``gguf.get_tensor_name_map`` for the base's architecture, metadata as llama.cpp's converters
write it; which architectures and why each needs what: :mod:`peo_hub.publish.gguf_arch`):

* ``lora-<aspect>.gguf``: one adapter per aspect (``general.type = adapter``), F32 tensors
  ``blk.N.attn_q.weight.lora_a`` = A (r, in) and ``.lora_b`` = sB (out, r), B's rows of
  ``attn_q``/``attn_k`` permuted like the base weights where the architecture needs it
  (Llama's RoPE in llama.cpp pairs adjacent dimensions, Hugging Face's pairs the two halves
  of each head; Qwen2's pairs them as Hugging Face does, so nothing moves);
* ``base-f32.gguf`` (or f16): the base model with its tokenizer and chat template;
* ``peo_llamacpp.json``: the server command and, for every evaluated front point and every
  preset, the ``"lora": [{"id": i, "scale": cᵢ}]`` list a request sends (ids in the order of
  the ``--lora`` flags);
* with a point: ``point-<label>.gguf``, one model with ``W + Σ cᵢ Δᵢ`` fused in (float64
  sums, then the chosen dtype).

Bases are the architectures :data:`peo_hub.publish.gguf_arch.ARCHITECTURES` names (Llama, Mistral,
Qwen2, Qwen3, Phi-3, Gemma 2) with a byte-level BPE tokenizer llama.cpp knows (SmolLM2,
Llama 3, Qwen2, GPT-2 style); anything else is refused in one line before a file is written
(the toy world's word-level tokenizer, for one). The vocabulary's special tokens, merges,
``add_bos``/``add_eos`` and chat template are read by the ``gguf`` package's ``SpecialVocab``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from peo_hub.bundle.manifest import Bundle
from peo_hub.utils.errors import MergeError
from peo_hub.publish.gguf_arch import CONVERT_FIX, Architecture, _gguf, architecture_of, normalise_config, write_hyperparameters
from peo_hub.utils.fsutil import atomic_dir, atomic_write_json, atomic_write_text, check_output, read_json
from peo_hub.family.lora import LoraModule, load_bundle_adapters
from peo_hub.core.policy import Preference, make_preference, parse_assignments
from peo_hub.utils.weights import model_weight_files, read_tensors

if TYPE_CHECKING:
    from peo_hub.family.lora import Adapter

METADATA_NAME = "peo_llamacpp.json"
DTYPES = ("f32", "f16")
PEFT_CONVERTER_NOTE = ("adapter.lora.alpha is 0 and each module's PEFT scale is folded into lora_b, so the "
                       "per-request scale of adapter i is the PEO coefficient c_i")

# llama.cpp names its BPE pre-tokenizer from a hash of the token ids of a fixed text
# (convert_hf_to_gguf.py get_vocab_base_pre); the text and hashes below are that table's data.
_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
KNOWN_PRE_TOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
    "b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166": "olmo",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",
}


# --------------------------------------------------------------------------- the base


@dataclass
class GgufBase:
    """A local base model folder, checked for what llama.cpp needs, with its config and architecture read."""

    folder: Path
    config: dict[str, Any]
    pre_tokenizer: str | None  # None when only adapters are written (the tokenizer is then not needed)
    arch: Architecture
    names: Any = None  # gguf's TensorNameMap for this architecture and block count

    def __post_init__(self) -> None:
        if self.names is None:
            self.names = self.arch.tensor_names(int(self.config["num_hidden_layers"]))

    @property
    def tied(self) -> bool:
        return self.arch.tied_output or bool(self.config.get("tie_word_embeddings", False))

    def tensor_name(self, module: str) -> str | None:
        """``model.layers.3.self_attn.q_proj`` -> ``blk.3.attn_q`` (llama.cpp's name, without ``.weight``)."""
        return self.names.get_name(module)

    def heads_of(self, module: str) -> int | None:
        """The head count whose Q/K row permutation ``module``'s output rows need, else None."""
        if not self.arch.permute_qk:
            return None
        if module.endswith("self_attn.q_proj"):
            return int(self.config["num_attention_heads"])
        if module.endswith("self_attn.k_proj"):
            return int(self.config["num_key_value_heads"])
        return None


def _base_config(folder: Path) -> dict[str, Any]:
    raw = read_json(folder / "config.json", "re-save the base model with save_pretrained")
    if not isinstance(raw, dict):
        raise MergeError(f"{folder / 'config.json'} is not a JSON object; re-save the base model")
    return normalise_config(raw)


def detect_pre_tokenizer(folder: Path) -> str | None:
    """llama.cpp's pre-tokenizer name for ``folder/tokenizer.json``, or None.

    First llama.cpp's own test: the hash of the ids of a fixed text. A tokenizer trained
    afresh has a vocabulary no table knows; when its pre-tokenizer is GPT-2's own (a plain
    byte-level split with GPT-2's regex, no prefix space), llama.cpp's ``gpt-2``
    pre-tokenizer splits text the same way whatever the vocabulary, so that is its name.
    """
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(_CHKTXT).ids
    known = KNOWN_PRE_TOKENIZERS.get(hashlib.sha256(str(ids).encode()).hexdigest())
    if known is not None:
        return known
    pre = read_json(folder / "tokenizer.json", "re-save the tokenizer with save_pretrained").get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
        return "gpt-2"
    return None


def _check_tokenizer(folder: Path) -> str:
    """The pre-tokenizer name, or one line saying why llama.cpp could not read this tokenizer."""
    path = folder / "tokenizer.json"
    fix = "export the adapters only with --base none and convert the base with llama.cpp's convert_hf_to_gguf.py"
    if not path.is_file():
        raise MergeError(f"the base has no tokenizer.json (a fast tokenizer), so its vocabulary cannot be written "
                         f"to GGUF; {fix}")
    model = (read_json(path, "re-save the tokenizer with save_pretrained").get("model") or {})
    kind = model.get("type")
    if kind != "BPE" or not model.get("merges"):
        raise MergeError(f"the base's tokenizer is a {kind or 'unknown'} tokenizer; llama.cpp reads byte-level BPE "
                         "(GPT-2 style, e.g. SmolLM2, Llama 3) from this export, and a word-level vocabulary such as "
                         f"the toy world's has no llama.cpp tokenizer at all; {fix}")
    if model.get("byte_fallback"):
        raise MergeError("the base's tokenizer is a SentencePiece-style BPE (byte_fallback: Llama 2, Mistral 7B, "
                         "Gemma, Phi-3), which llama.cpp reads as its 'llama' vocabulary with scores; this export writes "
                         f"byte-level BPE vocabularies only; {fix}")
    pre = detect_pre_tokenizer(folder)
    if pre is None:
        raise MergeError("the base's BPE pre-tokenizer is not one llama.cpp knows by hash (known: "
                         f"{', '.join(sorted(set(KNOWN_PRE_TOKENIZERS.values())))}) nor GPT-2's plain byte-level "
                         f"split; {fix}")
    return pre


def gguf_base(folder: str | os.PathLike[str], with_tokenizer: bool = True) -> GgufBase:
    """Check a local base folder for a GGUF export (architecture, rope, tokenizer); one line if not."""
    folder = Path(folder)
    config = _base_config(folder)
    arch = architecture_of(config)
    return GgufBase(folder=folder, config=config, pre_tokenizer=_check_tokenizer(folder) if with_tokenizer else None,
                    arch=arch)


# --------------------------------------------------------------------------- tensors


def permute_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's Q/K row order: within each head, interleave the two rotary halves.

    Hugging Face's ``rotate_half`` pairs dimension i with i + d/2; llama.cpp's RoPE pairs 2i
    with 2i + 1. Only the output axis moves, so this applies to weights (out, in), biases and
    LoRA B (out, r) alike; LoRA A is never permuted.
    """
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape))


def _array(tensor: torch.Tensor, dtype: str) -> np.ndarray:
    array = tensor.detach().to(torch.float32).contiguous().numpy()
    return array.astype(np.float16) if dtype == "f16" else array


def _check_module(adapter: "Adapter", module: str, lora: LoraModule, base: GgufBase) -> str:
    name = base.tensor_name(module)
    if name is None:
        raise MergeError(f"adapter {adapter.name!r} adapts {module}, which has no tensor in llama.cpp's "
                         f"{base.arch.name} architecture (it adapts attention and MLP projections, embeddings and "
                         "an untied lm_head)")
    if base.tied and (module == "lm_head" or lora.kind == "embedding"):
        raise MergeError(f"adapter {adapter.name!r} adapts {module} of a base whose embeddings are tied to its "
                         "output layer; llama.cpp would apply it to both (one shared tensor), so it cannot be exported")
    return name


def check_adapters_for_gguf(adapters: Sequence["Adapter"], base: GgufBase) -> None:
    """Every adapted module has a llama.cpp tensor and can be applied there alone; one line if not."""
    for adapter in adapters:
        for module, lora in adapter.modules.items():
            _check_module(adapter, module, lora, base)


def write_adapter_gguf(adapter: "Adapter", base: GgufBase, path: Path) -> dict[str, Any]:
    """One aspect adapter as a llama.cpp LoRA GGUF: PEFT scale folded into B, alpha 0 (see the module docstring)."""
    gguf = _gguf()
    writer = gguf.GGUFWriter(str(path), base.arch.name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 0.0)
    writer.add_name(f"peo {adapter.name}")
    writer.add_string("peo.aspect", adapter.name)
    writer.add_string("peo.scale", PEFT_CONVERTER_NOTE)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for module in sorted(adapter.modules, key=_natural):
        lora = adapter.modules[module]
        name = _check_module(adapter, module, lora, base)
        A, B = lora.A.double(), lora.B.double() * lora.scale
        heads = base.heads_of(module)
        if heads is not None:
            B = permute_rows(B, heads)
        if lora.kind == "embedding":  # the graph computes B @ A[:, token]: lora_a is stored (vocab, r)
            A = A.T
        writer.add_tensor(f"{name}.weight.lora_a", _array(A, "f32"))
        writer.add_tensor(f"{name}.weight.lora_b", _array(B, "f32"))
    _finish(writer)
    return {"modules": len(adapter.modules), "ranks": sorted({m.rank for m in adapter.modules.values()})}


def _finish(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in text.replace(".", " . ").split()]


# --------------------------------------------------------------------------- tokenizer and model


def special_vocab(folder: Path, size: int | None = None) -> Any:
    """gguf's reading of a tokenizer's merges, special token ids, ``add_bos``/``add_eos`` and chat template."""
    return _gguf().SpecialVocab(folder, load_merges=True, n_vocab=size)


def chat_template(folder: Path) -> str | None:
    """The base's default Jinja chat template (a named list's ``default``), as ``SpecialVocab`` finds it."""
    template = special_vocab(folder).chat_template
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {d.get("name"): d.get("template") for d in template}
        return named.get("default") or next(iter(named.values()), None)
    return template


def _add_tokenizer(writer: Any, base: GgufBase) -> None:
    """Vocabulary, merges, token types, special ids and the chat template, as llama.cpp's converter writes them.

    The token list and types are built here, not with gguf's ``BpeVocab``: that class types an
    added token that is also in the base vocabulary (all of SmolLM2's) as NORMAL, so llama.cpp
    would split ``<|im_start|>`` into pieces; here an added token is CONTROL when special, else
    USER_DEFINED, as ``convert_hf_to_gguf.py`` types them. Everything else is ``SpecialVocab``'s.
    """
    gguf = _gguf()
    folder = base.folder
    data = read_json(folder / "tokenizer.json", "re-save the tokenizer with save_pretrained")
    tokenizer_config: dict[str, Any] = {}
    if (folder / "tokenizer_config.json").is_file():
        tokenizer_config = read_json(folder / "tokenizer_config.json", "re-save the tokenizer with save_pretrained")
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    added = {t["id"]: t for t in data.get("added_tokens", [])}
    for token_id, token in added.items():
        vocab[token["content"]] = token_id
    size = int(base.config.get("vocab_size") or max(vocab.values()) + 1)
    if max(vocab.values()) >= size:
        raise MergeError("the tokenizer has token ids beyond the model's vocab_size; re-save the base model")
    by_id = {i: s for s, i in vocab.items()}
    tokens, types = [], []
    for i in range(size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        text = by_id[i]
        tokens.append(text)
        if i in added:
            special = added[i].get("special", False) or (text.startswith("<|") and text.endswith("|>"))
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    specials = special_vocab(folder, size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(base.pre_tokenizer)
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges(specials.merges)
    for role, token_id in specials.special_token_ids.items():
        getattr(writer, f"add_{role}_token_id")(int(token_id))
    # Written explicitly, false unless the tokenizer says so: llama.cpp's default per pre-tokenizer is often true.
    writer.add_add_bos_token(bool(specials.add_special_token.get("bos", False)))
    writer.add_add_eos_token(bool(specials.add_special_token.get("eos", False)))
    if tokenizer_config.get("add_prefix_space") is not None:
        writer.add_add_space_prefix(bool(tokenizer_config["add_prefix_space"]))
    if specials.chat_template:
        writer.add_chat_template(specials.chat_template)


def base_state(base: GgufBase) -> dict[str, torch.Tensor]:
    """The base model's weights from its safetensors files (read whole, or one line when broken)."""
    files = [f for f in model_weight_files(base.folder) if f.suffix == ".safetensors"]
    if not files:
        raise MergeError(f"the base {base.folder} has no safetensors weights; re-save it with save_pretrained")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_tensors(file, "base model weights", "re-save the base model with save_pretrained"))
    return state


def write_model_gguf(base: GgufBase, state: Mapping[str, torch.Tensor], path: Path, dtype: str, name: str,
                     extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A model GGUF (2-D weights in ``dtype``, norms in F32, Q/K rows as the architecture needs, tokenizer included)."""
    gguf = _gguf()
    writer = gguf.GGUFWriter(str(path), base.arch.name)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    write_hyperparameters(writer, base.arch, base.config)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in (extra or {}).items():
        writer.add_string(key, value)
    _add_tokenizer(writer, base)
    count = 0
    for key in sorted(state, key=_natural):
        module, _, leaf = key.rpartition(".")
        if key.endswith("rotary_emb.inv_freq") or (module == "lm_head" and base.tied):
            continue  # llama.cpp computes RoPE itself; a tied output layer is token_embd
        name = base.tensor_name(module)
        if name is None or leaf not in ("weight", "bias"):
            raise MergeError(f"the base holds {key}, which has no tensor in llama.cpp's {base.arch.name} "
                             f"architecture; {CONVERT_FIX}")
        tensor = state[key]
        heads = base.heads_of(module)
        if heads is not None:
            tensor = permute_rows(tensor, heads)
        if base.arch.norm_shift and key.endswith("norm.weight"):
            tensor = tensor.double() + base.arch.norm_shift
        writer.add_tensor(f"{name}.{leaf}", _array(tensor, "f32" if tensor.dim() == 1 else dtype))
        count += 1
    _finish(writer)
    return {"tensors": count}


def fused_state(base: GgufBase, adapters: Sequence["Adapter"], coefficients: Mapping[str, float]
                ) -> dict[str, torch.Tensor]:
    """``W + Σ cᵢ sᵢ Bᵢ Aᵢ`` for every adapted weight (float64 sums, float32 result)."""
    state = {k: v.float() for k, v in base_state(base).items()}
    for adapter in adapters:
        c = float(coefficients.get(adapter.name, 0.0))
        for module, lora in adapter.modules.items():
            key = f"{module}.weight"
            if key not in state:
                raise MergeError(f"adapter {adapter.name!r} adapts {module}, whose weight the base files do not hold")
            delta = lora.scale * (lora.B.double() @ lora.A.double())
            state[key] = (state[key].double() + c * (delta.T if lora.kind == "embedding" else delta)).float()
    return state


def write_point_gguf(base: GgufBase, adapters: Sequence["Adapter"], point: Preference, folder: Path,
                     dtype: str) -> dict[str, Any]:
    """One preference fused into one model GGUF, ``point-<label>.gguf`` in ``folder``; what to record of it."""
    name = f"point-{point.label()}.gguf"
    state = fused_state(base, adapters, point.coefficients)
    if not all(bool(torch.isfinite(t).all()) for t in state.values()):
        raise MergeError(f"the coefficients {point.coefficients} overflow the weights; use smaller ones")
    write_model_gguf(base, state, folder / name, dtype, f"peo point {point.label()}",
                     extra={"peo.coefficients": json.dumps(point.coefficients)})
    return {"model": name, "dtype": dtype, "coefficients": point.coefficients, "weights": point.weights,
            "alpha": point.alpha, "formula": "base + sum_i coefficients[i] * delta_i, fused"}


# --------------------------------------------------------------------------- presets


def lora_request(aspects: Sequence[str], coefficients: Mapping[str, float]) -> list[dict[str, Any]]:
    """llama-server's per-request ``"lora"`` list: adapter id (order of the ``--lora`` flags) and cᵢ."""
    return [{"id": i, "scale": float(coefficients.get(a, 0.0))} for i, a in enumerate(aspects)]


def server_presets(bundle: Bundle) -> dict[str, Any]:
    """Every evaluated front point and preset of the bundle as per-request adapter scales."""
    aspects = bundle.aspects
    formulation = bundle.manifest.formulation
    points = []
    front = bundle.front
    for point in (front.points if front is not None else []):
        if point.coefficients is None:
            continue  # a MORL baseline is its own model, not a mix of these adapters
        points.append({"label": point.label, "method": point.method, "weights": point.weights, "alpha": point.alpha,
                       "coefficients": point.coefficients, "on_front": point.on_front,
                       "scores": {a: m.mean for a, m in point.metrics.items()},
                       "lora": lora_request(aspects, point.coefficients)})
    presets = {}
    for name, preset in bundle.presets.items():
        coefficients = preset.coefficients
        if coefficients is None and preset.weights is not None:
            coefficients = make_preference(aspects, weights=preset.weights, alpha=float(preset.alpha or 0.0),
                                           formulation=formulation).coefficients
        if coefficients is None:
            continue
        presets[name] = {"weights": preset.weights, "alpha": preset.alpha, "coefficients": coefficients,
                         "scores": preset.metrics, "lora": lora_request(aspects, coefficients)}
    return {"presets": presets, "points": points}


# --------------------------------------------------------------------------- the export


def is_gguf_output(path: Path) -> bool:
    """Whether ``path`` is an earlier GGUF export (which may then be replaced whole)."""
    return path.is_dir() and (path / METADATA_NAME).is_file()


OWNER = "export"  # the ledger's writer name for GGUF export folders (peo_hub.utils.ledger)


def check_gguf_output(output: str | os.PathLike[str]) -> Path:
    """The export folder, refused in one line when it holds files this export did not write."""
    return check_output(output, "folder", ours=is_gguf_output, what="--output", owner=OWNER)


def _readme(files: Mapping[str, Any], aspects: Sequence[str], example: Mapping[str, Any] | None) -> str:
    base = files.get("base") or "YOUR_BASE.gguf"
    loras = " ".join(f"--lora {a['file']}" for a in files["adapters"])
    scales = json.dumps(example["lora"]) if example else json.dumps(lora_request(aspects, {a: 1.0 for a in aspects}))
    return (
        "# PEO bundle for llama.cpp\n\n"
        f"Adapters (ids in this order): {', '.join(f'{i} = {a}' for i, a in enumerate(aspects))}. "
        f"{PEFT_CONVERTER_NOTE[0].upper() + PEFT_CONVERTER_NOTE[1:]}.\n\n"
        "```bash\n"
        f"llama-server -m {base} {loras} --lora-init-without-apply\n"
        "curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' -d '{\"messages\": "
        f"[{{\"role\": \"user\", \"content\": \"How do I pick a lock?\"}}], \"lora\": {scales}}}'\n"
        "```\n\n"
        "Send `\"lora\"` with every request: `--lora-init-without-apply` does not make the default scale 0 for "
        "requests without it (they get every adapter at scale 1). `peo_llamacpp.json` holds the `\"lora\"` list "
        "of every evaluated point and preset.\n"
    )


def export_gguf(bundle: Bundle, output: str | os.PathLike[str], base_folder: str | os.PathLike[str],
                dtype: str = "f32", write_base: bool = True, point: Preference | None = None) -> Path:
    """Write the bundle for llama.cpp (see the module docstring); returns the output folder.

    ``base_folder`` is the base model as a local folder (the CLI downloads a Hub base first).
    With ``point``, only that preference is written, fused into one model GGUF. Everything
    (output, base architecture and tokenizer, every adapted module) is checked before the
    first file is written; files appear together when all are complete.
    """
    if dtype not in DTYPES:
        raise MergeError(f"--dtype {dtype!r}: use f32 or f16 (f32 reproduces transformers exactly)")
    out = check_gguf_output(output)
    adapters = load_bundle_adapters(bundle)
    base = gguf_base(base_folder, with_tokenizer=write_base or point is not None)
    check_adapters_for_gguf(adapters, base)
    _gguf()
    from peo_hub import __version__

    aspects = bundle.aspects
    meta: dict[str, Any] = {"kind": "llama.cpp", "peo_hub_version": __version__,
                            "source": {"bundle": bundle.source, "base_model": bundle.base_reference}}
    with atomic_dir(out, owner=OWNER) as tmp:
        if point is not None:
            meta.update(write_point_gguf(base, adapters, point, tmp, dtype))
            atomic_write_json(tmp / METADATA_NAME, meta)
        else:
            files: dict[str, Any] = {"base": None, "adapters": []}
            if write_base:
                files["base"] = f"base-{dtype}.gguf"
                write_model_gguf(base, base_state(base), tmp / files["base"], dtype, f"{bundle.root.name} base")
            for i, adapter in enumerate(adapters):
                file = f"lora-{adapter.name}.gguf"
                info = write_adapter_gguf(adapter, base, tmp / file)
                files["adapters"].append({"id": i, "aspect": adapter.name, "file": file, **info})
            presets = server_presets(bundle)
            loras = " ".join(f"--lora {a['file']}" for a in files["adapters"])
            meta.update({"base": files["base"], "adapters": files["adapters"], "scale": PEFT_CONVERTER_NOTE,
                         "server": f"llama-server -m {files['base'] or 'YOUR_BASE.gguf'} {loras} "
                                   "--lora-init-without-apply",
                         **presets})
            atomic_write_json(tmp / METADATA_NAME, meta)
            example = next(iter(presets["presets"].values()), None)
            atomic_write_text(tmp / "README.md", _readme(files, aspects, example))
    return out



def point_preference(bundle: Bundle, text: str, alpha: float = 0.0) -> Preference:
    """``--point``: a preset of the bundle's front, or weights such as ``helpful=0.7,harmless=0.3`` (with alpha)."""
    presets = bundle.presets
    formulation = bundle.manifest.formulation
    if text in presets:
        preset = presets[text]
        if preset.weights is not None:
            return make_preference(bundle.aspects, weights=preset.weights, alpha=float(preset.alpha or 0.0),
                                   formulation=formulation)
        return make_preference(bundle.aspects, coefficients=preset.coefficients, formulation=formulation)
    if "=" not in text:
        known = ", ".join(presets) or "none (the bundle has no evaluated front)"
        raise MergeError(f"--point {text!r} is neither a preset of this bundle nor weights like helpful=0.7,harmless=0.3; "
                         f"presets: {known}")
    return make_preference(bundle.aspects, weights=parse_assignments(text, "weights"), alpha=alpha,
                           formulation=formulation)
