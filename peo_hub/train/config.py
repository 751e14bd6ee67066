"""The recipe's ``train:`` section: the LoRA adapter (PEFT's ``LoraConfig``) and the DPO run (TRL's ``DPOConfig``).

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
                       "hub_token": "log in with `hf auth login`", "resume_from_checkpoint": "use --resume"}


class LoraSpec(BaseModel):
    """The LoRA adapter trained per aspect (PEFT ``LoraConfig``)."""

    model_config = STRICT

    r: int = Field(default=8, gt=0, le=4096, description="LoRA rank")
    alpha: float = Field(default=16, gt=0, le=1e6, description="lora_alpha; the adapter's scale is alpha / r")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="lora_dropout")
    target_modules: str | list[str] = Field(
        default="all-linear",
        description="'all-linear' or module names (each must name modules of the base model; checked before training)")

    @field_validator("target_modules")
    @classmethod
    def _names(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or any(not n.strip() for n in names):
            raise ValueError("target_modules must be 'all-linear' or a non-empty list of module names, e.g. [q_proj, v_proj]")
        return value

    def to_peft(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
            target_modules=self.target_modules, task_type="CAUSAL_LM",
        )


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
