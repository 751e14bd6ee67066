"""Materialising one PEO point: an exact LoRA adapter, a mergekit YAML, or a full model.

Every PEO policy is ``θ₀ + Σ cᵢ Δᵢ`` (see :mod:`peo_hub.policy`), which has two standard,
exact file forms:

* one LoRA adapter of rank ``Σ rᵢ`` (the ``cat`` construction of :mod:`peo_hub.lora`),
  for Hub publishing and multi-LoRA servers (vLLM, TGI);
* a mergekit ``task_arithmetic`` config over ``base+adapter`` entries with
  ``weight = cᵢ``: mergekit computes ``base + Σ cᵢ ((base + Δᵢ) − base)``, i.e. the same
  policy, as a full model. ``task_arithmetic`` (``normalize: false``) has no weight
  bounds, so negative and extrapolated coefficients are kept as they are.

Why not PEFT's ``add_weighted_adapter(combination_type="linear")``: it mixes A and B
separately, so its product has cross terms and is not the weighted sum of deltas.

mergekit traps handled here: ``base+adapter`` entries need a LoRA merge cache (we use a
fresh one per run, since mergekit reuses cached merges by *path*, which would go stale
after retraining an adapter in place), and paths holding ``+`` or ``@`` must use the
long (mapping) form of a model reference because the short form splits on them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from peo_hub.bundle import Manifest, load_manifest, resolve_base, resolve_bundle
from peo_hub.errors import BundleError, PEOError
from peo_hub.fsutil import atomic_dir, atomic_write_json, atomic_write_text
from peo_hub.policy import Preference, make_preference

if TYPE_CHECKING:
    from peo_hub.lora import Adapter

LOG = logging.getLogger("peo_hub")

METADATA_NAME = "peo_merge.json"
OUTPUT_KINDS = ("adapter", "model", "yaml")
# Coefficients with |c| above this were never evaluated by any default sweep; the merge is
# still exact, but the policy may be far off the measured front.
MAX_SAFE_COEFFICIENT = 3.0


class MergeError(PEOError):
    """A merge request that cannot be carried out as asked (output folder, kind, tools)."""


@dataclass
class BundleView:
    """What merging needs to know about a local bundle: its manifest, base and adapter folders."""

    root: Path
    manifest: Manifest
    base: str  # absolute local folder, or a Hub id
    adapter_dirs: dict[str, Path] = field(default_factory=dict)
    source: str = ""  # what the user passed (folder or repo id), for provenance

    @property
    def aspects(self) -> list[str]:
        return self.manifest.aspect_names

    @property
    def base_is_local(self) -> bool:
        return Path(self.base).is_dir()

    @property
    def base_reference(self) -> str:
        """The base as mergekit and ``base_model_name_or_path`` should name it."""
        if self.base_is_local:
            return self.base
        rev = self.manifest.base_model_revision
        return f"{self.base}@{rev}" if rev else self.base


def open_bundle(path_or_repo_id: str | os.PathLike[str], revision: str | None = None) -> BundleView:
    """Resolve (download if needed) a bundle and check that each aspect's adapter folder exists."""
    root = Path(resolve_bundle(path_or_repo_id, revision=revision)).resolve()
    manifest = load_manifest(root)
    if not manifest.aspects:
        raise BundleError(f"{root}: peo_config.json lists no aspects; train at least one adapter first")
    base = resolve_base(root, manifest)
    if Path(base).is_dir():
        base = str(Path(base).resolve())
    adapter_dirs = {}
    for aspect, entry in manifest.aspects.items():
        folder = (root / entry.adapter).resolve()
        if not folder.is_dir():
            raise BundleError(
                f"bundle {root} lists adapter {entry.adapter} for aspect {aspect!r} but the folder is "
                "missing; re-run `peo-hub recipe run --resume` or fix peo_config.json"
            )
        adapter_dirs[aspect] = folder
    return BundleView(root=root, manifest=manifest, base=base, adapter_dirs=adapter_dirs,
                      source=str(path_or_repo_id))


def load_adapters(view: BundleView, base_shapes: Mapping[str, Any] | None = None) -> list[Adapter]:
    """Read every aspect adapter and refuse incompatible ones (see :func:`peo_hub.lora.check_adapters`).

    Without ``base_shapes``, a local base's safetensors headers are used, so adapters trained
    on another base are caught before any model is loaded.
    """
    from peo_hub.lora import base_shapes_from_checkpoint, check_adapters, read_adapters

    adapters = read_adapters(view.adapter_dirs.items())
    if base_shapes is None and view.base_is_local:
        base_shapes = base_shapes_from_checkpoint(view.base)
    check_adapters(adapters, view.manifest.base_model, base_shapes)
    return adapters


