"""The PEO bundle on disk: its file names, its manifest, and what makes one complete.

A bundle is what ``peo-hub recipe run`` (or ``compose``) writes and what a Hub repo holds::

    peo_config.json      the manifest (this module's Manifest)
    base/                the base model, only when users could not get it elsewhere
    adapters/<aspect>/   one standard PEFT LoRA adapter per aspect (+ training_info.json)
    merges/<point>.yaml  mergekit configs of the front's points
    front.json           every evaluated point (peo_hub.bundle.front), front.png the plot
    evaluations/         per-point records (scores of every reply, sample replies)
    baselines/morl/      MORL baseline adapters, when the recipe trains them
    peo_run.json         the recipe the run was started with (guards --resume)
    README.md            the model card

This module is the only one that knows these names and how to tell a whole bundle from a
broken one. It works on local folders only: turning a Hub repo id into a folder is
:mod:`peo_hub.publish.hub`'s job, done before a bundle is opened.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from peo_hub.utils.errors import BundleError, validation_message
from peo_hub.bundle.front import FRONT_NAME, Front, Preset, load_front
from peo_hub.utils.fsutil import atomic_write_json, read_json
from peo_hub.utils.ids import is_repo_id
from peo_hub.core.policy import DEFAULT_FORMULATION
from peo_hub.utils.ledger import LEDGER_NAME, Ledger
from peo_hub.utils.weights import check_finite, check_model_folder

MANIFEST_NAME = "peo_config.json"
#: An aspect name is a folder name of the bundle (adapters/<aspect>/) and a key of its manifest.
ASPECT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Bumped when a reader of this version could misread a newer bundle.
FORMAT_VERSION = 1
BASE_DIR = "base"
ADAPTERS_DIR = "adapters"
MERGES_DIR = "merges"
EVALUATIONS_DIR = "evaluations"
MORL_DIR = "baselines/morl"
PLOT_NAME = "front.png"
CARD_NAME = "README.md"
RUN_RECORD = "peo_run.json"
RUN_LOG = "logs/run.log"  # the libraries' own logs and per-step metrics of `recipe run`
LEGACY_RUN_RECORD = ".peo_run.json"  # written by peo-hub 0.1.0; read, never written

#: Top-level files and folders that belong to a bundle. A Hub repo of a bundle may also hold
#: files a person put there (notes, a .gitattributes, extra folders); a re-push deletes stale
#: files only inside this layout, never those (see :func:`in_bundle_layout`).
LAYOUT_FILES = (MANIFEST_NAME, FRONT_NAME, PLOT_NAME, CARD_NAME, RUN_RECORD)
LAYOUT_DIRS = (BASE_DIR, ADAPTERS_DIR, MERGES_DIR, EVALUATIONS_DIR, MORL_DIR.split("/")[0], RUN_LOG.split("/")[0])

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
TRAINING_INFO = "training_info.json"

__all__ = ["MANIFEST_NAME", "FORMAT_VERSION", "FRONT_NAME", "Manifest", "AspectEntry", "Bundle", "open_bundle",
           "load_manifest", "save_manifest", "adapter_complete", "validate_bundle"]


class AspectEntry(BaseModel):
    """One preference aspect: its adapter folder (relative to the bundle) and provenance."""

    model_config = ConfigDict(extra="allow")

    adapter: str = Field(description="adapter folder inside the bundle, e.g. adapters/helpful")
    judge: dict[str, Any] = Field(default_factory=dict, description="judge spec from the recipe")
    dataset: dict[str, Any] = Field(default_factory=dict, description="dataset spec + provenance")
    train_seconds: float | None = None
    train_metrics: dict[str, Any] = Field(default_factory=dict)
    source: dict[str, Any] | None = Field(
        default=None, description="composed adapters: where it came from (reference, Hub commit, weights sha256) "
                                  "and its LoRA settings")


class Manifest(BaseModel):
    """``peo_config.json``: the contract between training, loading, merging and the Hub."""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    peo_hub_version: str = ""
    base_model: str = Field(description="Hub id, or a folder inside the bundle (e.g. 'base')")
    base_model_revision: str | None = None
    base_source: dict[str, Any] | None = Field(
        default=None, description="where a base converted on the way in came from (a GGUF file: path, sha256, "
                                  "quantisation)")
    aspects: dict[str, AspectEntry]
    formulation: str = DEFAULT_FORMULATION
    lora: dict[str, Any] = Field(default_factory=dict)
    recipe: dict[str, Any] = Field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    front: dict[str, Any] = Field(default_factory=dict, description="summary of front.json")
    composed: dict[str, Any] | None = Field(
        default=None, description="set by `peo-hub compose`: the base as given, its resolved commit, and the "
                                  "compatibility report (modules some adapters leave at zero)")

    @property
    def aspect_names(self) -> list[str]:
        return list(self.aspects)

    def evaluated_range(self) -> tuple[float, float] | None:
        """The coefficient range the bundle's sweep evaluated, from ``recipe.sweep.alpha``.

        Weights lie in [0, 1], so the sweep covered ``cᵢ ∈ [0, 1 + max α]``; ``None`` when the
        manifest records no sweep.
        """
        sweep = (self.recipe or {}).get("sweep") or {}
        alphas = sweep.get("alpha") if isinstance(sweep, dict) else None
        if isinstance(alphas, (int, float)):
            alphas = [alphas]
        try:
            values = [float(a) for a in alphas or []]
        except (TypeError, ValueError):
            return None
        return (0.0, 1.0 + max(values)) if values else None


def load_manifest(bundle: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``peo_config.json`` of a local bundle folder.

    A manifest written by a newer peo-hub (a higher ``format_version``) is refused with the
    upgrade command instead of being half understood.
    """
    path = Path(bundle) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle} is not a PEO bundle (no {MANIFEST_NAME}); point at the folder "
                          "`peo-hub recipe run` wrote, or a Hub repo id")
    raw = read_json(path, "re-run `peo-hub recipe run` to rewrite it")
    if not isinstance(raw, dict):
        raise BundleError(f"{path} is not a JSON object; re-run `peo-hub recipe run` to rewrite it")
    version = raw.get("format_version", FORMAT_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise BundleError(f"{path} has bundle format {version}, newer than this peo-hub reads ({FORMAT_VERSION}); "
                          "upgrade: pip install -U peo-hub")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{path}: {validation_message(exc)}") from None


def save_manifest(bundle: str | os.PathLike[str], manifest: Manifest) -> None:
    atomic_write_json(Path(bundle) / MANIFEST_NAME, manifest.model_dump(mode="json", exclude_none=False))


def adapter_complete(folder: str | os.PathLike[str], training_info: bool = True) -> bool:
    """An adapter folder counts as finished only with its config, weights (and training record).

    Folders are renamed into place after everything is written, so this is belt and braces
    against a hand-copied or foreign folder.
    """
    names = (*ADAPTER_FILES, TRAINING_INFO) if training_info else ADAPTER_FILES
    return all((Path(folder) / name).is_file() for name in names)


def check_adapter_files(aspect: str, folder: Path, fix: str) -> None:
    """One aspect adapter's files are there and its weights are a whole safetensors file."""
    for name in ADAPTER_FILES:
        if not (folder / name).is_file():
            raise BundleError(f"adapter of aspect {aspect!r} ({folder}) has no {name}; {fix}")
    check_finite(folder / ADAPTER_WEIGHTS, f"adapter weights of aspect {aspect!r}", fix)


@dataclass
class Bundle:
    """A local bundle folder, opened: its manifest, where its base and adapters are."""

    root: Path
    manifest: Manifest
    base: str  # absolute local folder, or a Hub id
    adapter_dirs: dict[str, Path] = field(default_factory=dict)
    source: str = ""  # what the user passed (folder or repo id), for provenance
    _front: Front | None = field(default=None, repr=False)

    @property
    def aspects(self) -> list[str]:
        return self.manifest.aspect_names

    @property
    def base_is_local(self) -> bool:
        return Path(self.base).is_dir()

    @property
    def base_revision(self) -> str | None:
        return None if self.base_is_local else self.manifest.base_model_revision

    @property
    def base_reference(self) -> str:
        """The base as mergekit and ``base_model_name_or_path`` should name it."""
        if self.base_is_local:
            return self.base
        rev = self.manifest.base_model_revision
        return f"{self.base}@{rev}" if rev else self.base

    @property
    def hub_base_model(self) -> str | None:
        """The base's Hub id when users can get it from the Hub; ``None`` when it ships inside."""
        return None if self.base_is_local or not is_repo_id(self.base, namespace=True) else self.base

    @property
    def front(self) -> Front | None:
        """The bundle's evaluated front, ``None`` when it has none yet (a broken one raises)."""
        if self._front is None and (self.root / FRONT_NAME).is_file():
            self._front = load_front(self.root / FRONT_NAME)
        return self._front

    @property
    def presets(self) -> dict[str, Preset]:
        """Named preferences: the front's, else the copy in the manifest (one place decides)."""
        front = self.front
        if front is not None:
            return dict(front.presets)
        presets = {}
        for name, entry in self.manifest.presets.items():
            try:
                presets[name] = Preset.model_validate(entry)
            except ValidationError:
                continue  # a hand-edited preset that is not one is skipped, not fatal
        return presets


def _base_location(root: Path, manifest: Manifest) -> str:
    inside = root / manifest.base_model
    try:
        return str(inside.resolve()) if manifest.base_model and inside.is_dir() else manifest.base_model
    except OSError:
        return manifest.base_model


def open_bundle(folder: str | os.PathLike[str], source: str | None = None, check_weights: bool = True) -> Bundle:
    """Open a local bundle folder: manifest read, every aspect adapter present and whole.

    ``check_weights`` also verifies every adapter's safetensors structure (a header read),
    so a truncated file is one line here rather than a traceback inside PEFT.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BundleError(f"{root} is not a folder; point at the bundle `peo-hub recipe run` wrote, or a Hub repo id")
    root = root.resolve()
    if (root / LEDGER_NAME).is_file() and Ledger(root, "").interrupted():
        raise BundleError(f"{root}: the last write into it was stopped halfway, so its files are part old, part "
                          "new; run the command that wrote it again to finish (`peo-hub recipe run --resume`, "
                          "`compose`, `evaluate`)")
    manifest = load_manifest(root)
    if not manifest.aspects:
        raise BundleError(f"{root}: {MANIFEST_NAME} lists no aspects; train at least one adapter first")
    fix = "re-run `peo-hub recipe run --resume` to retrain it, or fix the adapter path in peo_config.json"
    adapter_dirs = {}
    for aspect, entry in manifest.aspects.items():
        adapter = (root / entry.adapter).resolve()
        if not adapter.is_dir():
            raise BundleError(f"bundle {root} lists adapter {entry.adapter} for aspect {aspect!r} but the folder is "
                              f"missing; {fix}")
        if check_weights:
            check_adapter_files(aspect, adapter, fix)
        adapter_dirs[aspect] = adapter
    return Bundle(root=root, manifest=manifest, base=_base_location(root, manifest), adapter_dirs=adapter_dirs,
                  source=str(source if source is not None else folder))


def validate_bundle(folder: str | os.PathLike[str]) -> Manifest:
    """Everything a Hub user needs is present and whole: manifest, adapters, base, front.

    Run before any network call by ``peo-hub push``, so a broken bundle never reaches the Hub.
    """
    bundle = open_bundle(folder)
    root = bundle.root
    for aspect, entry in bundle.manifest.aspects.items():
        if not bundle.adapter_dirs[aspect].is_relative_to(root):
            raise BundleError(f"adapter of aspect {aspect!r} ({entry.adapter}) lies outside the bundle; "
                              "adapters must live in the bundle folder to be published")
    manifest = bundle.manifest
    base = root / manifest.base_model
    if base.is_dir():
        if not base.resolve().is_relative_to(root):
            raise BundleError(f"base model {manifest.base_model} lies outside the bundle; copy it into "
                              f"{root}/{BASE_DIR} and set base_model to '{BASE_DIR}' in {MANIFEST_NAME}")
        check_model_folder(base, "base model")
    elif not is_repo_id(manifest.base_model, namespace=True):
        raise BundleError(f"base model {manifest.base_model!r} is neither a folder inside the bundle nor a Hub "
                          f"model id, so Hub users could not load it; copy it into {root}/{BASE_DIR} and set "
                          f"base_model to '{BASE_DIR}' in {MANIFEST_NAME}")
    _ = bundle.front  # a front.json that cannot be read is refused here, not by the Hub's users
    return manifest


def in_bundle_layout(path: str, base_folder: str | None = None) -> bool:
    """Whether a repo path (``a/b/c``, POSIX) lies in the bundle's layout: one of its files, or
    inside one of its folders (``base_folder``: the manifest's base folder when it is not ``base``).

    Why: ``peo-hub push`` deletes what the bundle no longer has, and must only ever delete
    files the bundle format owns; anything else in the repo was put there by a person.
    """
    top, _, rest = path.partition("/")
    if not rest:
        return path in LAYOUT_FILES
    folders = LAYOUT_DIRS + ((base_folder.strip("/").split("/")[0],) if base_folder else ())
    return top in folders


def read_training_info(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """An adapter's ``training_info.json`` (``{}`` when absent)."""
    path = Path(folder) / TRAINING_INFO
    if not path.is_file():
        return {}
    data = read_json(path, "delete the adapter folder and re-run with --resume to retrain it")
    return data if isinstance(data, dict) else {}

