"""The sweep: evaluate every point of the PEO family (and the baselines) on held-out prompts.

All family points share one loaded model and switch preference live (a scale change per
LoRA layer, no copy), so a sweep costs generation, not loading. Every point uses the same
sampling seed (common random numbers), so differences between points are the policies',
not the dice's. Each point's record is written to ``evaluations/<label>.json`` when done;
a resumed run reads those instead of recomputing.

A record keeps every judge score grouped by prompt and the degeneration guard's measures
per reply (:mod:`peo_hub.core.measures`); what the front reports from them (the selection /
confirmation split, the intervals) is :mod:`peo_hub.evaluate.confirm`'s job.

The baselines named in ``sweep.baselines`` come after: ``soup`` is the family at alpha 0,
``morl`` the recipe's own adapters (evaluated last, each loaded on its own), and every other
name a registered baseline (:mod:`peo_hub.evaluate.baselines`: ``system_prompt``, ``mod``,
``steer``) whose points share the live model and are recorded like the family's. Every record
also keeps each reply's refusal flag and, when the label set (``sweep.harmful_labels``,
:mod:`peo_hub.evaluate.labels`) flags every evaluation prompt, the prompts' harmful flags: the
refusal plane (:mod:`peo_hub.evaluate.refusal_plane`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

from tqdm.auto import tqdm

from peo_hub.core.measures import text_measures
from peo_hub.core.policy import Preference, make_preference, weight_grid
from peo_hub.core.stats import split_prompts
from peo_hub.evaluate.baselines.registry import check_baselines
from peo_hub.evaluate.config import EvaluateSpec, SweepSpec
from peo_hub.evaluate.labels import require_labels, sweep_labels
from peo_hub.evaluate.logprob import BaseLogprob
from peo_hub.evaluate.records import RecordStore, make_record
from peo_hub.evaluate.refusal_plane import refusal_flags

if TYPE_CHECKING:
    from peo_hub.evaluate.baselines.registry import BaselineContext
    from peo_hub.family.model import PEOModel
    from peo_hub.judges.registry import JudgeSpec

BATCH_POINTS = True  # many points per generate call (False: point by point, as before; benchmarks compare both)


class Grid(Protocol):
    """What the family's grid is made of: the aspects (in order) and the sweep settings."""

    @property
    def aspects(self) -> Mapping[str, Any]: ...

    @property
    def sweep(self) -> SweepSpec: ...


@dataclass
class SweepJob:
    """One sweep, in the evaluate stage's own terms: what to evaluate, where, and how.

    Whoever runs a sweep (``recipe run``, ``peo-hub evaluate``, a benchmark) builds one; the
    sweep knows nothing of the recipe or the run folder it came from.
    """

    bundle: Path  # the bundle whose adapters make the family (loaded live, as PEOModel)
    records: RecordStore  # evaluations/: one record per point, the resume state
    aspects: dict[str, "JudgeSpec"]  # aspect -> its judge, in the bundle's order
    sweep: SweepSpec
    evaluate: EvaluateSpec
    seed: int
    prompts: list[Any]  # the evaluation prompts, unrendered
    tokenizer: Any
    base: str  # the base model (a folder or Hub id): the guard's reference and the baselines' base
    base_revision: str | None = None
    stamp: str = ""  # the evaluation's hash, written into every record (mixing two evaluations is refused)
    morl: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> {adapter (relative), weights, ...}
    # Another training seed's records (the run's first seed): a point no training touches (the base,
    # training-free baselines) replies the same for every seed, so it is evaluated once and copied.
    shared: RecordStore | None = None


def family_points(grid: Grid) -> list[tuple[str, Preference]]:
    """(method, preference) for the base, every soup point and every extrapolated point."""
    aspects = list(grid.aspects)
    points: list[tuple[str, Preference]] = [("base", make_preference(aspects, coefficients={a: 0.0 for a in aspects}))]
    for alpha in grid.sweep.alphas:
        for weights in weight_grid(aspects, grid.sweep.weights):
            points.append(("soup" if alpha == 0 else "peo", make_preference(aspects, weights, alpha=alpha)))
    return points


