"""The PEO bundle on disk: ``peo_config.json`` and where everything else lives.

A bundle is what ``peo-hub recipe run`` writes and what a Hub repo holds::

    peo_config.json      this manifest
    base/                the base model, only when users could not get it elsewhere
    adapters/<aspect>/   one standard PEFT LoRA adapter per aspect
    merges/<point>.yaml  mergekit configs of the front's points
    front.json, front.png, README.md

The manifest is a pydantic model so that a hand-edited or foreign file fails with a
message naming the bad field instead of a KeyError deep inside loading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from peo_hub.errors import BundleError
from peo_hub.fsutil import atomic_write_json, read_json
from peo_hub.policy import DEFAULT_FORMULATION

MANIFEST_NAME = "peo_config.json"
FORMAT_VERSION = 1


class AspectEntry(BaseModel):
    """One preference aspect: its adapter folder (relative to the bundle) and provenance."""

    model_config = ConfigDict(extra="allow")

    adapter: str = Field(description="adapter folder inside the bundle, e.g. adapters/helpful")
    judge: dict[str, Any] = Field(default_factory=dict, description="judge spec from the recipe")
    dataset: dict[str, Any] = Field(default_factory=dict, description="dataset spec + provenance")
    train_seconds: float | None = None
    train_metrics: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    """``peo_config.json``: the contract between training, loading, merging and the Hub."""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    peo_hub_version: str = ""
    base_model: str = Field(description="Hub id, or a folder inside the bundle (e.g. 'base')")
    base_model_revision: str | None = None
    aspects: dict[str, AspectEntry]
    formulation: str = DEFAULT_FORMULATION
    lora: dict[str, Any] = Field(default_factory=dict)
    recipe: dict[str, Any] = Field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    front: dict[str, Any] = Field(default_factory=dict, description="summary of front.json")

    @property
    def aspect_names(self) -> list[str]:
        return list(self.aspects)


def manifest_path(bundle: str | os.PathLike[str]) -> Path:
    return Path(bundle) / MANIFEST_NAME


def load_manifest(bundle: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``peo_config.json`` of a local bundle folder."""
    path = manifest_path(bundle)
    if not path.is_file():
        raise BundleError(
            f"{bundle} is not a PEO bundle (no {MANIFEST_NAME}); point at the folder "
            "`peo-hub recipe run` wrote, or a Hub repo id"
        )
    raw = read_json(path, "re-run `peo-hub recipe run` to rewrite it")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BundleError(f"{path}: field {where}: {first['msg']}") from None


def save_manifest(bundle: str | os.PathLike[str], manifest: Manifest) -> None:
    atomic_write_json(manifest_path(bundle), manifest.model_dump(mode="json", exclude_none=False))


def resolve_base(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> str:
    """Where to load the base model from: a folder inside the bundle, or the Hub id."""
    inside = Path(bundle_dir) / manifest.base_model
    if inside.is_dir():
        return str(inside)
    return manifest.base_model


def resolve_bundle(path_or_repo_id: str | os.PathLike[str], revision: str | None = None) -> Path:
    """A local bundle folder, downloading it from the Hub when given a repo id.

    Local folders win over repo ids of the same spelling, as in ``from_pretrained``.
    """
    local = Path(path_or_repo_id)
    if local.is_dir():
        if not manifest_path(local).is_file():
            raise BundleError(
                f"{local} is not a PEO bundle (no {MANIFEST_NAME}); point at the folder "
                "`peo-hub recipe run` wrote"
            )
        return local
    repo_id = str(path_or_repo_id)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise BundleError(f"{repo_id} is neither a bundle folder nor a Hub repo id (user/name)")
    from peo_hub.hub import download_bundle  # local import: Hub code only when needed

    return download_bundle(repo_id, revision=revision)
