"""The recipe's ``train:`` section: the LoRA adapter (PEFT's ``LoraConfig``), the DPO run (TRL's ``DPOConfig``)
and how the base is loaded for it (``train.model``: dtype, 4-bit QLoRA; TRL's ``model_init_kwargs``).

Each field is checked where it is read, against the library that will use it: loss types
against TRL's, DPO fields against ``DPOConfig``'s own, and the fields peo-hub sets itself
(output folder, seed, ...) are refused with the reason.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from peo_hub.utils.schema import STRICT

#: TRL 1.16's DPO losses (DPOConfig's loss_type docs); TRL itself accepts any string and fails
#: only inside the first training step. tests/recipe/test_recipe.py checks this list against TRL's.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


#: DPOConfig fields peo-hub sets itself; a recipe setting them would collide (or, for the Hub
#: ones, publish each adapter behind the bundle's back).
RESERVED_DPO_FIELDS = {"output_dir": "peo-hub writes each adapter into the bundle",
                       "seed": "use the recipe's top-level seed", "data_seed": "use the recipe's top-level seed",
                       "push_to_hub": "use hub.repo_id or --push", "hub_model_id": "use hub.repo_id or --push",
                       "hub_token": "log in with `hf auth login`", "resume_from_checkpoint": "use --resume",
                       "model_init_kwargs": "use train.model (dtype, quantization, attn_implementation)"}


#: PEFT ``LoraConfig.init_lora_weights`` values that keep ``W`` as it is (the adapter is a pure delta).
#: PiSSA, OLoRA, CorDA, EVA and LoftQ initialise from (and rewrite) the base weights, so the
#: trained "adapter" is only a delta relative to a modified base: refused, with that reason.
ADDITIVE_INITS = (True, False, "gaussian")

#: LoraConfig options that make an adapter something other than ``W + s·B@A`` on each module, in
#: recipe words, with the reason (see peo_hub.family.lora.NONLINEAR_REASONS for the bundle side).
_REFUSED_LORA = {"use_dora": "use_dora", "lora_bias": "lora_bias", "modules_to_save": "modules_to_save",
                 "trainable_token_indices": "trainable_token_indices", "use_qalora": "use_qalora",
                 "target_parameters": "target_parameters"}


class LoraSpec(BaseModel):
    """The LoRA adapter trained per aspect (PEFT ``LoraConfig``). Only options under which the
    adapter stays an additive delta ``W + s·B@A`` per module are offered: PEO sums the aspects'
    deltas, so DoRA, LoRA biases, saved modules and base-rewriting initialisations are refused."""

    model_config = STRICT

    r: int = Field(default=8, gt=0, le=4096, description="LoRA rank")
    alpha: float = Field(default=16, gt=0, le=1e6, description="lora_alpha; the adapter's scale is alpha / r")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="lora_dropout")
    target_modules: str | list[str] = Field(
        default="all-linear",
        description="'all-linear' or module names (each must name modules of the base model; checked before training)")
    use_rslora: bool = Field(default=False, description="rank-stabilised LoRA: scale alpha / sqrt(r) instead of "
                                                        "alpha / r (PEFT use_rslora)")
    init_lora_weights: bool | Literal["gaussian"] = Field(
        default=True, description="true (PEFT's default: B = 0), gaussian, or false (random B: tests only); "
                                  "pissa/olora/loftq/corda/eva are refused (they rewrite the base weights)")
    layers_to_transform: int | list[int] | None = Field(
        default=None, description="adapt only these layer indices (PEFT layers_to_transform); null: every layer")
    layers_pattern: str | list[str] | None = Field(
        default=None, description="name of the layers list when layers_to_transform is set and PEFT cannot "
                                  "find it (e.g. layers); PEFT layers_pattern")
    rank_pattern: dict[str, int] = Field(default_factory=dict,
                                         description="per-module ranks overriding r, e.g. {down_proj: 16}")
    alpha_pattern: dict[str, float] = Field(default_factory=dict,
                                            description="per-module alphas overriding alpha, e.g. {down_proj: 32}")
    exclude_modules: str | list[str] | None = Field(
        default=None, description="modules never adapted even when target_modules matches them, e.g. [lm_head]")

    @model_validator(mode="before")
    @classmethod
    def _refuse_non_additive(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from peo_hub.family.lora import NONLINEAR_REASONS

        for name, option in _REFUSED_LORA.items():
            if data.get(name):
                raise ValueError(f"{name} is not supported: {NONLINEAR_REASONS[option]}, and PEO adds the aspects' "
                                 "deltas; remove it (plain LoRA)")
        if data.get("bias") not in (None, "none"):
            raise ValueError("bias: only 'none' is supported: a trained bias sits outside the low-rank delta, which "
                             "is what PEO adds across aspects; remove it")
        init = data.get("init_lora_weights", True)
        if isinstance(init, str) and init not in ADDITIVE_INITS:
            raise ValueError(f"init_lora_weights {init!r} is not supported: it initialises the adapter from the base "
                             "weights and rewrites them, so the adapter is not a delta on the base PEO loads; "
                             "use true or gaussian")
        return data

    @field_validator("target_modules")
    @classmethod
    def _names(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or any(not n.strip() for n in names):
            raise ValueError("target_modules must be 'all-linear' or a non-empty list of module names, e.g. [q_proj, v_proj]")
        return value

    @field_validator("rank_pattern", "alpha_pattern")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not math.isfinite(v) or v <= 0 for v in value.values()):
            raise ValueError("every value must be a positive number, e.g. {down_proj: 16}")
        return value

    @model_validator(mode="after")
    def _peft_accepts(self) -> "LoraSpec":
        """PEFT checks combinations itself (e.g. layers_to_transform needs a list of target modules)."""
        try:
            self.to_peft()
        except (ValueError, TypeError) as exc:
            from peo_hub.utils.errors import first_line

            raise ValueError(f"PEFT refuses these settings: {first_line(exc)}") from None
        return self

    def to_peft(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
            target_modules=self.target_modules, task_type="CAUSAL_LM",
            use_rslora=self.use_rslora, init_lora_weights=self.init_lora_weights,
            layers_to_transform=self.layers_to_transform, layers_pattern=self.layers_pattern,
            rank_pattern=dict(self.rank_pattern), alpha_pattern=dict(self.alpha_pattern),
            exclude_modules=self.exclude_modules,
        )


def _half_dtype() -> str:
    """bfloat16 where the GPU has it, else float16 (QLoRA's compute dtype)."""
    import torch

    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"


class ModelSpec(BaseModel):
    """How the base is loaded for training. TRL loads it (``DPOConfig.model_init_kwargs``), so under
    ``accelerate launch`` with DeepSpeed ZeRO-3 or FSDP's RAM-efficient loading each process builds
    only its shard."""

    model_config = STRICT

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="the base's weights while training: auto = bfloat16 on a CUDA GPU that "
                                    "supports it, else float32 (the adapters train in float32 either way)")
    quantization: Literal["none", "4bit"] = Field(
        default="none", description="4bit: QLoRA, the base loaded in 4-bit NF4 by bitsandbytes (CUDA only; "
                                    "pip install bitsandbytes); the adapters stay standard LoRA on the full base")
    attn_implementation: str | None = Field(
        default=None, description="transformers attn_implementation, e.g. sdpa, eager or flash_attention_2; "
                                  "null: transformers' choice")

    def resolved_dtype(self) -> str:
        """The dtype name the base is loaded in on this machine (``auto`` resolved)."""
        import torch

        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"

    def require_available(self) -> None:
        """A 4-bit base needs CUDA and bitsandbytes: refused before any data is read or model loaded."""
        if self.quantization == "4bit":
            from peo_hub.family.loading import require_bitsandbytes

            require_bitsandbytes("train.model.quantization: 4bit (QLoRA)",
                                 "set train.model.quantization: none on this machine")

    def quantization_config(self) -> Any:
        """The ``BitsAndBytesConfig`` of a QLoRA base (NF4, double quantisation), or ``None``."""
        if self.quantization == "none":
            return None
        import torch
        from transformers import BitsAndBytesConfig

        compute = getattr(torch, _half_dtype())
        # quant_storage in the compute dtype lets FSDP shard the 4-bit weights like the others (FSDP-QLoRA)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute, bnb_4bit_quant_storage=compute)

    def init_kwargs(self, revision: str | None = None) -> dict[str, Any]:
        """``DPOConfig.model_init_kwargs``: what TRL passes to the base's ``from_pretrained``."""
        dtype = self.resolved_dtype()
        if self.quantization != "none" and dtype == "float32":  # the layers left unquantised: the compute dtype
            dtype = _half_dtype()
        kwargs: dict[str, Any] = {"dtype": dtype}
        if revision is not None:
            kwargs["revision"] = revision
        if self.attn_implementation is not None:
            kwargs["attn_implementation"] = self.attn_implementation
        return kwargs


