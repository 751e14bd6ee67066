"""Adapters as tensors (peo_hub.family.lora): adapters trained on another base, or not plain LoRA, are
refused in one line before anything is written."""

from __future__ import annotations

import json

import pytest

from fakes import make_fake_bundle
from peo_hub.bundle.manifest import load_manifest, save_manifest
from reference import (_one_line_error, cli_error)
from reference import wrong_base_bundle  # noqa: F401  (fixtures)


@pytest.mark.parametrize("as_", ["adapter", "yaml", "model"])
def test_cli_refuses_adapter_from_another_base(wrong_base_bundle, tmp_path, capsys, as_):
    out = tmp_path / "o" / ("p.yaml" if as_ == "yaml" else "x")
    assert cli_error(capsys, wrong_base_bundle, "--weights", "helpful=1", "--output", out, "--as", as_) == 2
    _one_line_error(capsys, "harmless", "different base")
    assert not (tmp_path / "o").exists()


def test_cli_refuses_adapter_declaring_another_hub_base(tmp_path, capsys):
    root = make_fake_bundle(tmp_path / "b")
    manifest = load_manifest(root)
    manifest.base_model = "org/base-a"  # a Hub base: only names can be compared offline
    save_manifest(root, manifest)
    config_file = root / "adapters" / "harmless" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = "org/base-b"
    config_file.write_text(json.dumps(config))
    assert cli_error(capsys, root, "--weights", "helpful=1", "--output", tmp_path / "p.yaml", "--as", "yaml") == 2
    _one_line_error(capsys, "org/base-b", "org/base-a")


def test_cli_refuses_dora_adapter(tmp_path, capsys):
    root = make_fake_bundle(tmp_path / "b", adapter_options={"harmless": {"use_dora": True}})
    assert cli_error(capsys, root, "--weights", "helpful=1", "--output", tmp_path / "x") == 2
    _one_line_error(capsys, "use_dora")


@pytest.mark.parametrize("change, needle", [
    (lambda c: [c], "is a JSON list, not an adapter config object"),
    (lambda c: {**c, "lora_alpha": "16"}, "lora_alpha is '16', not a positive number"),
    (lambda c: {**c, "alpha_pattern": {"q_proj": "x"}}, "alpha_pattern must map module names to positive numbers"),
])
def test_malformed_adapter_configs_are_one_line(tmp_path, capsys, change, needle):
    root = make_fake_bundle(tmp_path / "b")
    config_file = root / "adapters" / "helpful" / "adapter_config.json"
    config_file.write_text(json.dumps(change(json.loads(config_file.read_text()))))
    assert cli_error(capsys, root, "--weights", "helpful=1", "--output", tmp_path / "x") == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "x").exists()
