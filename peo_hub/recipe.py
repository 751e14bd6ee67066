"""The recipe: one YAML file that says what to train, sweep, evaluate and publish.

Like mergekit's configs, the pydantic model *is* the YAML: every field is declared and
documented here, unknown keys are refused (a typo must not silently fall back to a
default), and errors name the field path and the fix. The README's recipe reference is
this module's field descriptions.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peo_hub.data import DatasetSpec
from peo_hub.errors import RecipeError

PROGRAMMATIC_JUDGES = ("toy_helpful", "toy_harmless")
_STRICT = ConfigDict(extra="forbid")


class JudgeSpec(BaseModel):
    """How one aspect's replies are scored (in [0, 1], higher is better).

    Reward-model judges load with ``AutoModelForSequenceClassification``. Checkpoints saved
    by other code bases need two more things to score as they were trained: their weight
    names mapped onto the transformers class (``key_mapping``; safe-rlhf's Beaver models keep
    their head in ``score_head``, which transformers would otherwise replace by a random
    ``score`` head without an error) and their own text format (``template``).
    """

    model_config = _STRICT

    type: str = Field(description="a programmatic judge (toy_helpful, toy_harmless) or 'reward_model'")
    model: str | None = Field(default=None, description="reward_model: Hub id or local path of a sequence-classification model")
    revision: str | None = Field(default=None, description="reward_model: Hub revision to pin")
    negate: bool = Field(default=False, description="reward_model: true for cost models (lower cost = better)")
    normalise: Literal["sigmoid", "none"] = Field(
        default="sigmoid",
        description="reward_model: sigmoid((s - shift) / scale) maps the (negated, for cost models) raw score s to "
                    "[0, 1]; none keeps s as is (the front's reference point 0 then cuts negative scores off)",
    )
    scale: float = Field(
        default=1.0, gt=0,
        description="reward_model, sigmoid: raw-score units per sigmoid unit; raise it (e.g. 5) for models whose "
                    "scores spread over tens of units, so that differences between points do not saturate at 0 or 1",
    )
    shift: float = Field(default=0.0, description="reward_model, sigmoid: the raw score that maps to 0.5")
    template: str | None = Field(
        default=None,
        description="reward_model: the scored text as a format string with {prompt} and {reply}, e.g. Beaver's "
                    "'BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{reply}'; default: the judge's chat "
                    "template when it has one, else '{prompt} {reply}'",
    )
    key_mapping: dict[str, str] | None = Field(
        default=None,
        description="reward_model: regex -> replacement on checkpoint weight names, passed to from_pretrained, "
                    "e.g. {'^score_head': 'score'} for safe-rlhf checkpoints (Beaver)",
    )
    score_token: Literal["model", "last"] = Field(
        default="model",
        description="reward_model: model = the model's own pooling (transformers: the last token that is not the "
                    "pad token); last = the last token of the text by attention mask (safe-rlhf's convention; "
                    "differs when the text ends in the pad token, e.g. pad = eos)",
    )
    batch_size: int = Field(default=16, gt=0, description="reward_model: replies scored per forward pass")
    max_length: int = Field(default=1024, gt=0, description="reward_model: tokens per scored conversation")

    @field_validator("template")
    @classmethod
    def _template_fields(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import string

        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"template is not a valid format string ({exc}); write literal braces as {{{{ and }}}}") from None
        unknown = sorted(fields - {"prompt", "reply"})
        if unknown or fields != {"prompt", "reply"}:
            what = f"unknown field {{{unknown[0]}}}" if unknown else "it lacks " + " and ".join(
                f"{{{name}}}" for name in ("prompt", "reply") if name not in fields)
            raise ValueError(f"template must use exactly {{prompt}} and {{reply}}: {what}")
        return value

    @field_validator("key_mapping")
    @classmethod
    def _key_mapping_regexes(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        import re

        for pattern in value or {}:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"key_mapping pattern {pattern!r} is not a regular expression ({exc})") from None
        return value

    @model_validator(mode="after")
    def _known_type(self) -> "JudgeSpec":
        if self.type == "reward_model":
            if not self.model:
                raise ValueError("judge type reward_model needs model: <Hub id or path>")
        elif self.type not in PROGRAMMATIC_JUDGES:
            hint = difflib.get_close_matches(self.type, [*PROGRAMMATIC_JUDGES, "reward_model"], n=1)
            known = ", ".join([*PROGRAMMATIC_JUDGES, "reward_model"])
            raise ValueError(
                f"unknown judge type {self.type!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; known: {known}"
            )
        return self


class AspectSpec(BaseModel):
    """One preference aspect: its pairwise data and its judge."""

    model_config = _STRICT

    dataset: DatasetSpec
    judge: JudgeSpec


class LoraSpec(BaseModel):
    """The LoRA adapter trained per aspect (PEFT ``LoraConfig``)."""

    model_config = _STRICT

    r: int = Field(default=8, gt=0, description="LoRA rank")
    alpha: float = Field(default=16, gt=0, description="lora_alpha; the adapter's scale is alpha / r")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="lora_dropout")
    target_modules: str | list[str] = Field(default="all-linear", description="'all-linear' or module names")

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

    model_config = ConfigDict(extra="allow")

    beta: float = Field(default=0.1, gt=0, description="DPO temperature: how far from the base each adapter may move")
    learning_rate: float = Field(default=5e-5, gt=0, description="peak learning rate")
    max_steps: int = Field(default=-1, description="optimizer steps; -1 uses num_train_epochs")
    num_train_epochs: float = Field(default=1.0, gt=0, description="epochs when max_steps is -1")
    per_device_train_batch_size: int = Field(default=8, gt=0, description="pairs per device per step")
    gradient_accumulation_steps: int = Field(default=1, gt=0, description="steps accumulated per update")
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"],
                                 description="TRL loss names, e.g. [sigmoid, sft] (an SFT anchor against collapse) or [ipo]")
    loss_weights: list[float] | None = Field(default=None, description="one weight per loss_type entry")
    max_length: int | None = Field(default=1024, description="tokens per prompt+reply")
    bf16: bool | Literal["auto"] = Field(default="auto", description="bf16 training; auto = when CUDA supports it")
    gradient_checkpointing: bool | Literal["auto"] = Field(default="auto", description="auto = on with CUDA")

    @field_validator("loss_type", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _extra_fields_exist(self) -> "DPOSpec":
        extra = set(self.model_extra or {})
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

    model_config = _STRICT

    lora: LoraSpec = Field(default_factory=LoraSpec)
    dpo: DPOSpec = Field(default_factory=DPOSpec)


class SweepSpec(BaseModel):
    """Phases 2-3: the grid of (weights, alpha) points evaluated into the front."""

    model_config = _STRICT

    weights: int = Field(default=5, ge=2, description="simplex lattice points per aspect axis (5 -> 0, .25, .5, .75, 1)")
    alpha: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0],
                               description="extrapolation strengths; 0 gives the soup points")
    baselines: list[Literal["soup", "morl"]] = Field(
        default_factory=lambda: ["soup"],
        description="soup: alpha=0 points (always evaluated when 0 is in alpha); morl: one DPO run per interior weight vector on mixed data",
    )

    @field_validator("alpha")
    @classmethod
    def _alphas(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("give at least one alpha, e.g. [0, 0.5, 1.0]")
        if any(a < -1 for a in value):
            raise ValueError("alpha must be >= -1 (0 = soup, > 0 extrapolates)")
        return sorted(set(value))


class EvaluateSpec(BaseModel):
    """How each point of the sweep is scored."""

    model_config = _STRICT

    prompts: DatasetSpec | list[str] = Field(description="held-out prompts: a dataset spec or a list of strings")
    samples: int = Field(default=8, gt=0, description="sampled replies per prompt and point")
    max_new_tokens: int = Field(default=48, gt=0, description="reply length cap")
    temperature: float = Field(default=1.0, ge=0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(default=1.0, gt=0, le=1, description="nucleus sampling")
    batch_size: int = Field(default=64, gt=0, description="prompts generated per batch")
    bootstrap: int = Field(default=1000, ge=100, description="bootstrap resamples for the 95% intervals")
    engine: Literal["transformers", "vllm"] = Field(
        default="transformers",
        description="generation backend: transformers (live preference switching, runs anywhere) or vllm "
                    "(pip install peo-hub[vllm]; each point as an exported LoRA adapter; untested on CPU)",
    )


class HubSpec(BaseModel):
    """Where ``--push`` (or ``hub.repo_id``) publishes the bundle."""

    model_config = _STRICT

    repo_id: str | None = Field(default=None, description="user/name; pushed after the run when set")
    private: bool = Field(default=False, description="create the repo private")


class Recipe(BaseModel):
    """A PEO recipe (see README: Recipe reference)."""

    model_config = _STRICT

    name: str | None = Field(default=None, description="run name; default: the file name")
    seed: int = Field(default=0, description="seed for data order, LoRA init, sampling")
    base_model: str = Field(description="embedded:toy, a Hub id, or a local model folder")
    base_model_revision: str | None = Field(default=None, description="Hub revision of the base")
    aspects: dict[str, AspectSpec] = Field(description="aspect name -> dataset + judge (two or more)")
    train: TrainSpec = Field(default_factory=TrainSpec)
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    evaluate: EvaluateSpec
    hub: HubSpec = Field(default_factory=HubSpec)

    @field_validator("aspects")
    @classmethod
    def _aspect_names(cls, value: dict[str, AspectSpec]) -> dict[str, AspectSpec]:
        if len(value) < 2:
            raise ValueError("PEO needs two or more aspects (e.g. helpful and harmless)")
        for name in value:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"aspect name {name!r} must be letters, digits, '-' or '_' (it names a folder)")
        return value


def _format_error(exc: ValidationError, path: Path) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown field {loc!r}" + _suggest(str(first["loc"][-1])) + "; remove or rename it"
    if kind == "missing":
        return f"{path}: missing required field {loc!r}; add it (see README: Recipe reference)"
    message = first["msg"].removeprefix("Value error, ")
    return f"{path}: field {loc!r}: {message}"


def _suggest(field: str) -> str:
    """A close field name from any recipe section, for typos like ``lerning_rate``."""
    models = (Recipe, AspectSpec, JudgeSpec, LoraSpec, DPOSpec, TrainSpec, SweepSpec, EvaluateSpec, HubSpec, DatasetSpec)
    names = sorted({name for model in models for name in model.model_fields})
    hint = difflib.get_close_matches(field, names, n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def parse_recipe(data: Any, path: str | os.PathLike[str] = "<recipe>") -> Recipe:
    """Validate an already-loaded mapping as a :class:`Recipe`."""
    path = Path(path)
    if data is None:
        raise RecipeError(f"{path} is empty; start from recipes/toy.yaml")
    if not isinstance(data, dict):
        raise RecipeError(f"{path} must be a YAML mapping of fields (base_model, aspects, ...), got {type(data).__name__}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_format_error(exc, path)) from None
    if recipe.name is None:
        recipe.name = path.stem
    return recipe


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe file; every problem is one :class:`RecipeError` line."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe {path} does not exist; check the path (e.g. recipes/toy.yaml)")
    if path.is_dir():
        raise RecipeError(f"recipe {path} is a folder; give the YAML file inside it")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.__class__.__name__}: {exc}; check permissions and encoding") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path} is not valid YAML{where}: {problem}; fix the syntax") from None
    return parse_recipe(data, path)
