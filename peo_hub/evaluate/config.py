"""The recipe's ``sweep:`` and ``evaluate:`` sections: which points of the family are evaluated, and how.

``sweep`` is the grid (weight vectors x alphas) and the baselines; ``evaluate`` is the prompts, the sampling, the batching, the engine, the bootstrap,
the selection/confirmation split and the degeneration guard's thresholds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from peo_hub.core.measures import GuardThresholds
from peo_hub.core.policy import MAX_COEFFICIENT
from peo_hub.data.config import DatasetSpec
from peo_hub.family.engines import ENGINES
from peo_hub.utils.schema import STRICT


class SweepSpec(BaseModel):
    """Phases 2-3: the grid of (weights, alpha) points evaluated into the front."""

    model_config = STRICT

    weights: int = Field(default=5, ge=2, le=10_001,
                         description="simplex lattice points per aspect axis (5 -> 0, .25, .5, .75, 1)")
    alpha: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0],
                               description="extrapolation strengths; 0 gives the soup points")
    baselines: list[Literal["soup", "morl"]] = Field(
        default_factory=lambda: ["soup"],
        description="soup: the alpha = 0 points (the rewarded soup), evaluated even when alpha leaves 0 out; "
                    "morl: one DPO run per interior weight vector on mixed data",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_search(cls, data: Any) -> Any:
        if isinstance(data, dict) and "search" in data:
            raise ValueError("sweep.search (a per-weight alpha search) is no longer offered: on the toy world it added "
                             "+0.005 hypervolume for twice the sweep's replies, and the fixed grid beat it at equal "
                             "cost; delete it and list the alphas you want in sweep.alpha, e.g. [0, 0.25, 0.5, 1.0]")
        return data

    @field_validator("alpha")
    @classmethod
    def _alphas(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("give at least one alpha, e.g. [0, 0.5, 1.0]")
        if any(a < -1 for a in value):
            raise ValueError("alpha must be >= -1 (0 = soup, > 0 extrapolates)")
        if any(a > MAX_COEFFICIENT - 1 for a in value):
            raise ValueError(f"alpha must be at most {MAX_COEFFICIENT - 1:g} (larger ones swamp the base weights)")
        return sorted(set(value))

    @property
    def alphas(self) -> list[float]:
        """The alphas evaluated: ``alpha``, plus 0 when the soup baseline is asked for."""
        return sorted(set(self.alpha) | ({0.0} if "soup" in self.baselines else set()))


class EvaluateSpec(BaseModel):
    """How each point of the sweep is scored."""

    model_config = STRICT

    prompts: DatasetSpec | list[str] = Field(description="held-out prompts: a dataset spec or a list of strings")
    samples: int = Field(default=8, gt=0, description="sampled replies per prompt and point")
    max_new_tokens: int = Field(default=48, gt=0, description="reply length cap")
    temperature: float = Field(default=1.0, ge=0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(default=1.0, gt=0, le=1, description="nucleus sampling")
    batch_size: int = Field(default=64, gt=0, description="rows (prompt x sample, and point in a sweep) per generate "
                                                          "call: speed and memory only, a reply does not depend on it")
    bootstrap: int = Field(default=1000, ge=100,
                           description="bootstrap resamples for the 95% intervals (prompts are resampled, not replies)")
    selection_fraction: float = Field(
        default=0.5, ge=0, lt=1,
        description="share of the prompts (seeded split by prompt) that SELECT the front and the presets; the "
                    "rest CONFIRM: every reported score, interval and hypervolume is theirs. "
                    "0: no split (every prompt does both jobs; reported numbers are then biased upwards)")
    guard: GuardThresholds = Field(
        default_factory=GuardThresholds,
        description="the degeneration guard: when a point counts as babble relative to the base model's replies "
                    "(see evaluate.guard); flagged points are drawn but never chosen as presets")
    engine: str = Field(
        default="transformers",
        description="generation backend: transformers (live preference switching, runs anywhere) or vllm "
                    "(pip install peo-hub[vllm]; each point as an exported LoRA adapter; untested on CPU)",
    )


    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"unknown engine {value!r}; known: {', '.join(ENGINES)}")
        return value
