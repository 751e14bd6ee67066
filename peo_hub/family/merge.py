"""Writing one PEO point to files: an exact LoRA adapter, a mergekit YAML, or a full model.

Every PEO policy is ``θ₀ + Σ cᵢ Δᵢ`` (see :mod:`peo_hub.core.policy`), which has two standard,
exact file forms:

* one LoRA adapter of rank ``Σ rᵢ`` (the ``cat`` construction of :mod:`peo_hub.family.lora`),
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

Every writer here passes :func:`peo_hub.utils.fsutil.check_output` first: an existing output is
replaced only when it is an earlier export (it holds ``peo_merge.json``, or is a YAML file
with this module's header); anything else the user has there is refused, never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from peo_hub.bundle.manifest import ADAPTER_WEIGHTS, Bundle
from peo_hub.utils.errors import MergeError, OutputError
from peo_hub.utils.fsutil import (atomic_dir, atomic_write_json, atomic_write_text, check_names, check_output,
                                  overwrite_allowed)
from peo_hub.family.lora import cat_adapters, load_bundle_adapters, truncate_rank
from peo_hub.core.policy import Preference

if TYPE_CHECKING:
    from peo_hub.family.lora import Adapter

METADATA_NAME = "peo_merge.json"
#: The ledger owner of `peo-hub merge` outputs (peo_hub.utils.ledger).
OWNER = "merge"
OUTPUT_KINDS = ("adapter", "model", "yaml")
YAML_HEADER = "# PEO policy: base + sum_i c_i * delta_i (written by peo-hub"
YAML_STAMP = "# sha256 of the config below: "


def is_point_output(path: Path) -> bool:
    """Whether ``path`` is an earlier export of this module (and so may be replaced)."""
    if path.is_dir():
        return (path / METADATA_NAME).is_file()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().startswith(YAML_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


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


def _base_dtype(bundle: Bundle) -> str | None:
    config = Path(bundle.base) / "config.json"
    if not config.is_file():
        return None
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    dtype = raw.get("dtype") or raw.get("torch_dtype")
    return str(dtype) if isinstance(dtype, str) else None


def mergekit_config(bundle: Bundle, coefficients: Mapping[str, float],
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

    local = bundle.base_is_local
    base = show(bundle.base) if local else bundle.base_reference
    config: dict[str, Any] = {
        "merge_method": "task_arithmetic",
        "base_model": _model_reference(base, model_is_path=local),
        "parameters": {"normalize": False},
        "models": [
            {"model": _model_reference(base, show(bundle.adapter_dirs[a]), model_is_path=local),
             "parameters": {"weight": float(coefficients.get(a, 0.0))}}
            for a in bundle.aspects
        ],
        "dtype": "float32",
    }
    out_dtype = _base_dtype(bundle)
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

    header = [f"{YAML_HEADER} {__version__})"]
    if preference is not None:
        header.append("# " + "; ".join(_describe(preference)))
    header += [
        "# run:  HF_HUB_OFFLINE=1 mergekit-yaml THIS.yaml OUT_DIR --lora-merge-cache FRESH_CACHE_DIR",
        "# mergekit reuses cached base+adapter merges by path: use a fresh cache after retraining.",
    ]
    body = yaml.safe_dump(dict(config), sort_keys=False)
    return "\n".join(header) + "\n" + f"{YAML_STAMP}{_sha256(body)}\n" + body


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def yaml_edited(path: Path) -> bool:
    """Whether a YAML file of ours was changed since it was written (its stamp no longer matches).

    A single file has no folder to keep a ledger in, so it carries its own record: the
    sha256 of the config below the stamp line. A file without a stamp counts as edited.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    head, stamp, body = text.partition(YAML_STAMP)
    if not stamp:
        return True
    digest, _, body = body.partition("\n")
    return digest.strip() != _sha256(body)


# --------------------------------------------------------------------------- writers

def _metadata(bundle: Bundle, preference: Preference, kind: str, **extra: Any) -> dict[str, Any]:
    from peo_hub import __version__

    return {
        "kind": kind,
        "peo_hub_version": __version__,
        "formula": "base + sum_i coefficients[i] * delta_i",
        "coefficients": preference.coefficients,
        "weights": preference.weights,
        "alpha": preference.alpha,
        "formulation": preference.formulation,
        "source": {"bundle": bundle.source, "bundle_path": str(bundle.root),
                   "base_model": bundle.base_reference,
                   "adapters": {a: str(p) for a, p in bundle.adapter_dirs.items()}},
        **extra,
    }


