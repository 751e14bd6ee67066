"""The recipe: one YAML file that says what to train, sweep, evaluate and publish.

Like mergekit's configs, the pydantic model *is* the YAML: every field is declared and
documented here, unknown keys are refused (a typo must not silently fall back to a
default), and errors name the field path and the fix. The README's recipe reference is
this module's field descriptions (``docs/recipe_reference.py`` writes it; a test keeps
them equal).

Everything that can be checked without loading a model is checked here, at parse time:
``peo-hub recipe validate`` and the first step of ``recipe run`` are the same call
(:func:`peo_hub.recipe.preflight.preflight` then adds what needs the base model and the data).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from peo_hub.bundle.manifest import ASPECT_NAME
from peo_hub.core.measures import GuardThresholds
from peo_hub.core.policy import MAX_GRID_POINTS, grid_size
from peo_hub.data.config import DatasetSpec, GenerateSpec
from peo_hub.evaluate.config import EvaluateSpec, SweepSpec
from peo_hub.judges.registry import JudgeSpec
from peo_hub.train.config import DPOSpec, LoraSpec, TrainSpec
from peo_hub.utils.errors import RecipeError, validation_message
from peo_hub.utils.ids import is_repo_id
from peo_hub.utils.schema import STRICT

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


class AspectSpec(BaseModel):
    """One preference aspect: its pairwise data and its judge."""

    model_config = STRICT

    dataset: DatasetSpec = Field(description="the aspect's preference pairs: a dataset spec (see Dataset specs)")
    judge: JudgeSpec = Field(description="how the aspect's score of a reply is measured (see judge below)")


class HubSpec(BaseModel):
    """Where ``--push`` (or ``hub.repo_id``) publishes the bundle."""

    model_config = STRICT

    repo_id: str | None = Field(default=None, description="user/name; pushed after the run when set")

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        if value is not None and not is_repo_id(value, namespace=True):
            raise ValueError(f"{value!r} is not a Hub repo id; write it as namespace/name, e.g. alice/peo-toy")
        return value
    private: bool = Field(default=False, description="create the repo private")
    license: str | None = Field(
        default=None, description="the model card's license, a Hub license id (e.g. apache-2.0, llama3, other); "
                                  "default: the base model's, read from its Hub card (left out when unknown)")

    @field_validator("license")
    @classmethod
    def _license(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", value):
            raise ValueError(f"{value!r} is not a Hub license id; write it as the Hub does, lowercase with dashes, "
                             "e.g. apache-2.0, mit, cc-by-4.0, llama3 or other")
        return value


class Recipe(BaseModel):
    """A PEO recipe (see README: Recipe reference)."""

    model_config = STRICT

    name: str | None = Field(default=None, description="run name (letters, digits, '-', '_', '.'); `recipe run` "
                                                    "writes to runs/<name> unless --output is given; default: "
                                                    "the file name")
    seed: int = Field(default=0, ge=0, lt=2**32, description="seed for data order, LoRA init, sampling")
    base_model: str = Field(description="embedded:toy, a Hub id, a local model folder, or a GGUF file: path/x.gguf, "
                                        "pypi:<package>/<file>.gguf or hf://<namespace>/<repo>/<file>.gguf "
                                        "(dequantised once, cached by its sha256)")
    base_model_revision: str | None = Field(default=None, description="Hub revision of the base")
    aspects: dict[str, AspectSpec] = Field(
        description="aspect name -> dataset + judge; two or more; names are folder names (letters, digits, '-', '_'); "
                    "their order is the order everywhere (sliders, manifest)")
    train: TrainSpec = Field(default_factory=TrainSpec, description="phase 1: lora and dpo, the same for every aspect")
    sweep: SweepSpec = Field(default_factory=SweepSpec, description="phases 2-3: the (w, alpha) grid and the baselines")
    evaluate: EvaluateSpec = Field(description="the evaluation prompts, sampling and judging of every point")
    hub: HubSpec = Field(default_factory=HubSpec, description="repo_id pushes the bundle after the run (like --push); "
                                                              "private creates the repo private")

    @field_validator("aspects")
    @classmethod
    def _aspect_names(cls, value: dict[str, AspectSpec]) -> dict[str, AspectSpec]:
        if len(value) < 2:
            raise ValueError("PEO needs two or more aspects (e.g. helpful and harmless)")
        for name in value:
            if not ASPECT_NAME.match(name):
                raise ValueError(f"aspect name {name!r} must be letters, digits, '-' or '_' (it names a folder)")
        return value

    @field_validator("name")
    @classmethod
    def _run_name(cls, value: str | None) -> str | None:
        if value is not None and not _SAFE_NAME.match(value):
            raise ValueError(f"name {value!r} must be letters, digits, '-', '_' or '.' and not start with '.' "
                             "(it names the folder runs/<name>)")
        return value

    @model_validator(mode="after")
    def _grid_and_data(self) -> "Recipe":
        _check_grid(len(self.aspects), self.sweep)
        for name, aspect in self.aspects.items():
            if isinstance(aspect.dataset, DatasetSpec):
                _check_spec(aspect.dataset, "pairs", f"aspects.{name}.dataset")
        _check_prompt_spec(self.evaluate)
        return self


def _check_grid(aspects: int, sweep: SweepSpec) -> None:
    size = grid_size(aspects, sweep.weights)
    if size > MAX_GRID_POINTS:
        raise ValueError(f"sweep: weights {sweep.weights} gives {size:,} weight vectors for {aspects} "
                         f"aspects; keep the grid at most {MAX_GRID_POINTS:,} points (e.g. weights: 5)")


def _check_spec(spec: DatasetSpec, purpose: str, where: str) -> None:
    """``spec.check(purpose)``, its error prefixed with the spec's place in the recipe."""
    try:
        spec.check(purpose)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise ValueError(f"{where}.{field}: {message}") from None


