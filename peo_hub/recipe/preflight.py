"""Everything a recipe needs, checked before the run's first write.

:func:`preflight` checks what can be checked without training, in the order a run would
meet it: the generation engine, the base model (built, copied or found), every aspect's
data, the evaluation prompts, every judge, the DPO settings as TRL will see them, and the
LoRA target modules against the base's own module names. ``peo-hub recipe validate`` and
``recipe run`` call the same function, so a recipe that validates does not fail an hour
later on something that could have been seen at once.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

from peo_hub.data.base import Base, meta_model, resolve_base
from peo_hub.recipe.schema import Recipe
from peo_hub.utils.errors import RecipeError, first_line


@dataclass
class Plan:
    """What :func:`preflight` resolved, so the run does not resolve it twice."""

    recipe: Recipe
    base: Base
    tokenizer: Any
    data: dict[str, Any] = field(default_factory=dict)  # aspect -> PreferenceData
    prompts: list[str] = field(default_factory=list)
    to_sample: dict[str, int] = field(default_factory=dict)  # aspect -> prompts whose pairs the base must sample


def _check_target_modules(recipe: Recipe, base: Base) -> None:
    """Every named LoRA target exists in the base (PEFT's own matching rule), checked on a meta model."""
    target = recipe.train.lora.target_modules
    if target == "all-linear":
        return
    import torch
    from peft.tuners.tuners_utils import check_target_module_exists

    skeleton = meta_model(base)
    names = [name for name, _ in skeleton.named_modules() if name]
    wanted = [target] if isinstance(target, str) else list(target)
    for one in wanted:
        single = recipe.train.lora.model_copy(update={"target_modules": one if isinstance(target, str) else [one]})
        if not any(check_target_module_exists(single.to_peft(), name) for name in names):
            leaves = sorted({n.rsplit(".", 1)[-1] for n, m in skeleton.named_modules()
                             if isinstance(m, torch.nn.Linear)})
            raise RecipeError(f"train.lora.target_modules: {one!r} matches no module of the base model; "
                              f"its linear layers are named {', '.join(leaves)} (or use all-linear)")


def _check_dpo(recipe: Recipe) -> None:
    """Build the DPOConfig TRL will get (TRL validates some fields itself, e.g. the scheduler)."""
    from peo_hub.train.dpo import dpo_config

    with tempfile.TemporaryDirectory(prefix="peo-preflight-") as scratch:
        try:
            dpo_config(recipe.train.dpo, scratch, recipe.seed)
        except (ValueError, TypeError) as exc:
            first = first_line(exc)
            raise RecipeError(f"train.dpo: TRL refuses these settings: {first}") from None


def _check_judges(recipe: Recipe) -> None:
    """Reward-model judges are reachable now, not after an hour of training."""
    from transformers import AutoConfig

    for aspect, spec in recipe.aspects.items():
        if spec.judge.model is None:
            continue
        try:
            AutoConfig.from_pretrained(spec.judge.model, revision=spec.judge.revision)
        except (OSError, ValueError) as exc:
            first = first_line(exc)
            raise RecipeError(f"aspects.{aspect}.judge.model: cannot load {spec.judge.model!r} ({first}); check the "
                              "id or path (offline, it must be in the HF cache)") from None


def preflight(recipe: Recipe) -> Plan:
    """Check everything short of training; returns what the run needs (see the module docstring)."""
    from transformers import AutoTokenizer

    from peo_hub.data.load import load_preference_data, load_prompts
    from peo_hub.family.engines import require_engine

    require_engine(recipe.evaluate.engine)
    base = resolve_base(recipe.base_model, recipe.base_model_revision, seed=recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(base.source, revision=base.revision)
    plan = Plan(recipe=recipe, base=base, tokenizer=tokenizer)
    for aspect, spec in recipe.aspects.items():
        if spec.dataset.generate is not None:  # sampled after pre-flight (sample_pairs): only the prompts now
            plan.to_sample[aspect] = len(load_prompts(spec.dataset.model_copy(update={"generate": None}),
                                                      where=f"aspects.{aspect}.dataset"))
        else:
            plan.data[aspect] = load_preference_data(spec.dataset, tokenizer)
    plan.prompts = load_prompts(recipe.evaluate.prompts)
    _check_judges(recipe)
    _check_dpo(recipe)
    _check_target_modules(recipe, base)
    return plan
