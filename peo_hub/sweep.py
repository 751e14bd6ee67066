"""The sweep: evaluate every point of the PEO family (and the baselines) on held-out prompts.

All family points share one loaded model and switch preference live (a scale change per
LoRA layer, no copy), so a sweep costs generation, not loading. Every point uses the same
sampling seed (common random numbers), so differences between points are the policies',
not the dice's. Each point's record is written to ``evaluations/<label>.json`` when done;
a resumed run reads those instead of recomputing.

A record keeps every judge score grouped by prompt and the degeneration guard's measures
per reply (:mod:`peo_hub.guard`); what the front reports from them (the selection /
confirmation split, the intervals) is :mod:`peo_hub.confirm`'s job. With ``sweep.search``,
each weight vector also gets a bounded search over alpha on the selection prompts
(:mod:`peo_hub.search`); its trials are recorded as ``search-trial-*.json`` and the alpha
it keeps is evaluated on every prompt like a grid point (``source: search``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from tqdm.auto import tqdm

from peo_hub.fsutil import atomic_write_json
from peo_hub.guard import BaseLogprob, flag_reasons, summarise, text_measures
from peo_hub.policy import Preference, make_preference, weight_grid
from peo_hub.recipe import Recipe
from peo_hub.search import search_alpha, trials_json
from peo_hub.stats import prompt_sums, ratio_mean, split_prompts

if TYPE_CHECKING:
    from peo_hub.model import PEOModel
    from peo_hub.run import Plan, RunFolder

SAMPLE_REPLIES = 6  # replies kept per prompt in a record, for reading what a point says
BATCH_POINTS = True  # many points per generate call (False: point by point, as before; benchmarks compare both)


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
        "prompts": prompts,
        "samples": {p: rs[:SAMPLE_REPLIES] for p, rs in zip(prompts, replies)},
        **(extra or {}),
    }


def _measuring_model(bundle: Path, device: str | None) -> "PEOModel":
    """The bundle's PEOModel for the sweep, which measures points outside its own grid on purpose."""
    from peo_hub.model import PEOModel

    model = PEOModel.from_pretrained(bundle, device=device)
    model.range_warnings = False
    return model


def run_sweep(plan: "Plan", run: "RunFolder", morl_records: dict[str, dict[str, Any]]
              ) -> list[dict[str, Any]] | None:
    """Evaluate all points (resuming from ``evaluations/``); returns their evaluation records.

    Under ``accelerate launch`` (or ``torchrun``) with N processes, process r evaluates the
    family points, searched weight vectors and MORL baselines whose index is r mod N, each on
    its own device; then process 0 gathers every record from ``evaluations/`` and returns
    them, and the other processes return ``None`` (they must not write the front).
    """
    shard = _shard()
    if shard is None:
        return _sweep(plan, run, morl_records)
    _sweep(plan, run, morl_records, shard=shard)
    shard.barrier()
    if shard.rank != 0:
        return None
    return _sweep(plan, run, morl_records)  # every record is on disk now: this only reads them


@dataclass
class Shard:
    """This process's share of a sweep run by several processes (``accelerate launch``)."""

    rank: int
    world: int
    device: str | None
    barrier: Callable[[], None]

    def owns(self, index: int) -> bool:
        return index % self.world == self.rank