def _measuring_model(bundle: Path, device: str | None) -> "PEOModel":
    """The bundle's PEOModel for the sweep, which measures points outside its own grid on purpose."""
    from peo_hub.family.model import PEOModel

    model = PEOModel.from_pretrained(bundle, device=device)
    model.range_warnings = False
    return model


def run_sweep(job: SweepJob) -> list[dict[str, Any]] | None:
    """Evaluate all points (resuming from ``evaluations/``); returns their evaluation records.

    Under ``accelerate launch`` (or ``torchrun``) with N processes, process r evaluates the
    family points and MORL baselines whose index is r mod N, each on
    its own device; then process 0 gathers every record from ``evaluations/`` and returns
    them, and the other processes return ``None`` (they must not write the front).
    """
    shard = _shard()
    if shard is None:
        return _sweep(job)
    _sweep(job, shard=shard)
    shard.barrier()
    if shard.rank != 0:
        return None
    return _sweep(job)  # every record is on disk now: this only reads them


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


def _sweep(job: SweepJob, shard: Shard | None = None) -> list[dict[str, Any]]:
    """Evaluate every point (or only ``shard``'s share), resuming from ``evaluations/``."""
    from peo_hub.data.chat import render_prompt
    from peo_hub.evaluate.score import score_replies
    from peo_hub.family.engines import generate_replies
    from peo_hub.judges.registry import build_judge

    tokenizer, store, spec = job.tokenizer, job.records, job.evaluate
    raw_prompts = job.prompts
    rendered = [render_prompt(tokenizer, p) for p in raw_prompts]
    judges = {aspect: build_judge(judge) for aspect, judge in job.aspects.items()}
    store.folder.mkdir(parents=True, exist_ok=True)
    base_logprob: list[BaseLogprob] = []  # built on first use: a resumed sweep may need none
    selection, _ = split_prompts(len(raw_prompts), spec.selection_fraction, job.seed)
    selected = set(selection)
    device = _device() if shard is None else shard.device
    loaded: list[PEOModel] = []  # the bundle's live model, loaded on first need
    # evaluate.engine: vllm: rounds of points, the guard and the MORL baselines all go to one vLLM engine
    vllm_side = VllmSide(job) if getattr(spec, "engine", "transformers") == "vllm" else None

    def live() -> "PEOModel":
        if not loaded:
            loaded.append(_measuring_model(job.bundle, device))
        return loaded[0]

    def at(preference: Preference) -> Callable[[], Any]:
        """The live model switched to ``preference`` (loaded only when something is generated)."""
        def policy() -> Any:
            model = live()
            model.set_preference(coefficients=preference.coefficients)
            return model
        return policy

    labels = sweep_labels(job.sweep.harmful_labels, job.aspects, raw_prompts)
    check_baselines(job.sweep, tokenizer, raw_prompts)
    harmful = None if labels is None else labels.flags(raw_prompts)

    def done(kind: str, label: str) -> bool:
        """Whether ``kind-label`` is on disk here, copying it from ``job.shared`` when no training touches it."""
        if store.finished(kind, label):
            return True
        if job.shared is None or not untrained(kind, job.sweep, list(job.aspects)) \
                or not job.shared.finished(kind, label):
            return False
        store.write(kind, label, {**job.shared.read(kind, label), "shared_from_seed": job.seed})
        return True

    def evaluate(generate_with: Any, method: str, label: str, preference: Preference | None,
                 extra: dict[str, Any] | None = None, only: list[int] | None = None,
                 prefix: str | None = None, replies: list[list[str]] | None = None) -> dict[str, Any]:
        """One policy's record on every prompt (or the prompts ``only`` names), written once.

        ``replies`` are the point's replies when a batched pass already generated them.
        """
        kind = prefix or method
        if done(kind, label):
            return store.read(kind, label)
        keep = range(len(raw_prompts)) if only is None else only
        prompts, texts = [raw_prompts[i] for i in keep], [rendered[i] for i in keep]
        if replies is None:
            if callable(generate_with) and not hasattr(generate_with, "generate"):
                generate_with = generate_with()  # a lazy policy: loaded only when something is generated
            replies = generate_replies(generate_with, tokenizer, texts, spec, seed=job.seed)
        metrics = score_replies(prompts, replies, judges, spec.bootstrap, seed=job.seed)
        record = make_record(method, label, preference, metrics, prompts, replies, extra)
        record["refusal"] = refusal_flags(replies)
        if harmful is not None:
            record["harmful"] = [harmful[i] for i in keep]
        if not base_logprob:
            base_logprob.append(vllm_side.base_logprob() if vllm_side is not None
                                else BaseLogprob(job.base, job.base_revision, tokenizer, device))
        # The guard reads the selection prompts only (it helps choose, like the front): the
        # base model's forward over every reply is spent there, and null elsewhere.
        guarded = [pos for pos, i in enumerate(keep) if i in selected]
        scored = base_logprob[0]([texts[pos] for pos in guarded], [replies[pos] for pos in guarded])
        logprob: list[list[float | None]] = [[None] * len(group) for group in replies]
        for pos, values in zip(guarded, scored):
            logprob[pos] = values
        record["guard"] = {**text_measures(tokenizer, replies), "base_logprob": logprob}
        record["recipe_hash"] = job.stamp
        store.write(kind, label, record)
        return record

    def evaluate_points(points: list[tuple[str, Preference, dict[str, Any] | None]], only: list[int] | None = None,
                        prefix: str | None = None) -> list[dict[str, Any]]:
        """Records of many family points, in order; those not on disk are generated together.

        Rows are points x prompts x samples, one preference per row (:func:`point_replies`);
        each point's record is written as soon as its rows are done, so a stopped sweep
        resumes per point. Point by point where batching is off or the engine cannot.
        """
        keep = list(range(len(raw_prompts))) if only is None else only
        todo = [k for k, (method, preference, _) in enumerate(points)
                if not done(prefix or method, preference.label())]
        if todo and (vllm_side is not None or (len(todo) > 1 and batched_points(spec))):
            texts = [rendered[i] for i in keep]
            wanted = [points[t][1] for t in todo]
            batches = vllm_side.point_replies(texts, wanted) if vllm_side is not None else \
                point_replies(live(), tokenizer, texts, wanted, spec, job.seed)
            for k, replies in batches:
                method, preference, extra = points[todo[k]]
                bar.set_postfix_str(f"{prefix or method} {preference.label()}")
                evaluate(None, method, preference.label(), preference, extra, only=only, prefix=prefix,
                         replies=replies)
                bar.update(1)
            todo = []
        records = []
        for k, (method, preference, extra) in enumerate(points):
            if k in todo:
                bar.set_postfix_str(f"{prefix or method} {preference.label()}")
            records.append(evaluate(at(preference), method, preference.label(), preference, extra, only=only,
                                    prefix=prefix))
            if k in todo:
                bar.update(1)
        return records

    family = family_points(job)
    mine = [i for i in range(len(family)) if shard is None or shard.owns(i)]
    baselines = baseline_points(job, shard)
    bar = tqdm(total=len(mine) + len(baselines) + len(job.morl), desc="sweep", unit="point",
               disable=bool(shard and shard.rank))
    records = evaluate_points([(*family[i], None) for i in mine])
    if baselines:
        from peo_hub.evaluate.baselines.registry import BaselineContext

        context = BaselineContext(model=live, tokenizer=tokenizer, prompts=raw_prompts, rendered=rendered,
                                  aspects=list(job.aspects), sweep=job.sweep, evaluate=spec, seed=job.seed,
                                  labels=lambda: require_labels(labels, job.sweep.harmful_labels, job.aspects))
        records += _evaluate_baselines(baselines, context, store, done, evaluate, bar)
    loaded.clear()  # free the live model before the MORL baselines load theirs

    for j, (label, info) in enumerate(job.morl.items()):
        if shard is not None and not shard.owns(j):
            continue
        bar.set_postfix_str(f"morl {label}")
        preference = make_preference(list(job.aspects), info["weights"])
        generator, replies = None, None
        if store.finished("morl", label):
            pass
        elif vllm_side is not None:
            replies = vllm_side.adapter_replies(rendered, job.bundle / info["adapter"])
        else:
            generator = _load_peft(job.base, job.base_revision, job.bundle / info["adapter"], device)
        record = evaluate(generator, "morl", label, preference,
                          {"train_seconds": info.get("train_seconds"), "adapter": info["adapter"]}, replies=replies)
        # A MORL policy is its own model: its weights say what it was trained for, not a mix of adapters.
        record["coefficients"] = None
        record["alpha"] = None
        records.append(record)
        bar.update(1)
    bar.close()
    return records


