"""``peo-hub env``: what a bug report needs to know about this installation, in one paste.

Why: most "it fails for me" reports turn on a version (transformers moved a name, TRL
changed a default), the device, or where files are cached and which Hub is reached. Like
``transformers env`` and ``accelerate env``, this reads package versions from their
installed metadata (nothing is imported but torch, which is needed for the device) and
never prints a token, only whether one is found.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

#: Distribution names of the stack, as pip knows them; llama-cpp-python and vllm are optional.
STACK = ("torch", "transformers", "trl", "peft", "mergekit", "huggingface_hub", "datasets", "gradio", "accelerate",
         "gguf", "safetensors", "moocore", "scipy", "llama-cpp-python", "vllm")
HF_FLAGS = ("HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME",
            "HF_HUB_CACHE", "HF_HUB_DISABLE_XET", "PEO_HUB_CACHE")


def package_version(name: str) -> str:
    """The installed version of a distribution, or ``not installed``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _peo_hub_line() -> str:
    """peo-hub's version and where it is imported from (an editable checkout says so)."""
    import peo_hub

    return f"{peo_hub.__version__} ({Path(peo_hub.__file__).resolve().parent.parent})"


def _device() -> dict[str, str]:
    """torch's build (CUDA version or CPU) and the accelerators it sees."""
    try:
        import torch
    except ImportError:
        return {"device": "unknown (torch is not installed)"}
    info = {"torch CUDA build": torch.version.cuda or "no (CPU build)"}
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        memory = [torch.cuda.get_device_properties(i).total_memory / 2**30 for i in range(len(names))]
        info["device"] = "; ".join(f"cuda:{i} {n} ({m:.0f} GiB)" for i, (n, m) in enumerate(zip(names, memory)))
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        info["device"] = "mps (Apple GPU)"
    else:
        info["device"] = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return info


def _hub() -> dict[str, str]:
    """Which Hub is reached, whether offline, and whether a token is found (never the token)."""
    from huggingface_hub import constants, get_token

    info = {"Hub endpoint": constants.ENDPOINT, "Hub offline (HF_HUB_OFFLINE)": str(bool(constants.HF_HUB_OFFLINE)),
            "HF cache": str(constants.HF_HUB_CACHE), "HF token": "found" if get_token() else "not found"}
    flags = [f"{name}={os.environ[name]}" for name in HF_FLAGS if name in os.environ]
    info["environment"] = ", ".join(flags) or "(none of the HF_* / PEO_HUB_CACHE variables is set)"
    return info


def environment_report() -> dict[str, str]:
    """Every line of ``peo-hub env``, as ordered (name, value) pairs."""
    from peo_hub.utils.fsutil import cache_root

    report = {"peo-hub": _peo_hub_line(), "Python": f"{platform.python_version()} ({sys.executable})",
              "Platform": platform.platform()}
    report.update({name: package_version(name) for name in STACK})
    report.update(_device())
    report["peo-hub cache"] = str(cache_root())
    report.update(_hub())
    return report


def format_report(report: dict[str, str]) -> str:
    """Markdown bullets, ready to paste into an issue."""
    lines = ["Copy and paste the lines below into your bug report:", ""]
    lines += [f"- {name}: {value}" for name, value in report.items()]
    return "\n".join(lines)