def _shard() -> Shard | None:
    """This process's :class:`Shard` when launched as one of several processes, else ``None``.

    The barrier runs on its own gloo group with a long timeout: processes wait for the slowest
    one's share, which can take far longer than the default 10-30 minutes.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    group = dist.new_group(backend="gloo", timeout=timedelta(days=7))
    device = str(state.device) if torch.cuda.is_available() else None
    return Shard(state.process_index, state.num_processes, device, lambda: dist.barrier(group=group))


def _sweep(plan: "Plan", run: "RunFolder", morl_records: dict[str, dict[str, Any]],
           shard: Shard | None = None) -> list[dict[str, Any]]:
    """Evaluate every point (or only ``shard``'s share), resuming from ``evaluations/``."""
    from peo_hub.chat import render_prompt
    from peo_hub.engines import generate_replies
    from peo_hub.evaluate import score_replies
    from peo_hub.judges import build_judge

    recipe, tokenizer, out = plan.recipe, plan.tokenizer, run.root
    spec = recipe.evaluate
    raw_prompts = plan.prompts
    rendered = [render_prompt(tokenizer, p) for p in raw_prompts]
    judges = {aspect: build_judge(a.judge) for aspect, a in recipe.aspects.items()}
    folder = run.evaluations
    folder.mkdir(parents=True, exist_ok=True)
    base_logprob: list[BaseLogprob] = []  # built on first use: a resumed sweep may need none

    def evaluate(generate_with: Any, method: str, label: str, preference: Preference | None,
                 extra: dict[str, Any] | None = None, only: list[int] | None = None,
                 prefix: str | None = None, replies: list[list[str]] | None = None) -> dict[str, Any]:
        """One policy's record on every prompt (or the prompts ``only`` names), written once.

        ``replies`` are the point's replies when a batched pass already generated them.
        """
        path = folder / f"{prefix or method}-{label}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        keep = range(len(raw_prompts)) if only is None else only
        prompts, texts = [raw_prompts[i] for i in keep], [rendered[i] for i in keep]
        if replies is None:
            if callable(generate_with) and not hasattr(generate_with, "generate"):
                generate_with = generate_with()  # a lazy policy: loaded only when something is generated
            replies = generate_replies(generate_with, tokenizer, texts, spec, seed=recipe.seed)
        metrics = score_replies(prompts, replies, judges, spec.bootstrap, seed=recipe.seed)
        record = _record(method, label, preference, metrics, prompts, replies, extra)
        if not base_logprob:
            base_logprob.append(BaseLogprob(run.base_path(plan.base), plan.base.revision, tokenizer, device))
        record["guard"] = {**text_measures(tokenizer, replies), "base_logprob": base_logprob[0](texts, replies)}
        record["recipe_hash"] = run.fingerprint_hash
        atomic_write_json(path, record)
        return record

    family = family_points(recipe)
    mine = [i for i in range(len(family)) if shard is None or shard.owns(i)]
    device = _device() if shard is None else shard.device
    model: PEOModel | None = None
    bar = tqdm(total=len(mine) + len(morl_records), desc="sweep", unit="point", disable=bool(shard and shard.rank))
    todo = [i for i in mine if not (folder / f"{family[i][0]}-{family[i][1].label()}.json").is_file()]
    if todo:
        model = _measuring_model(out, device)
    if len(todo) > 1 and batched_points(spec):
        # Many points in one pass: rows = points x prompts x samples, one preference per row;
        # each point's record is written as soon as its last row is generated (resumable).
        assert model is not None
        points = [family[i][1] for i in todo]
        for k, replies in point_replies(model, tokenizer, rendered, points, spec, recipe.seed):
            method, preference = family[todo[k]]
            bar.set_postfix_str(f"{method} {preference.label()}")
            evaluate(None, method, preference.label(), preference, replies=replies)
            bar.update(1)
    records: list[dict[str, Any]] = []
    for i in mine:
        method, preference = family[i]
        label = preference.label()
        if not (folder / f"{method}-{label}.json").is_file():
            bar.set_postfix_str(f"{method} {label}")
            assert model is not None
            model.set_preference(coefficients=preference.coefficients)
            bar.update(1)
        records.append(evaluate(model, method, label, preference))
    bar.update(len(mine) - bar.n)
    if shard is not None:
        shard.barrier()  # the search compares with the base point's record, which one process wrote
        records = [json.loads((folder / f"base-{family[0][1].label()}.json").read_text(encoding="utf-8"))]
    if recipe.sweep.search is not None:
        selection, _ = split_prompts(len(raw_prompts), spec.selection_fraction, recipe.seed)
        records += _search(recipe, records[0], selection, evaluate,
                           lambda: model or _measuring_model(out, device),
                           owns=None if shard is None else shard.owns)
    model = None  # free the live model before the MORL baselines load theirs

    for j, (label, info) in enumerate(morl_records.items()):
        if shard is not None and not shard.owns(j):
            continue
        bar.set_postfix_str(f"morl {label}")
        loader: Callable[[], Any] = lambda info=info: _load_peft(run.base_path(plan.base), plan.base.revision,
                                                                 out / info["adapter"], device)
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
    return records


def batched_points(spec: Any) -> bool:
    """Whether the sweep may generate many points in one pass (the transformers engine, not turned off)."""
    return BATCH_POINTS and getattr(spec, "engine", "transformers") == "transformers"


def point_replies(model: Any, tokenizer: Any, rendered: list[str], points: list[Preference], spec: Any,
                  seed: int) -> Iterator[tuple[int, list[list[str]]]]:
    """``(k, replies)`` for ``points[k]`` as soon as its rows are generated, in order.

    Rows are points x prompts x samples, one preference per row, ``spec.batch_size`` rows per
    ``generate``; a row's reply is what the point alone would give it (greedy: the same
    tokens; sampled: the same per-row seed, :func:`peo_hub.engines.row_seed`).
    """
    from peo_hub.engines import generate_rows

    per_point = len(rendered) * spec.samples
    texts = [t for _ in points for t in rendered for _ in range(spec.samples)]
    samples = [k for _ in points for _ in rendered for k in range(spec.samples)]
    preferences = [p for p in points for _ in range(per_point)]
    replies: list[str] = []
    done = 0
    for _, chunk in generate_rows(model, tokenizer, texts, samples, spec, seed, preferences=preferences):
        replies += chunk
        while done < len(points) and len(replies) >= (done + 1) * per_point:
            flat = replies[done * per_point:(done + 1) * per_point]
            yield done, [flat[i * spec.samples:(i + 1) * spec.samples] for i in range(len(rendered))]
            done += 1


def _search(recipe: Recipe, base: dict[str, Any], selection: list[int], evaluate: Callable[..., dict[str, Any]],
            load: Callable[[], Any], owns: Callable[[int], bool] | None = None) -> list[dict[str, Any]]:
    """Per weight vector: search alpha on the selection prompts, then evaluate the alpha kept on all.

    Every trial is a record ``search-trial-<label>.json`` (so a resumed search replays from
    disk); the kept point's record says what the search cost (``search``).
    """
    assert recipe.sweep.search is not None
    aspects = list(recipe.aspects)
    local = list(range(len(selection)))  # a trial record holds the selection prompts only, in order
    base_guard = summarise(base["guard"], selection)
    model: list[Any] = []
    records = []

    def at(preference: Preference) -> Callable[[], Any]:
        """The model switched to ``preference``, loaded on first need (a replay from disk needs none)."""
        def policy() -> Any:
            if not model:
                model.append(load())
            model[0].set_preference(coefficients=preference.coefficients)
            return model[0]
        return policy

    for j, weights in enumerate(weight_grid(aspects, recipe.sweep.weights)):
        if owns is not None and not owns(j):
            continue

        def trial(alpha: float, weights: dict[str, float] = weights) -> tuple[dict[str, float], bool]:
            preference = make_preference(aspects, weights, alpha=alpha)
            record = evaluate(at(preference), "peo" if alpha else "soup", preference.label(), preference,
                              only=selection, prefix="search-trial")
            scores = {a: ratio_mean(*prompt_sums(record["metrics"][a]["scores"])) for a in aspects}
            flagged = bool(flag_reasons(summarise(record["guard"], local), base_guard, recipe.evaluate.guard))
            return scores, flagged

        best, history = search_alpha(trial, weights, recipe.sweep.search.bounds, recipe.sweep.search.evaluations)
        preference = make_preference(aspects, weights, alpha=best.alpha)
        cost = {"trials": len(history), "trial_prompts": len(selection), "trials_detail": trials_json(history)}
        records.append(evaluate(at(preference), "peo" if best.alpha else "soup", preference.label(), preference,
                                extra={"source": "search", "search": cost}, prefix="search"))
    return records


def _load_peft(base: str, revision: str | None, adapter: Path, device: str | None) -> Any:
    """A MORL baseline: its own adapter on the run's base, at the recipe's base revision."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, revision=revision)
    return PeftModel.from_pretrained(model, str(adapter)).eval().to(device or "cpu")


def _device() -> str | None:
    """Generate where the compute is: a sweep on a GPU machine must not run on its CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else None