class DPOSpec(BaseModel):
    """TRL ``DPOConfig`` settings. Any other ``DPOConfig`` field may be added by name.

    Defaults differ from TRL's where TRL's assume a GPU and a big model: ``bf16`` and
    ``gradient_checkpointing`` are only switched on when CUDA is there ("auto").
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    beta: float = Field(default=0.1, gt=0, description="DPO temperature: how far from the base each adapter may move")
    learning_rate: float = Field(default=5e-5, gt=0, description="peak learning rate")
    max_steps: int = Field(default=-1, ge=-1, description="optimizer steps; -1 uses num_train_epochs")
    num_train_epochs: float = Field(default=1.0, gt=0, description="epochs when max_steps is -1")
    per_device_train_batch_size: int = Field(default=8, gt=0, description="pairs per device per step")
    gradient_accumulation_steps: int = Field(default=1, gt=0, description="steps accumulated per update")
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"],
                                 description="TRL loss names, e.g. [sigmoid, sft] (an SFT anchor against collapse) or [ipo]")
    loss_weights: list[float] | None = Field(default=None, description="one weight per loss_type entry")

    @field_validator("loss_type")
    @classmethod
    def _known_losses(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one loss, e.g. [sigmoid]")
        for name in value:
            if name not in DPO_LOSS_TYPES:
                hint = difflib.get_close_matches(name, DPO_LOSS_TYPES, n=1)
                raise ValueError(f"unknown DPO loss {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                 + f"; TRL's losses: {', '.join(DPO_LOSS_TYPES)}")
        return value
    max_length: int | None = Field(default=1024, gt=0, description="tokens per prompt+reply")
    bf16: bool | Literal["auto"] = Field(default="auto", description="bf16 training; auto = when CUDA supports it")
    gradient_checkpointing: bool | Literal["auto"] = Field(default="auto", description="auto = on with CUDA")

    @field_validator("loss_type", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _extra_fields_exist(self) -> "DPOSpec":
        extra = set(self.model_extra or {})
        for name in sorted(extra & set(RESERVED_DPO_FIELDS)):
            raise ValueError(f"{name!r} is set by peo-hub, not the recipe ({RESERVED_DPO_FIELDS[name]}); remove it")
        for name, value in (self.model_extra or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if extra:
            known = dpo_config_fields()
            for name in sorted(extra):
                if name not in known:
                    hint = difflib.get_close_matches(name, sorted(known), n=1)
                    raise ValueError(
                        f"{name!r} is not a TRL DPOConfig field" + (f"; did you mean {hint[0]!r}?" if hint else "")
                    )
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError("loss_weights needs one weight per loss_type entry")
        return self

    @field_validator("max_steps")
    @classmethod
    def _some_steps(cls, value: int) -> int:
        # TRL reads 0 as "no limit set" and trains anyway (one step on a CPU run; the progress shows 1/0).
        if value == 0:
            raise ValueError("0 trains nothing (TRL would still take a step); give a positive number of optimizer "
                             "steps, or -1 to train num_train_epochs")
        return value

    @field_validator("loss_weights")
    @classmethod
    def _positive_weights(cls, value: list[float] | None) -> list[float] | None:
        for i, weight in enumerate(value or []):
            if not math.isfinite(weight):
                raise ValueError(f"loss_weights[{i}] must be a finite number, got {weight}")
            if weight < 0:
                raise ValueError(f"loss_weights[{i}] is {weight:g}: a negative weight turns that loss around, so "
                                 "DPO would train towards the rejected replies; use weights > 0")
            if weight == 0:
                raise ValueError(f"loss_weights[{i}] is 0, which switches that loss off; remove it from loss_type "
                                 "instead")
        return value


def dpo_config_fields() -> set[str]:
    """Field names TRL's ``DPOConfig`` accepts (imports TRL, so only called when needed)."""
    import dataclasses

    from trl import DPOConfig

    return {f.name for f in dataclasses.fields(DPOConfig)}


class TrainSpec(BaseModel):
    """Phase 1: one DPO LoRA run per aspect from the same base."""

    model_config = STRICT

    lora: LoraSpec = Field(default_factory=LoraSpec, description="the adapter trained per aspect (see train.lora)")
    dpo: DPOSpec = Field(default_factory=DPOSpec, description="the DPO run per aspect (see train.dpo)")
    model: ModelSpec = Field(default_factory=ModelSpec,
                             description="how the base is loaded for training: dtype, 4-bit QLoRA (see train.model)")