def _card(bundle: Bundle, preference: Preference, kind: str, truncated: str = "") -> str:
    """A short model card: what this artefact is and its coefficients (``truncated``: how it was cut)."""
    relation, library = ("adapter", "peft") if kind == "adapter" else ("merge", "transformers")
    # The Hub validates base_model as a repo id, so a local base folder is named in the text only.
    base_line = ("" if bundle.base_is_local
                 else f"base_model: {bundle.base}\nbase_model_relation: {relation}\n")
    rows = "\n".join(
        f"| {a} | {'-' if preference.weights is None else f'{preference.weights[a]:g}'} | {c:g} |"
        for a, c in preference.coefficients.items())
    alpha = "" if preference.alpha is None else f" with extrapolation alpha = {preference.alpha:g}"
    what = ("a single LoRA adapter (rank = sum of the aspect ranks) whose delta is exactly"
            if kind == "adapter" else "a full model whose weights are exactly")
    if truncated:
        what = truncated
    return (
        "---\n"
        f"{base_line}"
        f"library_name: {library}\n"
        "tags: [peo, lora, mergekit]\n"
        "---\n\n"
        f"# PEO policy {preference.label()}\n\n"
        f"This is {what} `base + sum_i c_i * delta_i`, where `delta_i` is the LoRA task vector of "
        f"aspect `i` from the PEO bundle `{bundle.source}` (base model `{bundle.base_reference}`){alpha}.\n\n"
        "| aspect | weight | coefficient c |\n|---|---|---|\n"
        f"{rows}\n\n"
        f"Details are in `{METADATA_NAME}`.\n"
    )


