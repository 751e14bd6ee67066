"""The recipe: one YAML file that says what to train, sweep, evaluate and publish.

Like mergekit's configs, the pydantic model *is* the YAML: every field is declared and
documented here, unknown keys are refused (a typo must not silently fall back to a
default), and errors name the field path and the fix. The README's recipe reference is
this module's field descriptions (``docs/recipe_reference.py`` writes it; a test keeps
them equal).

Everything that can be checked without loading a model is checked here, at parse time:
``peo-hub recipe validate`` and the first step of ``recipe run`` are the same call
(:func:`peo_hub.run.preflight` then adds what needs the base model and the data).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peo_hub.data import DatasetSpec, GenerateSpec
from peo_hub.engines import ENGINES
from peo_hub.errors import RecipeError, validation_message
from peo_hub.guard import GuardThresholds
from peo_hub.ids import is_repo_id
from peo_hub.judges import JudgeSpec
from peo_hub.policy import MAX_COEFFICIENT, MAX_GRID_POINTS, grid_size

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_ASPECT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: An aspect name is a folder name of the bundle (adapters/<aspect>/).
ASPECT_NAME = _ASPECT_NAME
# Unknown keys refused; inf and nan refused in every number (an inf learning rate trains
# all-NaN adapters, a nan alpha names no field when it breaks the sweep).
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)

#: TRL 1.16's DPO losses (DPOConfig's loss_type docs); TRL itself accepts any string and fails
#: only inside the first training step. tests/test_recipe.py checks this list against TRL's.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
#: DPOConfig fields peo-hub sets itself; a recipe setting them would collide (or, for the Hub
#: ones, publish each adapter behind the bundle's back).
RESERVED_DPO_FIELDS = {"output_dir": "peo-hub writes each adapter into the bundle",
                       "seed": "use the recipe's top-level seed", "data_seed": "use the recipe's top-level seed",
                       "push_to_hub": "use hub.repo_id or --push", "hub_model_id": "use hub.repo_id or --push",
                       "hub_token": "log in with `hf auth login`", "resume_from_checkpoint": "use --resume"}


class AspectSpec(BaseModel):
    """One preference aspect: its pairwise data and its judge."""

    model_config = _STRICT

    dataset: DatasetSpec = Field(description="the aspect's preference pairs: a dataset spec (see Dataset specs)")
    judge: JudgeSpec = Field(description="how the aspect's score of a reply is measured (see judge below)")


class LoraSpec(BaseModel):
    """The LoRA adapter trained per aspect (PEFT ``LoraConfig``)."""

    model_config = _STRICT

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

    model_config = _STRICT

    lora: LoraSpec = Field(default_factory=LoraSpec, description="the adapter trained per aspect (see train.lora)")
    dpo: DPOSpec = Field(default_factory=DPOSpec, description="the DPO run per aspect (see train.dpo)")


class AlphaSearchSpec(BaseModel):
    """Phase 3 as an optimisation: per weight vector, a bounded search over alpha (see peo_hub.search)."""

    model_config = _STRICT

    bounds: tuple[float, float] = Field(default=(0.0, 2.0),
                                        description="the alpha interval searched, [low, high] with -1 <= low < high")
    evaluations: int = Field(default=4, ge=1, le=50,
                             description="policies evaluated per weight vector on the selection prompts (the search's "
                                         "budget); the alpha kept is then evaluated on every prompt")

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not -1 <= low < high:
            raise ValueError("bounds must be [low, high] with -1 <= low < high, e.g. [0, 2]")
        if high > MAX_COEFFICIENT - 1:
            raise ValueError(f"bounds: high must be at most {MAX_COEFFICIENT - 1:g}")
        return value


class SweepSpec(BaseModel):
    """Phases 2-3: the grid of (weights, alpha) points evaluated into the front."""

    model_config = _STRICT

    weights: int = Field(default=5, ge=2, le=10_001,
                         description="simplex lattice points per aspect axis (5 -> 0, .25, .5, .75, 1)")
    alpha: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0],
                               description="extrapolation strengths; 0 gives the soup points")
    baselines: list[Literal["soup", "morl"]] = Field(
        default_factory=lambda: ["soup"],
        description="soup: the alpha = 0 points (the rewarded soup), evaluated even when alpha leaves 0 out; "
                    "morl: one DPO run per interior weight vector on mixed data",
    )
    search: AlphaSearchSpec | None = Field(
        default=None,
        description="also search alpha per weight vector (maximising sum_i w_i score_i on the selection prompts, "
                    "guarded against babble; see search.bounds, search.evaluations); its points join the PEO family "
                    "next to the grid's; null: the grid only")

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

    model_config = _STRICT

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
        description="share of the prompts (seeded split by prompt) that SELECT the front, the presets and the "
                    "searched alphas; the rest CONFIRM: every reported score, interval and hypervolume is theirs. "
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


class HubSpec(BaseModel):
    """Where ``--push`` (or ``hub.repo_id``) publishes the bundle."""

    model_config = _STRICT

    repo_id: str | None = Field(default=None, description="user/name; pushed after the run when set")

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        if value is not None and not is_repo_id(value, namespace=True):
            raise ValueError(f"{value!r} is not a Hub repo id; write it as namespace/name, e.g. alice/peo-toy")
        return value
    private: bool = Field(default=False, description="create the repo private")


class Recipe(BaseModel):
    """A PEO recipe (see README: Recipe reference)."""

    model_config = _STRICT

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
            if not _ASPECT_NAME.match(name):
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
    models = (Recipe, AspectSpec, JudgeSpec, LoraSpec, DPOSpec, TrainSpec, SweepSpec, AlphaSearchSpec, EvaluateSpec,
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


# --------------------------------------------------------------------------- evaluation recipes


class EvaluationAspect(BaseModel):
    """An aspect of a bundle that exists already: only how its score is measured."""

    model_config = _STRICT

    judge: JudgeSpec = Field(description="how the aspect's score of a reply is measured (see judge)")


class EvaluationRecipe(BaseModel):
    """What ``peo-hub evaluate`` needs to sweep an existing bundle (e.g. a composed one) into a front.

    A recipe without ``base_model``, ``train``, ``hub`` and datasets: the bundle already has
    its base and adapters. It has every field the sweep and the front read of a
    :class:`Recipe` (``seed``, ``aspects.<name>.judge``, ``sweep``, ``evaluate``), with the
    same sections, so :func:`peo_hub.sweep.run_sweep` takes it as it takes a recipe.
    """

    model_config = _STRICT

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


def evaluation_recipe(path: str | os.PathLike[str] | None = None, judges: Sequence[str] = (),
                      prompts: str | None = None) -> EvaluationRecipe:
    """The evaluation of ``peo-hub evaluate``: a recipe file, judges and prompts given on the command line, or both.

    The file may be an evaluation recipe (:class:`EvaluationRecipe`) or a whole training
    recipe, whose judges, ``sweep`` and ``evaluate`` sections are used (its MORL baseline is
    left out: there is no data to train it). ``judges`` (``ASPECT=...``) replace or add an
    aspect's judge; ``prompts`` (a dataset source with a prompt column) replaces the prompts.
    Every problem is one :class:`RecipeError` line naming the field.
    """
    where = Path(path) if path is not None else Path("<command line>")
    data: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(where)
        if raw is None or not isinstance(raw, dict):
            raise RecipeError(f"{where} must be a YAML mapping of fields (aspects, evaluate, ...); start from "
                              "recipes/toy.yaml")
        data = _evaluation_part(parse_recipe(raw, where)) if _is_training_recipe(raw) else dict(raw)
        data.setdefault("name", where.stem)
    aspects = dict(data.get("aspects") or {})
    for text in judges:
        aspect, judge = judge_from_arg(text)
        aspects[aspect] = {"judge": judge}
    if aspects:
        data["aspects"] = aspects
    if prompts is not None:
        data["evaluate"] = {**dict(data.get("evaluate") or {}), "prompts": {"source": prompts}}
    if path is None and "evaluate" not in data:
        raise RecipeError("give --recipe RECIPE.yaml, or --prompts FILE with a --judge for every aspect")
    try:
        return EvaluationRecipe.model_validate(data)
    except ValidationError as exc:
        message = validation_message(exc, field_names=_field_names())
        hint = " (with --judge: " + JUDGE_ARG_HELP + ")" if "aspects" in message and judges else ""
        raise RecipeError(f"{where}: {message}{hint}") from None


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says it is an error;
    PyYAML silently keeps the last, so a second ``train:`` would quietly replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(f"key {key!r} appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe file; every problem is one :class:`RecipeError` line."""
    return parse_recipe(_read_yaml(Path(path)), path)


def _read_yaml(path: Path) -> Any:
    """A recipe file's YAML, or one :class:`RecipeError` line (missing, a folder, unreadable, bad YAML)."""
    if not path.exists():
        raise RecipeError(f"recipe {path} does not exist; check the path (e.g. recipes/toy.yaml)")
    if path.is_dir():
        raise RecipeError(f"recipe {path} is a folder; give the YAML file inside it")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.__class__.__name__}: {exc}; check permissions and encoding") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise RecipeError(f"{path}: {exc}; keep one of them") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path} is not valid YAML{where}: {problem}; fix the syntax") from None
    return data