def _check_prompt_spec(evaluate: EvaluateSpec) -> None:
    if isinstance(evaluate.prompts, DatasetSpec):
        _check_spec(evaluate.prompts, "prompts", "evaluate.prompts")


def _field_names() -> list[str]:
    """Every field name of every recipe section, for "did you mean" hints on typos."""
    models = (Recipe, AspectSpec, JudgeSpec, LoraSpec, DPOSpec, TrainSpec, SweepSpec, EvaluateSpec,
              GuardThresholds, HubSpec, DatasetSpec, GenerateSpec)
    return sorted({name for model in models for name in model.model_fields})


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
        message = validation_message(exc, field_names=_field_names())
        if message.startswith("missing required field"):
            message += " (see README: Recipe reference)"
        raise RecipeError(f"{path}: {message}") from None
    if recipe.name is None:
        recipe.name = path.stem
    return recipe


class EvaluationAspect(BaseModel):
    """An aspect of a bundle that exists already: only how its score is measured."""

    model_config = STRICT

    judge: JudgeSpec = Field(description="how the aspect's score of a reply is measured (see judge)")


class EvaluationRecipe(BaseModel):
    """What ``peo-hub evaluate`` needs to sweep an existing bundle (e.g. a composed one) into a front.

    A recipe without ``base_model``, ``train``, ``hub`` and datasets: the bundle already has
    its base and adapters. It has every field the sweep and the front read of a
    :class:`Recipe` (``seed``, ``aspects.<name>.judge``, ``sweep``, ``evaluate``), with the
    same sections, so :func:`peo_hub.evaluate.sweep.run_sweep` takes it as it takes a recipe.
    """

    model_config = STRICT

    name: str | None = Field(default=None, description="a name for this evaluation (default: the file name)")
    seed: int = Field(default=0, ge=0, lt=2**32, description="seed for sampling and the bootstrap")
    aspects: dict[str, EvaluationAspect] = Field(description="aspect name -> judge, one per aspect of the bundle")
    sweep: SweepSpec = Field(default_factory=SweepSpec, description="the (w, alpha) grid; baselines: soup only")
    evaluate: EvaluateSpec = Field(description="the evaluation prompts, sampling and judging of every point")

    @field_validator("aspects")
    @classmethod
    def _two_or_more(cls, value: dict[str, EvaluationAspect]) -> dict[str, EvaluationAspect]:
        if len(value) < 2:
            raise ValueError("PEO needs two or more aspects (e.g. helpful and harmless)")
        return value

    @model_validator(mode="after")
    def _no_training(self) -> "EvaluationRecipe":
        if "morl" in self.sweep.baselines:
            raise ValueError("sweep.baselines: morl trains one DPO run per weight vector and needs the aspects' "
                             "data; evaluating an existing bundle takes soup only, remove morl")
        _check_grid(len(self.aspects), self.sweep)
        _check_prompt_spec(self.evaluate)
        return self


#: Top-level fields only a training recipe has: a file with any of them is read as a whole recipe.
TRAINING_FIELDS = ("base_model", "base_model_revision", "train", "hub")


JUDGE_ARG_HELP = ("ASPECT=TYPE (a judge type, e.g. toy_helpful), ASPECT=reward_model:MODEL or "
                  "ASPECT=cost_model:MODEL (a reward or cost model: Hub id or folder)")


def _evaluation_part(recipe: Recipe) -> dict[str, Any]:
    """A training recipe's evaluation: its judges, grid (soup baseline only) and evaluate section."""
    sweep = recipe.sweep.model_dump(mode="json")
    sweep["baselines"] = [b for b in sweep["baselines"] if b != "morl"]
    return {"name": recipe.name, "seed": recipe.seed,
            "aspects": {a: {"judge": spec.judge.model_dump(mode="json", exclude_none=True)}
                        for a, spec in recipe.aspects.items()},
            "sweep": sweep, "evaluate": recipe.evaluate.model_dump(mode="json", exclude_none=True)}


def _is_training_recipe(data: dict[str, Any]) -> bool:
    aspects = data.get("aspects")
    with_data = isinstance(aspects, dict) and any(isinstance(a, dict) and "dataset" in a for a in aspects.values())
    return with_data or any(key in data for key in TRAINING_FIELDS)


def evaluation_of(recipe: Mapping[str, Any]) -> EvaluationRecipe | None:
    """The evaluation a bundle's manifest records (a training recipe's, or ``peo-hub evaluate``'s); None if none."""
    if not recipe:
        return None
    try:
        data = _evaluation_part(Recipe.model_validate(recipe)) if _is_training_recipe(dict(recipe)) else recipe
        return EvaluationRecipe.model_validate(data)
    except ValidationError:
        return None


def judge_from_arg(text: str) -> tuple[str, dict[str, Any]]:
    """``ASPECT=TYPE`` / ``ASPECT=reward_model:MODEL`` / ``ASPECT=cost_model:MODEL`` as (aspect, judge spec)."""
    aspect, sep, spec = text.partition("=")
    aspect, spec = aspect.strip(), spec.strip()
    if not sep or not aspect or not spec:
        raise RecipeError(f"--judge {text!r}: write {JUDGE_ARG_HELP}")
    kind, colon, model = spec.partition(":")
    if colon and kind in ("reward_model", "cost_model"):
        if not model.strip():
            raise RecipeError(f"--judge {text!r}: name the model after '{kind}:', e.g. {kind}:org/model")
        return aspect, {"type": "reward_model", "model": model.strip(), "negate": kind == "cost_model"}
    return aspect, {"type": spec}
