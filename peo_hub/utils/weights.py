"""Weight files on disk: read them, or say in one line why they cannot be read.

Every place that opens a ``.safetensors`` file (an aspect adapter, a base model folder, a
composed adapter) goes through here, so a truncated download or a garbage file is always the
same one-line :class:`~peo_hub.utils.errors.BundleError` naming the file and the fix, never a
``SafetensorError`` traceback from deep inside PEFT or transformers. The structural check is
safetensors' own (``safe_open`` parses the header and verifies that the data section covers
every tensor), and costs a header read, not the weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from peo_hub.utils.errors import BundleError, first_line

if TYPE_CHECKING:
    import torch

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"


def _broken(path: Path, what: str, fix: str, exc: BaseException) -> BundleError:
    reason = first_line(exc)
    reason = reason.removeprefix("Error while deserializing header: ")
    return BundleError(f"{what} {path} is truncated or corrupt ({reason}); {fix}")


def tensor_shapes(path: str | os.PathLike[str], what: str = "weights file",
                  fix: str = "re-create or re-download it") -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, after checking the file is whole."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except OSError as exc:
        raise BundleError(f"cannot read {what} {path}: {exc.strerror or exc}; {fix}") from None
    except Exception as exc:  # safetensors raises its own SafetensorError (not exported as a class)
        raise _broken(path, what, fix, exc) from None


def read_tensors(path: str | os.PathLike[str], what: str = "weights file",
                 fix: str = "re-create or re-download it") -> dict[str, "torch.Tensor"]:
    """Every tensor of a safetensors file, or one :class:`BundleError` line when it is broken
    or holds a NaN or an infinity (see :func:`check_finite`)."""
    from safetensors.torch import load_file

    path = Path(path)
    tensor_shapes(path, what, fix)  # the structural check, with the one-line error
    try:
        tensors = load_file(str(path))
    except OSError as exc:
        raise BundleError(f"cannot read {what} {path}: {exc.strerror or exc}; {fix}") from None
    except Exception as exc:
        raise _broken(path, what, fix, exc) from None
    for key, tensor in tensors.items():
        _refuse_non_finite(path, key, tensor, what, fix)
    return tensors


def check_finite(path: str | os.PathLike[str], what: str = "weights file",
                 fix: str = "re-create or re-download it") -> None:
    """Refuse a whole, well-formed safetensors file that holds a NaN or an infinity.

    A valid file full of NaN (a diverged training run, a bad conversion) loads without any
    error in PEFT and transformers and then generates empty strings, or is merged, exported
    and published as if it were fine. Every path that takes adapter weights (opening a
    bundle, compose, merge, export, push, ``PEOModel``) comes through here or
    :func:`read_tensors`, so the file and the first bad tensor are named before any work.
    Tensors are read one at a time, so the check holds one tensor in memory, not the file.
    """
    from safetensors import safe_open

    path = Path(path)
    tensor_shapes(path, what, fix)
    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                _refuse_non_finite(path, key, handle.get_tensor(key), what, fix)
    except BundleError:
        raise
    except OSError as exc:
        raise BundleError(f"cannot read {what} {path}: {exc.strerror or exc}; {fix}") from None
    except Exception as exc:
        raise _broken(path, what, fix, exc) from None


def _refuse_non_finite(path: Path, key: str, tensor: "torch.Tensor", what: str, fix: str) -> None:
    import torch

    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        kind = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
        raise BundleError(f"{what} {path} holds {kind} values (tensor {key!r}), so every output made from it would "
                          f"be {kind} too; {fix}")


def model_weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The weight files a transformers model folder loads from (sharded or not); [] when none."""
    folder = Path(folder)
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                raise BundleError(f"the shard index {index} is unreadable; re-save the model with "
                                  "save_pretrained") from None
            return [folder / name for name in shards]
    for name in (SAFE_WEIGHTS, BIN_WEIGHTS):
        if (folder / name).is_file():
            return [folder / name]
    return sorted(folder.glob("*.safetensors"))


def check_model_folder(folder: str | os.PathLike[str], what: str = "base model") -> None:
    """A local transformers model folder has a config and whole weight files; else one line.

    Called before a base is copied into a bundle or loaded, so a folder with ``config.json``
    but missing or truncated weights fails first, not half way through a run.
    """
    folder = Path(folder)
    fix = "re-save it with save_pretrained or download it again"
    config = folder / "config.json"
    if not config.is_file():
        raise BundleError(f"{what} folder {folder} has no config.json; {fix}")
    try:
        if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise BundleError(f"{what} config {config} is unreadable ({exc}); {fix}") from None
    files = model_weight_files(folder)
    if not files:
        raise BundleError(f"{what} folder {folder} has no weights ({SAFE_WEIGHTS}); {fix}")
    for file in files:
        if not file.is_file():
            raise BundleError(f"{what} weight shard {file} is missing; {fix}")
        if file.suffix == ".safetensors":
            tensor_shapes(file, f"{what} weights", fix)


def module_shapes(folder: str | os.PathLike[str]) -> dict[str, tuple[int, ...]] | None:
    """Module -> weight shape from a local model folder's safetensors headers (no tensor is read).

    ``None`` when the folder holds no safetensors (a Hub id, ``.bin`` weights): then only
    checks that need no base can run before the model is loaded.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = [f for f in model_weight_files(folder) if f.suffix == ".safetensors"]
    if not files:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        for key, shape in tensor_shapes(file, "base model weights").items():
            if key.endswith(".weight"):
                shapes[key[: -len(".weight")]] = shape
    return shapes