class VllmSide:
    """The sweep's use of the vLLM engine (:mod:`peo_hub.family.vllm_engine`): one engine for the run's base.

    A round of points is exported (one exact LoRA adapter each, in a scratch folder) and
    generated in one ``generate`` call; the guard's base log-probs and the MORL baselines use
    the same engine. Its ``max_lora_rank`` holds the bundle's export rank (the largest
    per-module sum of the aspects' ranks), which no MORL adapter exceeds.
    """

    def __init__(self, job: SweepJob) -> None:
        from peo_hub.bundle.manifest import open_bundle
        from peo_hub.family.lora import cat_adapters, load_bundle_adapters
        from peo_hub.family.vllm_engine import import_vllm, settings_of

        import_vllm()
        self.job = job
        self.bundle = open_bundle(job.bundle)
        self.adapters = load_bundle_adapters(self.bundle)
        self.rank = cat_adapters(self.adapters, {a: 1.0 for a in self.bundle.aspects})[1]
        self.settings = settings_of(job.evaluate)

    def engine(self, rank: int = 0) -> Any:
        from peo_hub.family.vllm_engine import VllmEngine

        return VllmEngine.for_base(str(self.job.base), self.job.base_revision, max(rank, self.rank), self.settings,
                                   self.job.seed)

    def _rows(self, rendered: list[str]) -> tuple[list[str], list[int | None]]:
        from peo_hub.family.engines import point_rows

        spec = self.job.evaluate
        return point_rows(rendered, spec.samples, self.job.seed, greedy=spec.temperature == 0)

    def point_replies(self, rendered: list[str], points: list[Preference]) -> Iterator[tuple[int, list[list[str]]]]:
        """``(k, replies)`` of every point, generated together (the bare base for the all-zero point)."""
        import tempfile

        from peo_hub.family.engines import group_rows
        from peo_hub.family.merge import export_adapter
        from peo_hub.family.vllm_engine import generate_points

        texts, seeds = self._rows(rendered)
        with tempfile.TemporaryDirectory(prefix="peo-vllm-round-") as scratch:
            folders = [None if all(c == 0.0 for c in p.coefficients.values())
                       else str(export_adapter(self.bundle, p, Path(scratch) / f"point-{k}", adapters=self.adapters))
                       for k, p in enumerate(points)]
            replies = generate_points(self.engine, self.job.tokenizer, texts, seeds, folders, self.job.evaluate)
        for k, flat in enumerate(replies):
            yield k, group_rows(flat, self.job.evaluate.samples)

    def adapter_replies(self, rendered: list[str], adapter: Path) -> list[list[str]]:
        """A saved adapter's replies (a MORL baseline), as it is."""
        from peo_hub.family.engines import group_rows
        from peo_hub.family.vllm_engine import generate_points

        texts, seeds = self._rows(rendered)
        flat = generate_points(self.engine, self.job.tokenizer, texts, seeds, [str(adapter)], self.job.evaluate)[0]
        return group_rows(flat, self.job.evaluate.samples)

    def base_logprob(self) -> Any:
        from peo_hub.family.vllm_engine import VllmBaseLogprob

        return VllmBaseLogprob(self.engine(), self.job.tokenizer)
