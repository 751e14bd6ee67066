"""How ``PEOModel.from_pretrained`` loads a base: transformers' and PEFT's own loading arguments, checked.

Why a module of its own: a user who outgrows the toy loads a 7B bundle the way they load any
transformers model (``device_map="auto"``, ``dtype=torch.bfloat16``, a 4-bit
``quantization_config``, a private repo's ``token``, a ``cache_dir``, ``local_files_only``).
Those arguments are passed through to transformers as they are; this module only

* resolves the names peo-hub accepted before (``torch_dtype``, deprecated in transformers 5
  for ``dtype``; ``device``, a single device the whole model goes to),
* refuses, in one line, what cannot work on this machine before gigabytes are read
  (``cuda`` without CUDA, a bitsandbytes quantisation without CUDA or bitsandbytes),
* resolves ``"auto"`` devices the same way everywhere (the Space's ``--device auto``).
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from peo_hub.utils.errors import PEOError

#: dtype names a user may write (as in transformers and TRL), besides a ``torch.dtype`` and ``"auto"``.
DTYPE_NAMES = ("float32", "bfloat16", "float16")


def resolve_dtype(value: str | torch.dtype | None, what: str = "dtype") -> str | torch.dtype | None:
    """``value`` as transformers takes it: ``None``, ``"auto"`` or a ``torch.dtype`` (names like ``bfloat16`` too)."""
    if value is None or isinstance(value, torch.dtype) or value == "auto":
        return value
    name = str(value).removeprefix("torch.")
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise PEOError(f"unknown {what} {value!r}; use e.g. float32, bfloat16 or auto")
    return dtype


def resolve_device(device: str | torch.device | None) -> str | None:
    """``auto`` -> ``cuda`` when a CUDA GPU is there, else ``cpu``; an explicit ``cuda`` without one is refused."""
    if device is None:
        return None
    text = str(device)
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise PEOError(f"device {text!r} asked for, but this machine has no CUDA GPU that torch can use; "
                       "use device 'cpu' or 'auto' (torch must be a CUDA build: "
                       f"torch {torch.__version__} here)")
    return text


def _quant_method(config: Any) -> str | None:
    if config is None:
        return None
    if isinstance(config, Mapping):
        return str(config.get("quant_method") or ("bitsandbytes" if config.get("load_in_4bit")
                                                    or config.get("load_in_8bit") else "")) or None
    method = getattr(config, "quant_method", None)
    return str(getattr(method, "value", method)) if method is not None else None


def require_bitsandbytes(what: str, fix: str) -> None:
    """bitsandbytes 4/8-bit bases need a CUDA GPU and the package: refuse early, in the user's words."""
    if not torch.cuda.is_available():
        raise PEOError(f"{what} needs a CUDA GPU (bitsandbytes quantises on the GPU) and this machine has none; {fix}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PEOError(f"{what} needs the bitsandbytes package, which is not installed; pip install bitsandbytes, "
                       f"or {fix}")


@dataclass
class LoadArgs:
    """What transformers' ``from_pretrained`` gets for the base, and where the whole model goes after."""

    model: dict[str, Any] = field(default_factory=dict)  # AutoModelForCausalLM.from_pretrained kwargs
    hub: dict[str, Any] = field(default_factory=dict)  # token, cache_dir, local_files_only (tokenizer too)
    quantized: bool = False


def load_args(*, dtype: str | torch.dtype | None = None, torch_dtype: str | torch.dtype | None = None,
              device: str | torch.device | None = None, device_map: Any = None, token: str | bool | None = None,
              cache_dir: str | None = None, local_files_only: bool = False, attn_implementation: str | None = None,
              quantization_config: Any = None, **model_kwargs: Any) -> LoadArgs:
    """Check and resolve ``PEOModel.from_pretrained``'s loading arguments (see the module docstring).

    ``device`` (peo-hub's older argument) becomes ``device_map={"": device}``: the whole model is
    loaded straight onto that device, never first into CPU memory in full.
    """
    if torch_dtype is not None:
        warnings.warn("torch_dtype is deprecated (as in transformers 5); use dtype= instead",
                      FutureWarning, stacklevel=3)
        if dtype is not None and resolve_dtype(dtype) != resolve_dtype(torch_dtype, "torch_dtype"):
            raise PEOError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; give dtype only")
        dtype = dtype if dtype is not None else torch_dtype
    resolved = resolve_dtype(dtype)
    if device is not None and device_map is not None:
        raise PEOError("give device_map or device, not both (device='cuda' is device_map={'': 'cuda'})")
    if device is not None:
        device_map = {"": resolve_device(device)}
    elif isinstance(device_map, (str, torch.device)) and str(device_map) not in ("auto", "balanced",
                                                                                  "balanced_low_0", "sequential"):
        resolve_device(device_map)  # "cuda" without CUDA: one line, not transformers' traceback
    method = _quant_method(quantization_config)
    if method == "bitsandbytes":
        require_bitsandbytes("quantization_config (a bitsandbytes 4/8-bit base)",
                             "load the bundle without quantization_config")
    hub: dict[str, Any] = {}
    if token is not None:  # False is huggingface_hub's "no token at all"
        hub["token"] = token
    if cache_dir is not None:
        hub["cache_dir"] = str(cache_dir)
    if local_files_only:
        hub["local_files_only"] = True
    model = {**hub, **model_kwargs}
    for key, value in (("dtype", resolved), ("device_map", device_map), ("attn_implementation", attn_implementation),
                       ("quantization_config", quantization_config)):
        if value is not None:
            model[key] = value
    return LoadArgs(model=model, hub=hub, quantized=method is not None)
