"""Which Hugging Face architectures the GGUF export writes, and what each one needs in llama.cpp.

The ``gguf`` package knows, for every architecture llama.cpp runs, the tensor names
(``gguf.get_tensor_name_map(arch, n_blocks)`` maps ``model.layers.3.self_attn.q_proj`` to
``blk.3.attn_q``) and the metadata keys (``GGUFWriter.add_*``). Two things it does not know,
both of which change the numbers llama.cpp computes, live here per architecture:

* the RoPE row order. llama.cpp's "normal" RoPE (``LLAMA_ROPE_TYPE_NORM``: Llama, Mistral)
  pairs adjacent dimensions 2i, 2i+1 of a head, Hugging Face's ``rotate_half`` pairs i with
  i + d/2, so Q and K rows (weights, biases, LoRA B) are permuted on the way out; the "NEOX"
  RoPE (Qwen2, Qwen3, Phi-3, Gemma 2) pairs i with i + d/2 like Hugging Face, so nothing moves
  (``llama_model_rope_type`` in llama.cpp's ``src/llama-model.cpp``);
* the hyper-parameters the architecture's graph reads (``src/models/<arch>.cpp``) and any
  change of the weights themselves (Gemma's RMSNorm multiplies by ``1 + w``, llama.cpp's by
  ``w``, so Gemma norms are written as ``w + 1``, as ``convert_hf_to_gguf.py`` does).

An architecture that ``gguf`` maps but this table does not know is refused in one line that
names it and says what it would need (its row order and metadata), before any file is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from peo_hub.utils.errors import MergeError

#: The fix every refusal of a base ends with: the fused model as a plain folder, for llama.cpp's own converter.
CONVERT_FIX = ("write the point as a plain model with `peo-hub merge BUNDLE --as model` and convert that with "
               "llama.cpp's convert_hf_to_gguf.py")


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise MergeError("the GGUF export needs the gguf package; pip install gguf") from None
    return gguf


def rope_settings(config: dict[str, Any]) -> dict[str, Any]:
    """``rope_parameters`` (transformers 5) and ``rope_scaling`` (4.x) as one dict."""
    return {**(config.get("rope_parameters") or {}), **(config.get("rope_scaling") or {})}


def rope_kind(config: dict[str, Any]) -> str:
    rope = rope_settings(config)
    return str(rope.get("rope_type") or rope.get("type") or "default").lower()


def rope_theta(config: dict[str, Any]) -> float:
    return float(config.get("rope_theta", rope_settings(config).get("rope_theta", 10000.0)))


# --------------------------------------------------------------------------- per-architecture metadata


def _no_rope_scaling(name: str) -> Callable[[dict[str, Any]], None]:
    def check(config: dict[str, Any]) -> None:
        kind = rope_kind(config)
        if kind not in ("default", "linear"):
            raise MergeError(f"the base uses rope scaling {kind!r}, which this export does not write for {name}; "
                             f"{CONVERT_FIX}")
    return check


def _phi3_check(config: dict[str, Any]) -> None:
    kind = rope_kind(config)
    if kind != "default":  # longrope / su need llama.cpp's rope_factors tensors, which are not written here
        raise MergeError(f"the Phi-3 base uses rope scaling {kind!r} (long-context factors), which this export does "
                         f"not write; {CONVERT_FIX}")


def _phi3_metadata(writer: Any, config: dict[str, Any]) -> None:
    writer.add_rope_scaling_orig_ctx_len(int(config.get("original_max_position_embeddings")
                                             or config.get("max_position_embeddings", 4096)))
    # llama.cpp disables Phi-3's sliding window whatever is written (src/models/phi3.cpp); 0 says "none".
    writer.add_sliding_window(int(config.get("sliding_window") or 0))


def _gemma2_check(config: dict[str, Any]) -> None:
    _no_rope_scaling("Gemma 2")(config)
    head_dim = int(config["head_dim"])
    scalar = config.get("query_pre_attn_scalar", head_dim)
    if scalar != head_dim:  # llama.cpp scales queries by 1/sqrt(head_dim) (27B aside), not by this value
        raise MergeError(f"the Gemma 2 base scales queries by query_pre_attn_scalar={scalar}, not head_dim={head_dim}"
                         f", which llama.cpp's gemma2 graph assumes; {CONVERT_FIX}")
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if config.get(key) is None:
            raise MergeError(f"the Gemma 2 base has no {key}, which llama.cpp's gemma2 graph always applies; "
                             f"{CONVERT_FIX}")


def _gemma2_metadata(writer: Any, config: dict[str, Any]) -> None:
    writer.add_attn_logit_softcapping(float(config["attn_logit_softcapping"]))
    writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
    writer.add_sliding_window(int(config.get("sliding_window") or 4096))


@dataclass(frozen=True)
class Architecture:
    """How one Hugging Face ``model_type`` is written for llama.cpp."""

    arch: str  # the gguf MODEL_ARCH member, e.g. "QWEN2"
    label: str  # as users know it, for messages
    permute_qk: bool  # llama.cpp's NORM RoPE: Q/K rows interleaved (see the module docstring)
    check: Callable[[dict[str, Any]], None] = field(default=_no_rope_scaling("this architecture"))
    metadata: Callable[[Any, dict[str, Any]], None] | None = None  # keys beyond the common ones
    norm_shift: float = 0.0  # added to every ``*norm.weight`` (Gemma's 1 + w)
    tied_output: bool = False  # llama.cpp never reads an output tensor: the embeddings are the LM head
    rotary_fraction_key: str | None = None  # config key of the fraction of each head that RoPE turns

    @property
    def name(self) -> str:
        """llama.cpp's name (``general.architecture``)."""
        gguf = _gguf()
        return gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, self.arch)]

    def tensor_names(self, blocks: int) -> Any:
        gguf = _gguf()
        return gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, self.arch), blocks)


ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture("LLAMA", "Llama", permute_qk=True, check=_no_rope_scaling("Llama")),
    # llama.cpp runs Mistral as Llama (convert_hf_to_gguf.py registers MistralForCausalLM so); its
    # sliding window is not applied, as with llama.cpp's own conversion.
    "mistral": Architecture("LLAMA", "Mistral", permute_qk=True, check=_no_rope_scaling("Mistral")),
    "qwen2": Architecture("QWEN2", "Qwen2", permute_qk=False, check=_no_rope_scaling("Qwen2")),
    "qwen3": Architecture("QWEN3", "Qwen3", permute_qk=False, check=_no_rope_scaling("Qwen3")),
    "phi3": Architecture("PHI3", "Phi-3", permute_qk=False, check=_phi3_check, metadata=_phi3_metadata,
                         rotary_fraction_key="partial_rotary_factor"),
    "gemma2": Architecture("GEMMA2", "Gemma 2", permute_qk=False, check=_gemma2_check, metadata=_gemma2_metadata,
                           norm_shift=1.0, tied_output=True),
}