# --------------------------------------------------------------------------- guard rails

def evaluated_range(manifest: Manifest) -> tuple[float, float] | None:
    """The coefficient range the bundle's sweep evaluated, from ``recipe.sweep.alpha``.

    Weights lie in [0, 1], so the sweep covered ``cᵢ ∈ [0, 1 + max α]``; ``None`` when the
    manifest records no sweep.
    """
    sweep = (manifest.recipe or {}).get("sweep") or {}
    alphas = sweep.get("alpha") if isinstance(sweep, Mapping) else None
    if isinstance(alphas, (int, float)):
        alphas = [alphas]
    try:
        values = [float(a) for a in alphas or []]
    except (TypeError, ValueError):
        return None
    if not values:
        return None
    return 0.0, 1.0 + max(values)


def coefficient_warning(manifest: Manifest, coefficients: Mapping[str, float]) -> str | None:
    """A one-line warning when coefficients leave the evaluated (or a sane) range, else ``None``."""
    far = {a: c for a, c in coefficients.items() if abs(c) > MAX_SAFE_COEFFICIENT}
    if far:
        a, c = next(iter(far.items()))
        return (f"coefficient {a}={c:g} is beyond |c| <= {MAX_SAFE_COEFFICIENT:g}; the policy is exact "
                "but far from anything evaluated, expect degraded outputs")
    bounds = evaluated_range(manifest)
    if bounds is not None:
        lo, hi = bounds
        outside = {a: c for a, c in coefficients.items() if c < lo - 1e-9 or c > hi + 1e-9}
        if outside:
            a, c = next(iter(outside.items()))
            return (f"coefficient {a}={c:g} is outside the evaluated range [{lo:g}, {hi:g}] of this "
                    "bundle's sweep; its quality was never measured")
    return None


def warn_coefficients(manifest: Manifest, coefficients: Mapping[str, float]) -> None:
    """Log :func:`coefficient_warning` (one line on stderr under the CLI, catchable via logging)."""
    message = coefficient_warning(manifest, coefficients)
    if message:
        LOG.warning("warning: %s", message)


# --------------------------------------------------------------------------- mergekit YAML

def _unsafe_in_short_form(text: str, is_path: bool) -> bool:
    """Whether mergekit's ``"model+lora"`` / ``"model@revision"`` string parser would misread it."""
    return any(ch in text for ch in '+" ') or (is_path and "@" in text)


def _model_reference(model: str, lora: str | None = None, model_is_path: bool = True
                     ) -> str | dict[str, Any]:
    """A mergekit model reference: ``"base+adapter"`` when safe, the mapping form otherwise."""
    if not _unsafe_in_short_form(model, model_is_path) and not _unsafe_in_short_form(lora or "", True):
        return f"{model}+{lora}" if lora else model
    ref: dict[str, Any] = {"model": {"path": model}}
    if not model_is_path and "@" in model:
        path, rev = model.split("@", 1)
        ref["model"] = {"path": path, "revision": rev}
    if lora:
        ref["lora"] = {"path": lora}
    return ref


def _base_dtype(view: BundleView) -> str | None:
    config = Path(view.base) / "config.json"
    if not config.is_file():
        return None
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    dtype = raw.get("dtype") or raw.get("torch_dtype")
    return str(dtype) if isinstance(dtype, str) else None


