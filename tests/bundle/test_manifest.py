"""peo_hub.bundle.manifest: the on-disk format's one owner: opening, completeness, format version, presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import make_fake_bundle
from peo_hub.bundle.manifest import (FORMAT_VERSION, MANIFEST_NAME, adapter_complete, load_manifest, open_bundle,
                                     validate_bundle)
from peo_hub.utils.errors import BundleError


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    return make_fake_bundle(tmp_path / "b")


def test_open_resolves_base_and_adapters(bundle: Path) -> None:
    opened = open_bundle(bundle)
    assert opened.aspects == ["helpful", "harmless"]
    assert opened.base_is_local and Path(opened.base) == (bundle / "base").resolve()
    assert opened.hub_base_model is None and opened.front is None and opened.presets == {}
    assert adapter_complete(opened.adapter_dirs["helpful"], training_info=False)
    assert validate_bundle(bundle).aspect_names == ["helpful", "harmless"]


def test_a_newer_format_is_refused_with_the_upgrade_command(bundle: Path) -> None:
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (bundle / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=f"bundle format {FORMAT_VERSION + 1}, newer than this peo-hub reads "
                                          r"\(1\); upgrade: pip install -U peo-hub"):
        load_manifest(bundle)


@pytest.mark.parametrize("content, needle", [
    ("[1, 2]", "not a JSON object"),
    ("{not json", "cannot read"),
    (json.dumps({"base_model": "base"}), "missing required field 'aspects'"),
])
def test_broken_manifests_are_one_line(bundle: Path, content: str, needle: str) -> None:
    (bundle / MANIFEST_NAME).write_text(content)
    with pytest.raises(BundleError, match=needle) as info:
        open_bundle(bundle)
    assert "\n" not in str(info.value)


def test_a_truncated_adapter_or_base_is_caught_on_open_and_validate(bundle: Path) -> None:
    weights = bundle / "adapters" / "harmless" / "adapter_model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:100])
    with pytest.raises(BundleError, match="adapter weights of aspect 'harmless' .* truncated or corrupt"):
        open_bundle(bundle)
    weights.write_bytes(whole)
    base = bundle / "base" / "model.safetensors"
    base.write_bytes(base.read_bytes()[:-10])
    open_bundle(bundle)  # opening reads no base weights
    with pytest.raises(BundleError, match="base model weights .*truncated or corrupt"):
        validate_bundle(bundle)