def supported() -> str:
    """The model types this export writes, for messages and docs."""
    return ", ".join(ARCHITECTURES)


def _gguf_name_for(model_type: str) -> str | None:
    """llama.cpp's architecture name that ``model_type`` most likely is (``gpt_neox`` -> ``gptneox``), or None."""
    names = set(_gguf().MODEL_ARCH_NAMES.values())
    for candidate in (model_type, model_type.replace("_", ""), model_type.replace("_", "-")):
        if candidate in names:
            return candidate
    return None


def architecture_of(config: dict[str, Any]) -> Architecture:
    """The :class:`Architecture` of a base config, or one line naming what is missing for it."""
    model_type = str(config.get("model_type"))
    found = ARCHITECTURES.get(model_type)
    if found is not None:
        found.check(config)
        return found
    known = _gguf_name_for(model_type)
    if known is None:
        raise MergeError(f"the base is a {model_type!r} model, which llama.cpp has no architecture for in the "
                         f"installed gguf package; the GGUF export writes {supported()}")
    raise MergeError(f"the GGUF export cannot write a {model_type!r} base yet: llama.cpp runs it as {known!r}, but "
                     f"this export does not know that architecture's RoPE row order and metadata (it writes "
                     f"{supported()}; see docs/gguf.md to add one); {CONVERT_FIX}")


def normalise_config(raw: dict[str, Any]) -> dict[str, Any]:
    """The text model's config with the defaults llama.cpp's keys need filled in."""
    config = {**raw, **(raw.get("text_config") or {})}
    config.setdefault("num_key_value_heads", config["num_attention_heads"])
    config["head_dim"] = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return config


def write_hyperparameters(writer: Any, arch: Architecture, config: dict[str, Any]) -> None:
    """The common llama.cpp hyper-parameters, then the architecture's own (the order keeps Llama files as before)."""
    gguf = _gguf()
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_vocab_size(config["vocab_size"])
    rotary = config["head_dim"]
    if arch.rotary_fraction_key is not None:
        rotary = int(float(config.get(arch.rotary_fraction_key) or 1.0) * config["head_dim"])
    writer.add_rope_dimension_count(rotary)
    if config["head_dim"] != config["hidden_size"] // config["num_attention_heads"]:
        writer.add_key_length(config["head_dim"])
        writer.add_value_length(config["head_dim"])
    if rope_kind(config) == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope_settings(config)["factor"]))
    if arch.metadata is not None:
        arch.metadata(writer, config)