def baseline_points(job: SweepJob, shard: Shard | None) -> list[tuple[str, Any]]:
    """(baseline name, point) for every registered baseline's point this process evaluates, in order.

    Ownership counts the points of all baselines together, so a sharded sweep spreads them evenly.
    """
    from peo_hub.evaluate.baselines import BASELINES

    points = [(name, point) for name in job.sweep.baselines if name in BASELINES
              for point in BASELINES[name].points(job.sweep, list(job.aspects), job.tokenizer)]
    return [item for j, item in enumerate(points) if shard is None or shard.owns(j)]


def _evaluate_baselines(points: list[tuple[str, Any]], context: "BaselineContext", store: RecordStore,
                        done: Callable[[str, str], bool], evaluate: Callable[..., dict[str, Any]], bar: Any
                        ) -> list[dict[str, Any]]:
    """Records of the baselines' points, in order; each baseline generates its unfinished points in one go.

    A baseline point is its own policy (a prompt, a decoding rule, a steered base), not a mix
    of adapters: its record has ``weights`` where it has some (MOD) and no ``alpha`` or
    ``coefficients``; ``dial`` says where on its own dial it sits.
    """
    from peo_hub.evaluate.baselines import BASELINES

    for name in dict.fromkeys(n for n, _ in points):
        baseline = BASELINES[name]
        mine = [p for n, p in points if n == name]
        todo = [p for p in mine if not done(name, p.label)]
        bar.update(len(mine) - len(todo))
        if todo:
            bar.set_postfix_str(name)
        for k, replies, more in baseline.replies(context, todo) if todo else ():
            point = todo[k]
            dial = None if point.dial is None else {"name": baseline.dial.split(":")[0], "value": point.dial}
            evaluate(None, name, point.label, None, {"weights": point.weights, "dial": dial, **point.extra, **more},
                     replies=replies)
            bar.update(1)
    return [store.read(n, p.label) for n, p in points]


