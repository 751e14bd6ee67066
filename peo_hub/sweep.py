"""The sweep: evaluate every point of the PEO family (and the baselines) on held-out prompts.

All family points share one loaded model and switch preference live (a scale change per
LoRA layer, no copy), so a sweep costs generation, not loading. Every point uses the same
sampling seed (common random numbers), so differences between points are the policies',
not the dice's. Each point's record is written to ``evaluations/<label>.json`` when done;
a resumed run reads those instead of recomputing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tqdm.auto import tqdm

from peo_hub.fsutil import atomic_write_json
from peo_hub.policy import Preference, make_preference, weight_grid
from peo_hub.recipe import Recipe

if TYPE_CHECKING:
    from peo_hub.run import Plan, RunFolder

SAMPLE_REPLIES = 6  # replies kept per prompt in a record, for reading what a point says


def family_points(recipe: Recipe) -> list[tuple[str, Preference]]:
    """(method, preference) for the base, every soup point and every extrapolated point."""
    aspects = list(recipe.aspects)
    points: list[tuple[str, Preference]] = [("base", make_preference(aspects, coefficients={a: 0.0 for a in aspects}))]
    for alpha in recipe.sweep.alphas:
        for weights in weight_grid(aspects, recipe.sweep.weights):
            points.append(("soup" if alpha == 0 else "peo", make_preference(aspects, weights, alpha=alpha)))
    return points


def _record(method: str, label: str, preference: Preference | None, metrics: dict[str, Any],
            prompts: list[str], replies: list[list[str]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "label": label,
        "method": method,
        "weights": None if preference is None else preference.weights,
        "alpha": None if preference is None else preference.alpha,
        "coefficients": None if preference is None else preference.coefficients,
        "metrics": metrics,
        "samples": {p: rs[:SAMPLE_REPLIES] for p, rs in zip(prompts, replies)},
        **(extra or {}),
    }


def _front_point(record: dict[str, Any]) -> dict[str, Any]:
    """What front.json keeps of a record: everything but the raw scores and sample replies."""
    point = {k: v for k, v in record.items() if k not in ("samples", "recipe_hash")}
    point["metrics"] = {a: {k: v for k, v in m.items() if k != "scores"} for a, m in record["metrics"].items()}
    return point


def run_sweep(plan: "Plan", run: "RunFolder", morl_records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate all points (resuming from ``evaluations/``); returns front.json point dicts."""
    from peo_hub.chat import render_prompt
    from peo_hub.engines import generate_replies
    from peo_hub.evaluate import score_replies
    from peo_hub.judges import build_judge
    from peo_hub.model import PEOModel

    recipe, tokenizer, out = plan.recipe, plan.tokenizer, run.root
    spec = recipe.evaluate
    raw_prompts = plan.prompts
    rendered = [render_prompt(tokenizer, p) for p in raw_prompts]
    judges = {aspect: build_judge(a.judge) for aspect, a in recipe.aspects.items()}
    folder = run.evaluations
    folder.mkdir(parents=True, exist_ok=True)

    def evaluate(generate_with: Any, method: str, label: str, preference: Preference | None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
        path = folder / f"{method}-{label}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        replies = generate_replies(generate_with, tokenizer, rendered, spec, seed=recipe.seed)
        metrics = score_replies(raw_prompts, replies, judges, spec.bootstrap, seed=recipe.seed)
        record = _record(method, label, preference, metrics, raw_prompts, replies, extra)
        record["recipe_hash"] = run.fingerprint_hash
        atomic_write_json(path, record)
        return record

    records = []
    family = family_points(recipe)
    model: PEOModel | None = None
    bar = tqdm(total=len(family) + len(morl_records), desc="sweep", unit="point")
    for method, preference in family:
        label = preference.label()
        bar.set_postfix_str(f"{method} {label}")
        if not (folder / f"{method}-{label}.json").is_file() and model is None:
            model = PEOModel.from_pretrained(out, device=_device())
        if model is not None:
            model.set_preference(coefficients=preference.coefficients)
        records.append(evaluate(model, method, label, preference))
        bar.update(1)
    del model

    for label, info in morl_records.items():
        bar.set_postfix_str(f"morl {label}")
        loader: Callable[[], Any] = lambda info=info: _load_peft(run.base_path(plan.base), plan.base.revision,
                                                                 out / info["adapter"])
        path = folder / f"morl-{label}.json"
        generator = None if path.is_file() else loader()
        preference = make_preference(list(recipe.aspects), info["weights"])
        record = evaluate(generator, "morl", label, preference,
                          {"train_seconds": info.get("train_seconds"), "adapter": info["adapter"]})
        # A MORL policy is its own model: its weights say what it was trained for, not a mix of adapters.
        record["coefficients"] = None
        record["alpha"] = None
        records.append(record)
        bar.update(1)
    bar.close()
    return [_front_point(r) for r in records]


def _load_peft(base: str, revision: str | None, adapter: Path) -> Any:
    """A MORL baseline: its own adapter on the run's base, at the recipe's base revision."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, revision=revision)
    return PeftModel.from_pretrained(model, str(adapter)).eval().to(_device() or "cpu")


def _device() -> str | None:
    """Generate where the compute is: a sweep on a GPU machine must not run on its CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else None