def export_adapter(bundle: Bundle, preference: Preference, out_dir: str | os.PathLike[str],
                   adapters: list[Adapter] | None = None, max_rank: int | None = None) -> Path:
    """Write ``Σ cᵢ Δᵢ`` as one standard PEFT LoRA adapter (atomic), and return its folder.

    ``max_rank`` cuts every module to its best rank-``max_rank`` approximation (SVD of the
    exact delta, :func:`peo_hub.family.lora.truncate_rank`) for servers with a rank limit; the
    relative error per module is recorded in ``peo_merge.json``.
    """
    from peft import LoraConfig
    from safetensors.torch import save_file

    adapters = adapters if adapters is not None else load_bundle_adapters(bundle)
    state, rank, modules = cat_adapters(adapters, preference.coefficients)
    if not all(bool(torch.isfinite(t).all()) for t in state.values()):
        raise MergeError(f"the coefficients {preference.coefficients} overflow the adapter weights (inf/nan); "
                         "use coefficients of a sensible size (|c| <= 3 was evaluated)")
    extra: dict[str, Any] = {}
    truncated = ""
    if max_rank is not None and max_rank < rank:
        state, new_rank, errors = truncate_rank(state, max_rank)
        worst = max(errors.values(), default=0.0)
        extra = {"truncated_from_rank": rank, "max_rank": max_rank,
                 "relative_error": {"max": worst, "mean": sum(errors.values()) / max(len(errors), 1),
                                    "per_module": errors}}
        truncated = (f"a single LoRA adapter whose delta is, per module, the best rank-{new_rank} approximation (SVD; "
                     f"cut from rank {rank}, relative Frobenius error at most {worst:.3g}) of")
        rank = new_rank
    first = adapters[0].config
    config = LoraConfig(
        r=rank, lora_alpha=rank,  # scale 1: each cᵢ·sᵢ is already folded into B
        target_modules=modules, lora_dropout=0.0, bias="none",
        fan_in_fan_out=adapters[0].fan_in_fan_out, task_type=first.get("task_type"),
        base_model_name_or_path=bundle.base, inference_mode=True,
        revision=None if bundle.base_is_local else bundle.manifest.base_model_revision,
    )
    out = check_output(out_dir, "folder", ours=is_point_output, what="adapter output", owner=OWNER)
    with atomic_dir(out, owner=OWNER) as tmp:
        config.save_pretrained(str(tmp))
        save_file(state, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        atomic_write_json(tmp / METADATA_NAME, _metadata(bundle, preference, "adapter", rank=rank, **extra))
        atomic_write_text(tmp / "README.md", _card(bundle, preference, "adapter", truncated))
    return out


def run_mergekit(bundle: Bundle, preference: Preference, out_dir: str | os.PathLike[str]) -> Path:
    """Merge the policy into a full model folder (with tokenizer and card) via mergekit's API."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    config = mergekit_config(bundle, preference.coefficients)
    text = mergekit_yaml(config, preference)
    out = check_output(out_dir, "folder", ours=is_point_output, what="model output", owner=OWNER)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Next to the output (same disk), fresh per run: mergekit caches merges by path only.
    cache = Path(tempfile.mkdtemp(prefix=f".{out.name}.lora-cache-", dir=out.parent))
    try:
        with atomic_dir(out, owner=OWNER) as tmp:
            options = MergeOptions(lora_merge_cache=str(cache), lora_merge_dtype="float32",
                                   copy_tokenizer=True, write_model_card=False, quiet=True)
            run_merge(MergeConfiguration.model_validate(config), str(tmp), options=options,
                      config_source=text)
            if not (tmp / "tokenizer_config.json").is_file():  # e.g. a base without tokenizer files
                from transformers import AutoTokenizer

                AutoTokenizer.from_pretrained(bundle.base, revision=bundle.manifest.base_model_revision
                                              ).save_pretrained(str(tmp))
            atomic_write_text(tmp / "mergekit_config.yml", text)
            atomic_write_json(tmp / METADATA_NAME, _metadata(bundle, preference, "model"))
            atomic_write_text(tmp / "README.md", _card(bundle, preference, "model"))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out



def _is_yaml_path(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml") and not path.is_dir()


def write_yaml(bundle: Bundle, preference: Preference, output: str | os.PathLike[str]) -> Path:
    """The point's mergekit config as a YAML file (``output`` a ``.yaml`` path, or a folder for it)."""
    out = Path(output)
    target = out if _is_yaml_path(out) else out / f"{preference.label()}.yaml"
    _check_yaml_target(target)
    atomic_write_text(target, mergekit_yaml(mergekit_config(bundle, preference.coefficients), preference))
    return target


def check_point_output(output: str | os.PathLike[str], kind: str, max_rank: int | None = None) -> None:
    """Refuse an output that cannot take this kind of export, before any work is done."""
    if kind not in OUTPUT_KINDS:
        raise MergeError(f"unknown output kind {kind!r}; use one of: {', '.join(OUTPUT_KINDS)}")
    if max_rank is not None and kind != "adapter":
        raise MergeError("--max-rank cuts the rank of an exported adapter; use it with --as adapter")
    if max_rank is not None and max_rank < 1:
        raise MergeError(f"--max-rank must be at least 1, got {max_rank}")
    out = check_names(output, f"{kind} output")
    if kind == "yaml":
        if out.exists() and not out.is_dir() and not _is_yaml_path(out):
            raise MergeError(f"--output {out} exists and is not a .yaml file; give a .yaml file name or a folder")
        _check_yaml_target(out if _is_yaml_path(out) else out / "x.yaml")
        return
    check_output(out, "folder", ours=is_point_output, what=f"{kind} output", owner=OWNER)


def _check_yaml_target(target: Path) -> None:
    """An existing YAML output is replaced only when it is ours and unchanged (its stamp), or with --overwrite."""
    check_output(target, "file", ours=is_point_output, what="YAML output")
    if target.is_file() and not overwrite_allowed() and yaml_edited(target):
        raise OutputError(f"YAML output {target} was changed since peo-hub wrote it, and this write would replace "
                          "it; peo-hub keeps it: move it aside, choose another output, or pass --overwrite")


def write_point(bundle: Bundle, preference: Preference, output: str | os.PathLike[str], kind: str,
                adapters: "list[Adapter] | None" = None, max_rank: int | None = None) -> Path:
    """Materialise ``preference`` of ``bundle`` as an ``adapter``, ``model`` or ``yaml``; returns the path."""
    check_point_output(output, kind, max_rank)
    if kind == "adapter":
        return export_adapter(bundle, preference, output, adapters=adapters, max_rank=max_rank)
    if kind == "model":
        return run_mergekit(bundle, preference, output)
    return write_yaml(bundle, preference, output)