def untrained(method: str, sweep: Any, aspects: list[str]) -> bool:
    """Whether a method's points are the same policy for every training seed: the base, and the
    baselines that need no training (``training_runs`` 0 in their cost: system_prompt, steer)."""
    from peo_hub.evaluate.baselines import BASELINES

    if method == "base":
        return True
    return method in BASELINES and BASELINES[method].cost(sweep, aspects).get("training_runs") == 0


def batched_points(spec: Any) -> bool:
    """Whether the sweep may generate many points in one pass (the transformers engine, not turned off)."""
    return BATCH_POINTS and getattr(spec, "engine", "transformers") == "transformers"


def point_replies(model: Any, tokenizer: Any, rendered: list[str], points: list[Preference], spec: Any,
                  seed: int) -> Iterator[tuple[int, list[list[str]]]]:
    """``(k, replies)`` for ``points[k]`` as soon as its rows are generated, in order.

    Rows are points x prompts x samples, one preference per row, ``spec.batch_size`` rows per
    ``generate``; a row's reply is what the point alone would give it (greedy: the same
    tokens; sampled: the same per-row seed, :func:`peo_hub.family.engines.row_seed`).
    """
    from peo_hub.evaluate.baselines.registry import by_point
    from peo_hub.family.engines import generate_rows

    per_point = len(rendered) * spec.samples
    texts = [t for _ in points for t in rendered for _ in range(spec.samples)]
    samples = [k for _ in points for _ in rendered for k in range(spec.samples)]
    preferences = [p for p in points for _ in range(per_point)]
    chunks = generate_rows(model, tokenizer, texts, samples, spec, seed, preferences=preferences)
    yield from by_point((chunk for _, chunk in chunks), len(points), len(rendered), spec.samples)


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
