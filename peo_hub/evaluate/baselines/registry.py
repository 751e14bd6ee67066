"""The baseline registry: methods a skeptic tries before PEO, evaluated in the same sweep, by name.

A baseline here is a method that needs no training of its own in the recipe's run (``soup``
is the family at alpha 0 and ``morl`` trains its own adapters: the recipe provides those).
Each registered baseline says three things:

* its **points**: the settings of its dial (a system prompt's strength, a steering scale,
  MOD's weight vector), each a :class:`BaselinePoint` with a label (its record is
  ``evaluations/<name>-<label>.json``) and a dial value (for controllability);
* its **replies**: a generator that, given the sweep's :class:`BaselineContext` and the
  points still to evaluate, yields ``(k, replies, extra)`` as each point's replies are done
  (``extra``: record fields known only then, e.g. the steering direction's layer), so the
  sweep writes each record at once (a stopped sweep resumes per point);
* its **cost**: training runs and forward passes per generated token, for front.json's
  ``method_cost``;
* optionally a **check** that fails early, in one line, where the baseline cannot mean what
  it says (e.g. a chat template that drops the system prompt), run by the pre-flight and
  again when the sweep starts.

Adding a baseline is one module that calls :func:`register_baseline` (imported by
:mod:`peo_hub.evaluate.baselines`), plus a settings class in :mod:`peo_hub.evaluate.config` if it
has settings; the recipe then names it in ``sweep.baselines``. See docs/baselines.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from peo_hub.core.policy import Preference, make_preference

if TYPE_CHECKING:
    from peo_hub.evaluate.labels import HarmfulLabels
    from peo_hub.family.model import PEOModel


@dataclass(frozen=True)
class BaselinePoint:
    """One setting of a baseline's dial.

    ``dial`` is the slider's value (controllability ranks scores by it); ``weights`` are the
    preference weights for baselines dialled by weights, like the family (MOD: no ``dial``
    then, controllability reads the weights); ``extra`` goes into the record and the front
    point as it is (e.g. the system prompt's text, the steering scale).
    """

    label: str
    dial: float | None = None
    weights: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BaselineContext:
    """What a baseline's generation gets from the sweep (the evaluate stage's own terms)."""

    model: Callable[[], "PEOModel"]  # the bundle's live model, loaded on first call
    tokenizer: Any
    prompts: list[Any]  # the evaluation prompts, raw
    rendered: list[str]  # the same prompts as the policies see them
    aspects: list[str]
    sweep: Any  # the SweepSpec (each baseline reads its own settings)
    evaluate: Any  # the EvaluateSpec (sampling, batch size)
    seed: int
    labels: Callable[[], "HarmfulLabels"]  # the harmful label set (steer's direction prompts), read on demand


#: ``(k, replies grouped by prompt, extra record fields)`` for ``points[k]``, as each is done.
Replies = Iterator[tuple[int, list[list[str]], dict[str, Any]]]


@dataclass(frozen=True)
class Baseline:
    name: str
    summary: str
    dial: str  # what the dial is, in a few words
    points: Callable[[Any, list[str], Any], list[BaselinePoint]]  # (sweep spec, aspects, tokenizer) -> the dial
    replies: Callable[[BaselineContext, list[BaselinePoint]], Replies]
    cost: Callable[[Any, list[str]], dict[str, Any]]  # (sweep spec, aspects) -> training runs, passes per token
    check: Callable[[Any, Any, list[Any]], None] = lambda sweep, tokenizer, prompts: None  # raises a PEOError


def check_baselines(sweep: Any, tokenizer: Any, prompts: list[Any]) -> None:
    """Every named baseline's own check (see :class:`Baseline`): before training, and before the sweep."""
    for name in sweep.baselines:
        if name in BASELINES:
            BASELINES[name].check(sweep, tokenizer, prompts)


BASELINES: dict[str, Baseline] = {}


def register_baseline(baseline: Baseline) -> Baseline:
    """Make a baseline known to recipes as ``sweep.baselines: [..., name]``."""
    BASELINES[baseline.name] = baseline
    return baseline


def base_preference(aspects: Sequence[str]) -> Preference:
    """Every coefficient 0: the live model is the base model (the base point's policy)."""
    return make_preference(aspects, coefficients={a: 0.0 for a in aspects})


def rows_per_point(context: BaselineContext, texts: list[list[str]]) -> Replies:
    """The base model's replies, point by point: ``texts[k]`` are point k's rendered prompts.

    All points' rows (point x prompt x sample) go through one batched pass at the base
    (every coefficient 0), yielding each point as soon as its rows are done. Sampled rows use
    the prompt's row seed of the *evaluation* prompt (not of the changed text), so a baseline
    point sees the random numbers every family point sees for that prompt and sample.
    """
    from peo_hub.family.engines import generate_rows

    spec = context.evaluate
    model = context.model()
    model.set_preference(coefficients=base_preference(context.aspects).coefficients)
    rows = [t for point in texts for t in point for _ in range(spec.samples)]
    samples = [s for point in texts for _ in point for s in range(spec.samples)]
    named = [context.rendered[i] for _ in texts for i in range(len(context.rendered)) for _ in range(spec.samples)]
    chunks = generate_rows(model, context.tokenizer, rows, samples, spec, context.seed, seed_texts=named)
    for k, replies in by_point((chunk for _, chunk in chunks), len(texts), len(context.rendered), spec.samples):
        yield k, replies, {}


def by_point(chunks: Iterator[list[str]], points: int, prompts: int, samples: int
             ) -> Iterator[tuple[int, list[list[str]]]]:
    """Flat replies (point x prompt x sample, in chunks as batches end) regrouped: ``(k, replies by prompt)``
    for point k as soon as its last row is in."""
    replies: list[str] = []
    done = 0
    per_point = prompts * samples
    for chunk in chunks:
        replies += chunk
        while done < points and len(replies) >= (done + 1) * per_point:
            flat = replies[done * per_point:(done + 1) * per_point]
            yield done, [flat[i * samples:(i + 1) * samples] for i in range(prompts)]
            done += 1


def method_costs(methods: Sequence[str], sweep: Any, aspects: list[str], morl_runs: int) -> dict[str, dict[str, Any]]:
    """front.json's ``method_cost``: per method present, its training runs and forward passes per token.

    ``training_runs`` counts the DPO runs a method's points rest on (PEO's aspect adapters are
    shared by soup, PEO and MOD); ``new_training_runs`` those it adds to a PEO run. A forward
    pass is one pass of the base model's size over one row; live LoRA adds each adapter's
    low-rank products to it (a fused point runs at exactly the base's cost).
    """
    n = len(aspects)
    known: dict[str, dict[str, Any]] = {
        "base": {"training_runs": 0, "new_training_runs": 0, "forward_passes_per_token": 1.0},
        "soup": {"training_runs": n, "new_training_runs": 0, "forward_passes_per_token": 1.0,
                 "notes": "the aspect adapters, averaged (alpha = 0)"},
        "peo": {"training_runs": n, "new_training_runs": 0, "forward_passes_per_token": 1.0,
                "notes": "one DPO run per aspect; any weights and alpha after that, live or fused"},
        "morl": {"training_runs": morl_runs, "new_training_runs": morl_runs, "forward_passes_per_token": 1.0,
                 "notes": "one DPO run per weight vector, on the mixed data"},
    }
    out = {}
    for method in dict.fromkeys(methods):
        if method in BASELINES:
            cost = BASELINES[method].cost(sweep, aspects)
            out[method] = {"new_training_runs": 0, **cost, "dial": BASELINES[method].dial}
        elif method in known:
            out[method] = known[method]
    return out