def mergekit_config(view: BundleView, coefficients: Mapping[str, float],
                    relative_to: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The mergekit ``task_arithmetic`` config of the policy ``base + Σ cᵢ Δᵢ``.

    Paths are absolute so the YAML runs from anywhere; pass ``relative_to`` (e.g. the bundle
    folder, for ``merges/*.yaml`` stored inside a bundle) to write them relative to that
    folder instead, to be run from there. The math runs in float32; the output keeps the
    base's dtype when it is known. The tokenizer is copied from ``base_model`` (mergekit's
    default; ``tokenizer_source`` is left out on purpose because it rebuilds the vocabulary
    and resizes embeddings to ``len(tokenizer)``, which changes padded-vocabulary models).
    """
    def show(path: Path | str) -> str:
        if relative_to is None or not Path(path).is_dir():
            return str(path)
        relative = os.path.relpath(Path(path), Path(relative_to).resolve())
        # "./" marks it local: mergekit's card writer asks the Hub about any single-segment
        # path such as "base" (and fails offline); "./base" is never a valid repo id.
        return relative if relative.startswith(".") else f"./{relative}"

    local = view.base_is_local
    base = show(view.base) if local else view.base_reference
    config: dict[str, Any] = {
        "merge_method": "task_arithmetic",
        "base_model": _model_reference(base, model_is_path=local),
        "parameters": {"normalize": False},
        "models": [
            {"model": _model_reference(base, show(view.adapter_dirs[a]), model_is_path=local),
             "parameters": {"weight": float(coefficients.get(a, 0.0))}}
            for a in view.aspects
        ],
        "dtype": "float32",
    }
    out_dtype = _base_dtype(view)
    if out_dtype and out_dtype != "float32":
        config["out_dtype"] = out_dtype
    return config


def _describe(preference: Preference) -> list[str]:
    lines = []
    for aspect, c in preference.coefficients.items():
        w = f", w={preference.weights[aspect]:g}" if preference.weights else ""
        lines.append(f"{aspect}: c={c:g}{w}")
    if preference.alpha is not None:
        lines.append(f"alpha={preference.alpha:g}")
    return lines


def mergekit_yaml(config: Mapping[str, Any], preference: Preference | None = None) -> str:
    """The YAML text of ``config`` with a header saying what it is and how to run it."""
    import yaml

    from peo_hub import __version__

    header = [f"# PEO policy: base + sum_i c_i * delta_i (written by peo-hub {__version__})"]
    if preference is not None:
        header.append("# " + "; ".join(_describe(preference)))
    header += [
        "# run:  HF_HUB_OFFLINE=1 mergekit-yaml THIS.yaml OUT_DIR --lora-merge-cache FRESH_CACHE_DIR",
        "# mergekit reuses cached base+adapter merges by path: use a fresh cache after retraining.",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(dict(config), sort_keys=False)


# --------------------------------------------------------------------------- writers

def _metadata(view: BundleView, preference: Preference, kind: str, **extra: Any) -> dict[str, Any]:
    from peo_hub import __version__

    return {
        "kind": kind,
        "peo_hub_version": __version__,
        "formula": "base + sum_i coefficients[i] * delta_i",
        "coefficients": preference.coefficients,
        "weights": preference.weights,
        "alpha": preference.alpha,
        "formulation": preference.formulation,
        "source": {"bundle": view.source, "bundle_path": str(view.root),
                   "base_model": view.base_reference,
                   "adapters": {a: str(p) for a, p in view.adapter_dirs.items()}},
        **extra,
    }


def _card(view: BundleView, preference: Preference, kind: str) -> str:
    """A short model card: what this artefact is and its coefficients."""
    relation, library = ("adapter", "peft") if kind == "adapter" else ("merge", "transformers")
    # The Hub validates base_model as a repo id, so a local base folder is named in the text only.
    base_line = ("" if view.base_is_local
                 else f"base_model: {view.base}\nbase_model_relation: {relation}\n")
    rows = "\n".join(
        f"| {a} | {'-' if preference.weights is None else f'{preference.weights[a]:g}'} | {c:g} |"
        for a, c in preference.coefficients.items())
    alpha = "" if preference.alpha is None else f" with extrapolation alpha = {preference.alpha:g}"
    what = ("a single LoRA adapter (rank = sum of the aspect ranks) whose delta is exactly"
            if kind == "adapter" else "a full model whose weights are exactly")
    return (
        "---\n"
        f"{base_line}"
        f"library_name: {library}\n"
        "tags: [peo, lora, mergekit]\n"
        "---\n\n"
        f"# PEO policy {preference.label()}\n\n"
        f"This is {what} `base + sum_i c_i * delta_i`, where `delta_i` is the LoRA task vector of "
        f"aspect `i` from the PEO bundle `{view.source}` (base model `{view.base_reference}`){alpha}.\n\n"
        "| aspect | weight | coefficient c |\n|---|---|---|\n"
        f"{rows}\n\n"
        f"Details are in `{METADATA_NAME}`.\n"
    )


def export_adapter(view: BundleView, preference: Preference, out_dir: str | os.PathLike[str],
                   adapters: list[Adapter] | None = None) -> Path:
    """Write ``Σ cᵢ Δᵢ`` as one standard PEFT LoRA adapter (atomic), and return its folder."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    from peo_hub.lora import WEIGHTS_NAME, cat_adapters

    adapters = adapters if adapters is not None else load_adapters(view)
    state, rank, modules = cat_adapters(adapters, preference.coefficients)
    first = adapters[0].config
    config = LoraConfig(
        r=rank, lora_alpha=rank,  # scale 1: each cᵢ·sᵢ is already folded into B
        target_modules=modules, lora_dropout=0.0, bias="none",
        fan_in_fan_out=adapters[0].fan_in_fan_out, task_type=first.get("task_type"),
        base_model_name_or_path=view.base, inference_mode=True,
        revision=None if view.base_is_local else view.manifest.base_model_revision,
    )
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        config.save_pretrained(str(tmp))
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        atomic_write_json(tmp / METADATA_NAME, _metadata(view, preference, "adapter", rank=rank))
        atomic_write_text(tmp / "README.md", _card(view, preference, "adapter"))
    return out


def run_mergekit(view: BundleView, preference: Preference, out_dir: str | os.PathLike[str]) -> Path:
    """Merge the policy into a full model folder (with tokenizer and card) via mergekit's API."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    config = mergekit_config(view, preference.coefficients)
    text = mergekit_yaml(config, preference)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Next to the output (same disk), fresh per run: mergekit caches merges by path only.
    cache = Path(tempfile.mkdtemp(prefix=f".{out.name}.lora-cache-", dir=out.parent))
    try:
        with atomic_dir(out) as tmp:
            options = MergeOptions(lora_merge_cache=str(cache), lora_merge_dtype="float32",
                                   copy_tokenizer=True, write_model_card=False, quiet=True)
            run_merge(MergeConfiguration.model_validate(config), str(tmp), options=options,
                      config_source=text)
            if not (tmp / "tokenizer_config.json").is_file():  # e.g. a base without tokenizer files
                from transformers import AutoTokenizer

                AutoTokenizer.from_pretrained(view.base, revision=view.manifest.base_model_revision
                                              ).save_pretrained(str(tmp))
            atomic_write_text(tmp / "mergekit_config.yml", text)
            atomic_write_json(tmp / METADATA_NAME, _metadata(view, preference, "model"))
            atomic_write_text(tmp / "README.md", _card(view, preference, "model"))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- the CLI verb

def _is_yaml_path(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml") and not path.is_dir()


def check_output(output: str | os.PathLike[str], as_: str) -> None:
    """Refuse outputs that would destroy something that is not ours, before any work is done.

    Folders are replaced atomically as a whole, so an existing non-empty folder is only
    overwritten when it is an earlier ``peo-hub merge`` output (it holds ``peo_merge.json``).
    A YAML file may be overwritten (it is one named file).
    """
    out = Path(output)
    if as_ == "yaml":
        if _is_yaml_path(out):
            if out.parent.exists() and not out.parent.is_dir():
                raise MergeError(f"cannot write {out}: {out.parent} is a file; choose another --output")
            return
        if out.exists() and not out.is_dir():
            raise MergeError(f"--output {out} exists and is a file; give a .yaml file name or a folder")
        return
    if out.exists() and not out.is_dir():
        raise MergeError(f"--output {out} exists and is a file; choose a folder name for the {as_}")
    if out.is_dir() and any(out.iterdir()) and not (out / METADATA_NAME).is_file():
        raise MergeError(
            f"--output {out} already exists and is not empty (and is not an earlier peo-hub merge "
            "output); choose a new folder or remove it"
        )


def merge_command(bundle: str | os.PathLike[str], output: str | os.PathLike[str], as_: str,
                  weights: Mapping[str, float] | None = None, alpha: float = 0.0,
                  coefficients: Mapping[str, float] | None = None) -> Path:
    """``peo-hub merge``: materialise one preference point of ``bundle`` as an adapter, model or YAML.

    Everything the user can get wrong is checked before anything is written.
    """
    if as_ not in OUTPUT_KINDS:
        raise MergeError(f"unknown output kind {as_!r}; use one of: {', '.join(OUTPUT_KINDS)}")
    check_output(output, as_)
    view = open_bundle(bundle)
    preference = make_preference(view.aspects, weights=weights, alpha=alpha,
                                 coefficients=coefficients, formulation=view.manifest.formulation)
    adapters = load_adapters(view)
    warn_coefficients(view.manifest, preference.coefficients)
    out = Path(output)
    if as_ == "adapter":
        return export_adapter(view, preference, out, adapters=adapters)
    if as_ == "model":
        return run_mergekit(view, preference, out)
    target = out if _is_yaml_path(out) else out / f"{preference.label()}.yaml"
    atomic_write_text(target, mergekit_yaml(mergekit_config(view, preference.coefficients), preference))
    return target
