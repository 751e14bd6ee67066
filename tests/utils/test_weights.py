"""peo_hub.utils.weights: a truncated or garbage weight file is one line naming the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from peo_hub.utils.errors import BundleError
from peo_hub.utils.weights import check_model_folder, module_shapes, read_tensors, tensor_shapes


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    save_file({"layer.weight": torch.ones(4, 3), "layer.bias": torch.zeros(4)}, str(path))
    return path


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_broken_files_are_one_line(good: Path, damage: str) -> None:
    data = good.read_bytes()
    good.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a safetensors file" * 3, "empty": b""}[damage])
    for read in (tensor_shapes, read_tensors):
        with pytest.raises(BundleError, match=r"model\.safetensors is truncated or corrupt .*; re-create") as info:
            read(good)
        assert "\n" not in str(info.value)


def test_whole_files_read(good: Path) -> None:
    assert tensor_shapes(good) == {"layer.weight": (4, 3), "layer.bias": (4,)}
    assert read_tensors(good)["layer.weight"].sum() == 12
    assert module_shapes(good.parent) == {"layer": (4, 3)}


def test_model_folder_checks(good: Path) -> None:
    folder = good.parent
    with pytest.raises(BundleError, match="has no config.json"):
        check_model_folder(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    check_model_folder(folder)
    good.unlink()
    with pytest.raises(BundleError, match="has no weights"):
        check_model_folder(folder)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001.safetensors"}}))
    with pytest.raises(BundleError, match="shard .*model-00001.safetensors is missing"):
        check_model_folder(folder)
    (folder / "model-00001.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(BundleError, match="truncated or corrupt"):
        check_model_folder(folder)
