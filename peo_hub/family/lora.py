"""LoRA adapters as plain tensors: reading, compatibility checks, and the exact ``cat`` combination.

Why a module of its own: the live model, the adapter export and the mergekit YAML all rest
on the same facts about the aspect adapters (which modules they touch, their per-module
scale ``lora_alpha / r``, that they were trained on this base). Reading those facts from
the files, without loading any model, lets ``peo-hub merge --as adapter|yaml`` refuse a
bad bundle in milliseconds and keeps one definition of "the delta of adapter i"::

    Δᵢ[m] = sᵢ[m] · Bᵢ[m] @ Aᵢ[m],   sᵢ[m] = alphaᵢ[m] / rᵢ[m]   (or / √rᵢ[m] with rsLoRA)

The PEO policy ``W + Σ cᵢ Δᵢ`` is then *one* LoRA adapter of rank ``Σ rᵢ``:
``B = [c₁s₁B₁ … cₙsₙBₙ]``, ``A = [A₁; …; Aₙ]``, scale 1 (``lora_alpha = r``). This is exact,
unlike PEFT's ``add_weighted_adapter(combination_type="linear")``, which mixes A and B
separately and so adds cross terms.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import torch

from peo_hub.bundle.manifest import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from peo_hub.utils.errors import BundleError
from peo_hub.utils.fsutil import read_json
from peo_hub.utils.ids import is_repo_id
from peo_hub.utils.weights import module_shapes, read_tensors

if TYPE_CHECKING:
    from peo_hub.bundle.manifest import Bundle

PEFT_PREFIX = "base_model.model."

# PEFT state-dict suffixes of plain LoRA, by role. Anything else (DoRA magnitudes, LoRA
# biases, modules_to_save copies, trainable tokens) is not a low-rank delta and cannot be
# combined linearly, so it is refused.
_SUFFIXES = {
    ".lora_A.weight": ("A", "linear"),
    ".lora_B.weight": ("B", "linear"),
    ".lora_embedding_A": ("A", "embedding"),
    ".lora_embedding_B": ("B", "embedding"),
}
# Config switches under which the adapter is no longer ``W + s·B@A`` on each module, and why
# that stops it from being summed with other deltas (said to the user when it is refused).
NONLINEAR_REASONS = {
    "use_dora": "DoRA rescales every column of W + BA to a learned magnitude, so its change depends on the "
                "base weight and does not add",
    "lora_bias": "it trains a bias vector beside B, outside the low-rank product",
    "modules_to_save": "it stores whole replacement copies of those modules, which replace weights instead of "
                       "adding to them",
    "trainable_token_indices": "it trains whole embedding rows, which replace rows instead of adding to them",
    "target_parameters": "it adapts raw parameters (e.g. MoE experts), which PEO does not combine",
    "use_qalora": "QA-LoRA pools its input groups, so its delta is not B @ A",
    "use_bdlora": "its block-diagonal factors are not a plain B @ A",
    "velora_config": "VeLoRA changes the forward pass, not only the weights",
    "kasa_config": "KaSA rescales singular values of the base weight",
    "monteclora_config": "MonteCLoRA samples its factors, so its delta is not fixed",
    "arrow_config": "Arrow routes between adapters per token",
    "alora_invocation_tokens": "activated LoRA applies only after its invocation tokens",
}
_NONLINEAR_OPTIONS = tuple(NONLINEAR_REASONS)


@dataclass(frozen=True)
class LoraModule:
    """One adapted module: ``Δ = scale · B @ A`` (transposed by PEFT for embeddings/Conv1D)."""

    A: torch.Tensor  # (r, in_features) or (r, num_embeddings)
    B: torch.Tensor  # (out_features, r) or (embedding_dim, r)
    scale: float
    kind: str  # "linear" or "embedding"

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])


@dataclass
class Adapter:
    """A PEFT LoRA adapter folder read into tensors, keyed by module name in the base model."""

    name: str
    path: Path
    config: dict
    modules: dict[str, LoraModule] = field(default_factory=dict)

    @property
    def base_model_name(self) -> str | None:
        return self.config.get("base_model_name_or_path")

    @property
    def fan_in_fan_out(self) -> bool:
        return bool(self.config.get("fan_in_fan_out", False))


def _module_scale(config: Mapping, module: str, rank: int) -> float:
    """``lora_alpha / r`` for this module, honouring ``alpha_pattern`` and rsLoRA as PEFT does."""
    from peft.utils.other import get_pattern_key  # PEFT's own rule, so both agree on every module

    alpha = config.get("lora_alpha", 8)
    pattern = config.get("alpha_pattern") or {}
    key = get_pattern_key(list(pattern), module)
    alpha = pattern.get(key, alpha)
    if config.get("use_rslora"):
        return float(alpha) / math.sqrt(rank)
    return float(alpha) / rank


def _declared_rank(config: Mapping, module: str) -> int | None:
    """The rank ``adapter_config.json`` gives ``module`` (``rank_pattern`` first, as PEFT reads it)."""
    from peft.utils.other import get_pattern_key

    pattern = config.get("rank_pattern") or {}
    key = get_pattern_key(list(pattern), module)
    rank = pattern.get(key, config.get("r"))
    return int(rank) if isinstance(rank, (int, float)) and not isinstance(rank, bool) else None


def _check_config(name: str, config: object, where: Path) -> dict:
    """The adapter config as PEFT would need it, or one line naming the bad field."""
    fix = f"re-save the adapter of aspect {name!r} with PEFT"
    if not isinstance(config, dict):
        raise BundleError(f"{where} is a JSON {type(config).__name__}, not an adapter config object; {fix}")
    for key in ("lora_alpha", "r"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise BundleError(f"{where}: {key} is {value!r}, not a positive number; {fix}")
    for key in ("alpha_pattern", "rank_pattern"):
        pattern = config.get(key) or {}
        if not isinstance(pattern, dict) or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
                for v in pattern.values()):
            raise BundleError(f"{where}: {key} must map module names to positive numbers; {fix}")
    return config


def read_adapter(name: str, path: str | os.PathLike[str]) -> Adapter:
    """Read ``adapter_config.json`` + ``adapter_model.safetensors`` of one aspect, validating it."""
    path = Path(path)
    config_file, weights_file = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not config_file.is_file() or not weights_file.is_file():
        missing = ADAPTER_CONFIG if not config_file.is_file() else ADAPTER_WEIGHTS
        raise BundleError(
            f"adapter for aspect {name!r} at {path} has no {missing}; re-run training for that "
            "aspect or fix the adapter path in peo_config.json"
        )
    config = _check_config(name, read_json(config_file, f"re-run training for aspect {name!r} to rewrite it"),
                           config_file)
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise BundleError(
            f"adapter for aspect {name!r} is a {config.get('peft_type')} adapter; PEO needs plain "
            "LoRA adapters (their deltas add linearly)"
        )
    for option in _NONLINEAR_OPTIONS:
        if config.get(option):
            raise BundleError(
                f"adapter for aspect {name!r} uses {option}={config[option]!r}, which is not a plain "
                f"low-rank delta and cannot be combined linearly ({NONLINEAR_REASONS[option]}); "
                "use a plain LoRA adapter (retrain it without that option)"
            )
    tensors = read_tensors(weights_file, f"adapter weights of aspect {name!r}",
                           f"re-run training for aspect {name!r} (`peo-hub recipe run --resume`)")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    kinds: dict[str, str] = {}
    for key, tensor in tensors.items():
        for suffix, (role, kind) in _SUFFIXES.items():
            if key.endswith(suffix):
                module = key[: -len(suffix)]
                module = module[len(PEFT_PREFIX):] if module.startswith(PEFT_PREFIX) else module
                parts.setdefault(module, {})[role] = tensor
                kinds[module] = kind
                break
        else:
            if key.endswith(".base_layer.weight"):  # PEFT's save_embedding_layers copy of a base weight
                raise BundleError(
                    f"adapter for aspect {name!r} holds a full copy of the base weight {key!r} (PEFT saves one when "
                    "embeddings are adapted), which would replace the base's instead of adding to it; re-save the "
                    "adapter with save_pretrained(..., save_embedding_layers=False)"
                )
            raise BundleError(
                f"adapter for aspect {name!r} holds tensor {key!r}, which is not a LoRA A/B "
                "matrix; PEO combines plain LoRA deltas only (no DoRA, biases or saved modules)"
            )
    adapter = Adapter(name=name, path=path, config=config)
    for module, ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise BundleError(f"adapter for aspect {name!r} has only lora_{next(iter(ab))} for {module}; "
                              "the file is incomplete, re-save the adapter")
        A, B = ab["A"], ab["B"]
        if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[1]:
            raise BundleError(
                f"adapter for aspect {name!r}: module {module} has A {tuple(A.shape)} and "
                f"B {tuple(B.shape)}; only 2-D low-rank pairs (Linear/Embedding) are supported"
            )
        declared = _declared_rank(config, module)
        if declared is not None and declared != A.shape[0]:
            raise BundleError(
                f"adapter for aspect {name!r}: adapter_config.json gives {module} rank {declared} (r / rank_pattern) "
                f"but its weights have rank {A.shape[0]}, so PEFT could not load it; re-save the adapter with PEFT"
            )
        adapter.modules[module] = LoraModule(A=A, B=B, scale=_module_scale(config, module, A.shape[0]),
                                             kind=kinds[module])
    if not adapter.modules:
        raise BundleError(f"adapter for aspect {name!r} at {path} has no LoRA weights")
    return adapter


def _expected_shapes(module: LoraModule, base_shape: Sequence[int], fan_in_fan_out: bool) -> bool:
    """Whether A and B fit a base weight of ``base_shape`` (PEFT's orientation per layer kind)."""
    if module.kind == "embedding":  # weight (num_embeddings, dim); A (r, num), B (dim, r)
        return tuple(base_shape) == (module.A.shape[1], module.B.shape[0])
    out_in = (module.B.shape[0], module.A.shape[1])
    return tuple(base_shape) == (out_in[::-1] if fan_in_fan_out else out_in)


def check_adapters(adapters: Sequence[Adapter], base_model: str,
                   base_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
    """Refuse aspect adapters that cannot be summed on this base, with one line naming the fix.

    ``base_shapes`` maps module names (``model.layers.0.self_attn.q_proj``) to weight shapes;
    when given, every adapted module must exist in the base with a matching shape (the
    reliable test of "trained on this base"). Without it, the adapters must at least agree
    with each other. Different target modules per aspect are fine: a module one adapter
    does not touch simply has a zero delta for it, in every realisation.
    """
    if not adapters:
        raise BundleError("the bundle lists no aspects; train at least one adapter first")
    fan = {a.fan_in_fan_out for a in adapters}
    if len(fan) > 1:
        raise BundleError("aspect adapters disagree on fan_in_fan_out; they were trained on different "
                          "base architectures, retrain them on the same base")
    for adapter in adapters:
        declared = adapter.base_model_name or ""
        if (is_repo_id(base_model, namespace=True) and is_repo_id(declared, namespace=True)
                and not Path(declared).exists()
                and declared.lower() != base_model.lower()):
            raise BundleError(
                f"adapter for aspect {adapter.name!r} was trained on {declared}, but the bundle's base "
                f"model is {base_model}; retrain it on {base_model} or fix base_model in peo_config.json"
            )
    seen: dict[str, tuple[str, LoraModule]] = {}
    for adapter in adapters:
        for module, lora in adapter.modules.items():
            if base_shapes is not None:
                shape = base_shapes.get(module)
                if shape is None:
                    raise BundleError(
                        f"adapter for aspect {adapter.name!r} adapts {module}, which the base model "
                        f"{base_model} does not have; it was trained on a different base, retrain it"
                    )
                if not _expected_shapes(lora, shape, adapter.fan_in_fan_out):
                    raise BundleError(
                        f"adapter for aspect {adapter.name!r} does not fit {module} of {base_model} "
                        f"(weight {tuple(shape)}, adapter A {tuple(lora.A.shape)} B {tuple(lora.B.shape)}); "
                        "it was trained on a different base, retrain it"
                    )
            if module in seen:
                other_name, other = seen[module]
                if (other.kind != lora.kind or other.A.shape[1] != lora.A.shape[1]
                        or other.B.shape[0] != lora.B.shape[0]):
                    raise BundleError(
                        f"adapters {other_name!r} and {adapter.name!r} disagree on the shape of {module}; "
                        "they were trained on different base models, retrain them on the same base"
                    )
            else:
                seen[module] = (adapter.name, lora)


def base_shapes_from_model(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Module -> weight shape of a loaded (not yet PEFT-wrapped) model."""
    shapes = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            shapes[name] = tuple(weight.shape)
    return shapes


def cat_adapters(adapters: Sequence[Adapter], coefficients: Mapping[str, float]
                 ) -> tuple[dict[str, torch.Tensor], int, list[str]]:
    """The exact single-adapter form of ``Σ cᵢ Δᵢ``: (PEFT state dict, rank, module names).

    Every module gets the same rank ``R`` (the largest per-module sum of ranks); a module an
    adapter does not touch contributes an all-zero block, so ``B @ A`` is still exactly
    ``Σ cᵢ sᵢ Bᵢ Aᵢ``. The returned tensors are meant for ``lora_alpha = R`` (scale 1). A
    uniform rank keeps the file loadable by servers that require one rank per adapter.
    """
    modules = sorted({m for a in adapters for m in a.modules})
    rank = max(sum(a.modules[m].rank for a in adapters if m in a.modules) for m in modules)
    state: dict[str, torch.Tensor] = {}
    for module in modules:
        present = [(a, a.modules[module]) for a in adapters if module in a.modules]
        first = present[0][1]
        dtype = torch.promote_types(first.A.dtype, torch.float32)
        A = torch.zeros(rank, first.A.shape[1], dtype=dtype)
        B = torch.zeros(first.B.shape[0], rank, dtype=dtype)
        row = 0
        for adapter, lora in present:
            coef = float(coefficients.get(adapter.name, 0.0))
            A[row: row + lora.rank] = lora.A.to(dtype)
            B[:, row: row + lora.rank] = lora.B.to(dtype) * (coef * lora.scale)
            row += lora.rank
        a_key, b_key = ((".lora_embedding_A", ".lora_embedding_B") if first.kind == "embedding"
                        else (".lora_A.weight", ".lora_B.weight"))
        state[PEFT_PREFIX + module + a_key] = A.contiguous()
        state[PEFT_PREFIX + module + b_key] = B.contiguous()
    return state, rank, modules


def read_adapters(named_paths: Iterable[tuple[str, Path]]) -> list[Adapter]:
    """Read several aspect adapters (``(aspect, folder)`` pairs), in order."""
    return [read_adapter(name, path) for name, path in named_paths]


def load_bundle_adapters(bundle: "Bundle", base_shapes: Mapping[str, Sequence[int]] | None = None) -> list[Adapter]:
    """Read every aspect adapter of a bundle and refuse incompatible ones (:func:`check_adapters`).

    Without ``base_shapes``, a local base's safetensors headers are used, so adapters trained
    on another base are caught before any model is loaded.
    """
    adapters = read_adapters(bundle.adapter_dirs.items())
    if base_shapes is None and bundle.base_is_local:
        base_shapes = module_shapes(bundle.base)
    check_adapters(adapters, bundle.manifest.base_model, base_shapes)
    return adapters


# --------------------------------------------------------------------------- describing adapters


def module_group(module: str) -> str:
    """``model.layers.3.self_attn.q_proj`` -> ``self_attn.q_proj``: the module's name in every layer."""
    parts = module.split(".")
    digits = [i for i, part in enumerate(parts) if part.isdigit()]
    return ".".join(parts[digits[-1] + 1:]) if digits and digits[-1] + 1 < len(parts) else module


def scale_groups(adapter: Adapter) -> list[tuple[float, int, list[str]]]:
    """(per-module scale, rank, module groups) of an adapter, largest group first.

    The scale is what :func:`_module_scale` folded in (``alpha_pattern``, ``rank_pattern`` and
    rsLoRA included), so a report built on this shows exactly what every realisation uses.
    """
    groups: dict[tuple[float, int], set[str]] = {}
    counts: dict[tuple[float, int], int] = {}
    for module, lora in adapter.modules.items():
        key = (round(lora.scale, 6), lora.rank)
        groups.setdefault(key, set()).add(module_group(module))
        counts[key] = counts.get(key, 0) + 1
    order = sorted(groups, key=lambda k: (-counts[k], k))
    return [(scale, rank, sorted(groups[(scale, rank)])) for scale, rank in order]


def partial_modules(adapters: Sequence[Adapter]) -> dict[str, list[str]]:
    """Module group -> the adapters that adapt it, for groups not every adapter adapts.

    Those modules get an all-zero delta from the other adapters in every realisation (live
    PEFT layers simply have no LoRA there; the exports write zero blocks).
    """
    names = [a.name for a in adapters]
    seen: dict[str, set[str]] = {}
    for adapter in adapters:
        for module in adapter.modules:
            seen.setdefault(module_group(module), set()).add(adapter.name)
    return {group: [n for n in names if n in who] for group, who in sorted(seen.items()) if len(who) < len(names)}


# --------------------------------------------------------------------------- rank truncation


def truncate_rank(state: Mapping[str, torch.Tensor], max_rank: int
                  ) -> tuple[dict[str, torch.Tensor], int, dict[str, float]]:
    """The best rank-``max_rank`` approximation of every module's delta ``B @ A`` (Eckart-Young).

    ``state`` is a :func:`cat_adapters` state dict (scale 1). Per module, ``B = Q_B R_B`` and
    ``Aᵀ = Q_A R_A`` (thin QR), so ``B @ A = Q_B (R_B R_Aᵀ) Q_Aᵀ`` and one SVD of the small
    ``R x R`` core gives the singular vectors of the full delta without ever forming it. The
    kept singular values are split evenly between the two factors. Returns the new state dict,
    its rank, and per module the relative Frobenius error ``‖Δ - Δₖ‖ / ‖Δ‖`` (0 for a zero delta).
    """
    if max_rank < 1:
        raise BundleError(f"--max-rank must be at least 1, got {max_rank}")
    out: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    ranks = []
    for a_key in [k for k in state if k.endswith((".lora_A.weight", ".lora_embedding_A"))]:
        b_key = a_key.replace(".lora_A.", ".lora_B.") if a_key.endswith(".weight") else a_key[:-1] + "B"
        if max_rank >= state[a_key].shape[0]:  # nothing to cut: keep the exact factors
            out[a_key], out[b_key] = state[a_key], state[b_key]
            errors[a_key[len(PEFT_PREFIX):].rsplit(".lora_", 1)[0]] = 0.0
            ranks.append(int(state[a_key].shape[0]))
            continue
        A, B = state[a_key].double(), state[b_key].double()
        k = max_rank
        q_b, r_b = torch.linalg.qr(B)
        q_a, r_a = torch.linalg.qr(A.T)
        u, s, vh = torch.linalg.svd(r_b @ r_a.T)
        total = float((s ** 2).sum())
        errors[a_key[len(PEFT_PREFIX):].rsplit(".lora_", 1)[0]] = (
            math.sqrt(float((s[k:] ** 2).sum()) / total) if total > 0 else 0.0)
        root = s[:k].sqrt()
        out[b_key] = ((q_b @ u[:, :k]) * root).to(state[b_key].dtype).contiguous()
        out[a_key] = (root[:, None] * (vh[:k] @ q_a.T)).to(state[a_key].dtype).contiguous()
        ranks.append(k)
    return out, max(ranks, default=0), errors
