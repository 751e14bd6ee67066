"""``front.json``, typed: every evaluated policy, which are on the PEO front, hypervolumes, presets.

The file is a user-facing contract (README: "The front"). :class:`Front` is its one typed
form: the sweep builds it (:func:`build_front`), the bundle writes and reads it
(:meth:`Front.save`, :func:`load_front`), and the model card, the Space and
:class:`~peo_hub.family.model.PEOModel` read points and presets from it, never from raw JSON.

Selection and confirmation: a point may carry ``selection`` means (its scores on the
selection prompts) next to its ``metrics`` (the scores reported, on the confirmation
prompts). Everything that CHOOSES reads the selection means (``on_front``, presets, each
method's front), everything that is REPORTED reads the confirmation means (``metrics``,
``hypervolume``: the confirmation volume of the points each method's selection front
chose). A point without ``selection`` uses its ``metrics`` for both (fronts written before
the split). The intervals (``hypervolume_ci``, ``hypervolume_difference``, each metric's
``ci`` and ``vs_base``) come from per-prompt scores that live in ``evaluations/``, not here;
:mod:`peo_hub.evaluate.confirm` computes them.

Derived fields (``on_front``, ``hypervolume``, ``hypervolume_selection``, each point's
``guard.flagged``, ``presets``) follow from the points alone; :func:`check_front`
recomputes them so a hand edit or a bug cannot ship a front whose flags or numbers
contradict its own points. Additions to the file (new keys) are kept on load and written
back, so newer readers and older files get along.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peo_hub.utils.errors import BundleError, validation_message
from peo_hub.utils.fsutil import atomic_write_json, read_json
from peo_hub.core.measures import GuardThresholds, flag_reasons
from peo_hub.core.pareto import as_points, hypervolume, non_dominated_mask

FRONT_NAME = "front.json"

#: Methods whose points form "the PEO family": a rewarded soup is PEO with ``alpha = 0``, so
#: soups and extrapolated points are one family and share one front.
FAMILY_METHODS: tuple[str, ...] = ("soup", "peo")

#: Fixed score levels used by the threshold presets (scores are normalised to [0, 1]).
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.8, 0.9)

_ALPHA_TOL = 1e-12
_HV_RTOL = 1e-9
_HV_ATOL = 1e-12
_OPEN = ConfigDict(extra="allow", allow_inf_nan=False)


# --------------------------------------------------------------------------------------------
# The typed front
# --------------------------------------------------------------------------------------------


class Metric(BaseModel):
    """One aspect's score of one point: a mean in [0, 1] (higher is better) and its 95% interval."""

    model_config = _OPEN

    mean: float
    ci: tuple[float, float] | None = None


class Guard(BaseModel):
    """A point's degeneration measures (means over its selection replies) and whether they flag it.

    See :mod:`peo_hub.core.measures` for the measures and :class:`~peo_hub.core.measures.GuardThresholds`
    for when a point is flagged (relative to the base model's own replies).
    """

    model_config = _OPEN

    base_logprob: float | None = None
    distinct_2: float | None = None
    length: float | None = None
    flagged: bool = False
    reasons: list[str] = Field(default_factory=list)

    def measures(self) -> dict[str, float | None]:
        return {"base_logprob": self.base_logprob, "distinct_2": self.distinct_2, "length": self.length}


class FrontPoint(BaseModel):
    """One evaluated policy. ``weights``/``alpha``/``coefficients`` are ``None`` where they do not
    apply (the base has no weights; a MORL model is its own model, not a mix of adapters).

    ``metrics`` are the reported scores (confirmation prompts); ``selection`` the means on
    the selection prompts that chose the front and the presets (``None``: ``metrics`` did both).
    """

    model_config = _OPEN

    method: str = Field(min_length=1)
    weights: dict[str, float] | None = None
    alpha: float | None = None
    coefficients: dict[str, float] | None = None
    metrics: dict[str, Metric]
    on_front: bool = False
    selection: dict[str, float] | None = None
    guard: Guard | None = None

    def mean(self, aspect: str) -> float:
        return self.metrics[aspect].mean

    def selection_mean(self, aspect: str) -> float:
        """The score that chooses: the selection prompts' mean, else the reported one."""
        return self.selection[aspect] if self.selection is not None and aspect in self.selection else self.mean(aspect)

    @property
    def flagged(self) -> bool:
        return self.guard is not None and self.guard.flagged

    @property
    def label(self) -> str | None:
        value = (self.model_extra or {}).get("label")
        return value if isinstance(value, str) else None

    @property
    def in_family(self) -> bool:
        return self.method in FAMILY_METHODS


class Preset(BaseModel):
    """A named one-click choice among the front's points, and the rule that chose it."""

    model_config = _OPEN

    weights: dict[str, float] | None = None
    alpha: float | None = None
    coefficients: dict[str, float] | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    method: str | None = None
    point_index: int | None = None
    rule: str = ""
    maximise: str | None = None
    constraint: dict[str, Any] | None = None


class Difference(BaseModel):
    """A paired hypervolume difference (e.g. PEO - soup) on the confirmation prompts, with its interval.

    ``verdict``: ``"better"`` when the whole interval is above 0 (PEO beats the other method
    at the front's confidence level), ``"worse"`` when it is below 0, else ``"undecided"``.
    """

    model_config = _OPEN

    estimate: float
    ci: tuple[float, float] | None = None
    verdict: str = "undecided"


class EvaluationSplit(BaseModel):
    """Which evaluation prompts selected the front and which confirmed it (indices into the
    recipe's evaluation prompts, in their order)."""

    model_config = _OPEN

    selection_fraction: float
    seed: int
    selection: list[int]
    confirmation: list[int]


class Front(BaseModel):
    """The whole ``front.json``."""

    model_config = _OPEN

    aspects: list[str]
    reference_point: dict[str, float]
    points: list[FrontPoint]
    hypervolume: dict[str, float]
    presets: dict[str, Preset] = Field(default_factory=dict)
    hypervolume_selection: dict[str, float] | None = None
    hypervolume_ci: dict[str, tuple[float, float] | None] | None = None
    hypervolume_difference: dict[str, Difference] | None = None
    evaluation_split: EvaluationSplit | None = None
    guard_thresholds: GuardThresholds | None = None
    intervals: dict[str, Any] | None = None

    @field_validator("aspects")
    @classmethod
    def _two_distinct(cls, value: list[str]) -> list[str]:
        if len(value) < 2 or len(set(value)) != len(value):
            raise ValueError(f"a front needs two or more distinct aspects, got {value}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> "Front":
        missing = [a for a in self.aspects if a not in self.reference_point]
        if missing:
            raise ValueError(f"reference_point lacks aspect {missing[0]!r}")
        for i, point in enumerate(self.points):
            gap = [a for a in self.aspects if a not in point.metrics]
            if gap:
                raise ValueError(f"points[{i}] ({point.method}) has no metric for aspect {gap[0]!r}")
        return self

    # -- reading

    def means(self) -> np.ndarray:
        """The ``(n_points, n_aspects)`` matrix of metric means, in ``aspects`` order."""
        return as_points([[p.mean(a) for a in self.aspects] for p in self.points], dims=len(self.aspects))

    def presets_for_sliders(self) -> dict[str, Preset]:
        """Presets a weights + alpha dial can reach (every preset the sweep makes is one)."""
        return {n: p for n, p in self.presets.items() if p.weights is not None and p.alpha is not None}

    # -- writing

    def to_json(self) -> dict[str, Any]:
        """The JSON object, contract keys first, ``None`` kept where the contract shows null."""
        data = self.model_dump(mode="json")
        for key in _OPTIONAL_FRONT:  # additions that are absent stay absent (older readers see the old file)
            if data.get(key) is None:
                data.pop(key, None)
        for point in data["points"]:
            for key in ("selection", "guard"):
                if point.get(key) is None:
                    point.pop(key, None)
            for metric in point["metrics"].values():
                metric.setdefault("ci", None)
        data["presets"] = {name: {k: v for k, v in p.items() if v is not None or k in ("weights", "alpha", "coefficients")}
                           for name, p in data["presets"].items()}
        return data

    def save(self, bundle_dir: str | os.PathLike[str], check: bool = True) -> Path:
        """Write ``<bundle_dir>/front.json`` atomically; an inconsistent front is refused first."""
        return save_front(self, bundle_dir, check=check)


_OPTIONAL_FRONT = ("hypervolume_selection", "hypervolume_ci", "hypervolume_difference", "evaluation_split",
                   "guard_thresholds", "intervals")


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def _metric(value: Any) -> Any:
    return value if isinstance(value, Mapping) else {"mean": value}


def _canonical(point: Any, aspects: Sequence[str], index: int) -> FrontPoint:
    """One raw point (a dict, bare-number metrics allowed) as a :class:`FrontPoint`, contract-checked."""
    if isinstance(point, FrontPoint):
        return point
    data = dict(point)
    if not isinstance(data.get("method"), str) or not data.get("method"):
        raise ValueError(f"point {index} has no method (e.g. 'base', 'soup', 'peo')")
    metrics = data.get("metrics") or {}
    missing = [a for a in aspects if a not in metrics]
    if missing:
        raise ValueError(f"point {index} ({data['method']}) has no metric for aspect {missing[0]!r}")
    data["metrics"] = {a: _metric(metrics[a]) for a in aspects}
    for key in ("weights", "coefficients"):
        value = data.get(key)
        if value is not None:
            unknown = [k for k in value if k not in aspects]
            if unknown:
                raise ValueError(f"point {index} {key} names unknown aspect {unknown[0]!r}; aspects: {', '.join(aspects)}")
    try:
        typed = FrontPoint.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"point {index}: {validation_message(exc)}") from None
    problem = _alpha_problem(typed)
    if problem:
        raise ValueError(f"point {index} {problem}")
    typed.on_front = False
    return typed


def _alpha_problem(point: FrontPoint) -> str | None:
    alpha = point.alpha
    if point.method == "soup" and (alpha is None or abs(alpha) > _ALPHA_TOL):
        return f"is a soup with alpha={alpha}; soups have alpha 0 (label it 'peo')"
    if point.method == "peo" and (alpha is None or abs(alpha) <= _ALPHA_TOL):
        return f"is 'peo' with alpha={alpha}; alpha 0 is a 'soup' point"
    return None


def _points(points: Iterable[Any], aspects: Sequence[str]) -> list[FrontPoint]:
    return [_canonical(p, aspects, i) for i, p in enumerate(points)]


def _means(points: Sequence[FrontPoint], aspects: Sequence[str]) -> np.ndarray:
    return as_points([[p.mean(a) for a in aspects] for p in points], dims=len(aspects))


def _selection_means(points: Sequence[FrontPoint], aspects: Sequence[str]) -> np.ndarray:
    return as_points([[p.selection_mean(a) for a in aspects] for p in points], dims=len(aspects))


def _family_indices(points: Sequence[FrontPoint]) -> list[int]:
    return [i for i, p in enumerate(points) if p.in_family]


def family_front_mask(points: Sequence[Any], aspects: Sequence[str]) -> np.ndarray:
    """``on_front`` for every point: a PEO-family point that no other family point dominates.

    Decided on the selection means (:meth:`FrontPoint.selection_mean`). Baselines (base,
    MORL, ...) are never on the PEO front, and they do not knock family points off it
    either: the flag answers "which PEO policies are worth offering", the hypervolume table
    answers "how does PEO compare with the baselines".
    """
    typed = _points(points, aspects)
    return _selected(typed, aspects, _family_indices(typed))


def _selected(typed: Sequence[FrontPoint], aspects: Sequence[str], rows: Sequence[int]) -> np.ndarray:
    """Mask of ``rows`` that no other of ``rows`` dominates on the selection means."""
    mask = np.zeros(len(typed), dtype=bool)
    if rows:
        mask[list(rows)] = non_dominated_mask(_selection_means(typed, aspects)[list(rows)])
    return mask


def method_front_indices(points: Sequence[Any], aspects: Sequence[str]) -> dict[str, list[int]]:
    """Per method, the points its front CHOSE on the selection means (``peo``: the whole family).

    Keys: ``peo`` (whenever a family point exists), ``soup`` (when soups exist), then every
    other method present, in order of first appearance.
    """
    typed = _points(points, aspects)
    methods = [p.method for p in typed]
    groups: dict[str, list[int]] = {}
    family = _family_indices(typed)
    if family:
        groups["peo"] = family
    for method in dict.fromkeys(methods):
        if method != "peo":
            groups[method] = [i for i, m in enumerate(methods) if m == method]
    order = ["peo", "soup"]
    groups = {k: groups[k] for k in order if k in groups} | {k: v for k, v in groups.items() if k not in order}
    return {k: [int(i) for i in np.flatnonzero(_selected(typed, aspects, rows))] for k, rows in groups.items()}


def method_hypervolumes(points: Sequence[Any], aspects: Sequence[str],
                        reference: Mapping[str, float], on: str = "confirmation") -> dict[str, float]:
    """Hypervolume per method, with ``peo`` meaning the whole PEO family (soup + peo).

    Each method's front is chosen on the selection means; its volume is measured on the
    confirmation means (``on="confirmation"``, what is reported) or on the selection means
    (``on="selection"``, biased upwards by the choice). Without a split the two agree, and
    ``peo >= soup`` holds by construction (the family contains the soups); with a split it
    need not, which is the point: a margin that survives is not selection on noise.
    """
    typed = _points(points, aspects)
    means = _selection_means(typed, aspects) if on == "selection" else _means(typed, aspects)
    ref = [reference[a] for a in aspects]
    return {method: hypervolume(means[rows], ref) for method, rows in method_front_indices(typed, aspects).items()}


def guard_flags(points: Sequence[Any], aspects: Sequence[str],
                thresholds: GuardThresholds | None) -> list[list[str] | None]:
    """Per point: why it is flagged as degenerate ([] = not flagged; None = no guard measures).

    Relative to the first ``base`` point's measures; without a base point or thresholds
    nothing is flagged.
    """
    typed = _points(points, aspects)
    base = next((p for p in typed if p.method == "base" and p.guard is not None), None)
    out: list[list[str] | None] = []
    for point in typed:
        if point.guard is None:
            out.append(None)
        elif base is None or thresholds is None:
            out.append([])
        else:
            out.append(flag_reasons(point.guard.measures(), base.guard.measures(), thresholds))
    return out


def _pick(candidates: Sequence[int], keys: Sequence[np.ndarray]) -> int:
    """The candidate with the lexicographically largest ``keys`` (earliest index on a full tie)."""
    return max(candidates, key=lambda i: (tuple(float(k[i]) for k in keys), -i))


def _preset(point: FrontPoint, index: int, aspects: Sequence[str], rule: str, **extra: Any) -> dict[str, Any]:
    return {"weights": point.weights, "alpha": point.alpha, "coefficients": point.coefficients,
            "metrics": {a: point.mean(a) for a in aspects}, "method": point.method,
            "point_index": index, "rule": rule, **extra}


def compute_presets(points: Sequence[Any], aspects: Sequence[str],
                    thresholds: Iterable[float] = DEFAULT_THRESHOLDS) -> dict[str, dict[str, Any]]:
    """Named one-click choices among the PEO front's points.

    Only PEO-family points on the front that the degeneration guard did not flag are
    candidates (a preset must be a policy the bundle can realise with weights and alpha, and
    one that still speaks). Rules read the selection means; the ``metrics`` a preset shows
    are the point's reported (confirmation) scores. Names and rules:

    * ``balanced``: maximise the worst aspect after scaling each aspect to [0, 1] over the
      front (0 = the front's worst score on that aspect, 1 = its best; an aspect on which
      the front is flat counts as 1). Scaling by the front's own range matters: raw judge
      scores live on different scales, and an unscaled max-min would just pick the most
      helpful point. Ties: larger sum of scaled scores, then the earlier point.
    * ``max_<A>``: the front's best point on aspect A (ties: larger sum of the others).
    * ``max_<A>_with_<B>_ge_<X>``: the best point on A among those whose mean score on B is
      at least X, for every ordered pair of distinct aspects and each X in ``thresholds``
      (written with two decimals, e.g. ``max_helpful_with_harmless_ge_0.90``).
    * ``max_<A>_with_<B>_ge_base``: the same with X = the base model's mean on B (only with
      a ``base`` point).

    A preset that no front point satisfies is left out.
    """
    aspects = list(aspects)
    typed = _points(points, aspects)
    if not typed:
        return {}
    means = _selection_means(typed, aspects)
    candidates = [int(i) for i in np.flatnonzero(family_front_mask(typed, aspects)) if not typed[i].flagged]
    if not candidates:
        return {}
    cols = [means[:, j] for j in range(len(aspects))]
    presets: dict[str, dict[str, Any]] = {}

    lo = means[candidates].min(axis=0)
    span = means[candidates].max(axis=0) - lo
    scaled = np.where(span > 0, (means - lo) / np.where(span > 0, span, 1.0), 1.0)
    best = _pick(candidates, [scaled.min(axis=1), scaled.sum(axis=1)])
    presets["balanced"] = _preset(typed[best], best, aspects,
                                  "maximise the worst aspect, each scaled to [0, 1] over the front")

    for j, a in enumerate(aspects):
        others = means.sum(axis=1) - cols[j]
        best = _pick(candidates, [cols[j], others])
        presets[f"max_{a}"] = _preset(typed[best], best, aspects, f"maximise {a}", maximise=a)

    levels: list[tuple[str, float | None]] = [(f"{x:.2f}", float(x)) for x in thresholds]
    base = [i for i, p in enumerate(typed) if p.method == "base"]
    levels.append(("base", None))
    for (ja, a), (jb, b) in itertools.permutations(enumerate(aspects), 2):
        for label, level in levels:
            if level is None:
                if not base:
                    continue
                level = float(means[base[0], jb])
            ok = [i for i in candidates if cols[jb][i] >= level - _ALPHA_TOL]
            if not ok:
                continue
            others = means.sum(axis=1) - cols[ja] - cols[jb]
            best = _pick(ok, [cols[ja], cols[jb], others])
            presets[f"max_{a}_with_{b}_ge_{label}"] = _preset(
                typed[best], best, aspects, f"maximise {a} subject to {b} >= {level:.4g}",
                maximise=a, constraint={"aspect": b, "min": level})
    return presets


def _reference(reference_point: Any, aspects: Sequence[str]) -> dict[str, float]:
    if reference_point is None:
        return {a: 0.0 for a in aspects}
    if isinstance(reference_point, Mapping):
        missing = [a for a in aspects if a not in reference_point]
        if missing:
            raise ValueError(f"reference_point lacks aspect {missing[0]!r}")
        return {a: float(reference_point[a]) for a in aspects}
    values = [float(v) for v in reference_point]
    if len(values) != len(aspects):
        raise ValueError(f"reference_point has {len(values)} values for {len(aspects)} aspects")
    return dict(zip(aspects, values))


def build_front(aspects: Sequence[str], points: Sequence[Any],
                reference_point: Mapping[str, float] | Sequence[float] | None = None,
                thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
                guard_thresholds: GuardThresholds | None = None, **extra: Any) -> Front:
    """The :class:`Front` of evaluated points: flags, per-method hypervolumes and presets derived.

    ``points`` are :class:`FrontPoint` s or dicts with ``method``, ``weights``, ``alpha``,
    ``coefficients`` and ``metrics`` ``{aspect: {"mean": float, "ci": [lo, hi]}}`` (a bare
    number is read as a mean without CI), optionally ``selection`` ``{aspect: mean}`` and
    ``guard`` measures; extra keys are kept. Soups must have ``alpha == 0`` and ``peo``
    points ``alpha != 0``. The reference point defaults to zeros. Points keep their order,
    so ``presets[...].point_index`` indexes ``points``. ``guard_thresholds`` flag degenerate
    points (kept out of presets). ``extra`` top-level keys (e.g. ``training_seconds``,
    ``evaluation_split``) are stored as they are.
    """
    aspects = list(aspects)
    if len(aspects) < 2 or len(set(aspects)) != len(aspects):
        raise ValueError(f"a front needs two or more distinct aspects, got {aspects}")
    typed = _points(points, aspects)
    reference = _reference(reference_point, aspects)
    for point, flag in zip(typed, family_front_mask(typed, aspects)):
        point.on_front = bool(flag)
    for point, reasons in zip(typed, guard_flags(typed, aspects, guard_thresholds)):
        if point.guard is not None and reasons is not None:
            point.guard.flagged, point.guard.reasons = bool(reasons), reasons
    split = any(p.selection is not None for p in typed)
    return Front(aspects=aspects, reference_point=reference, points=typed,
                 hypervolume=method_hypervolumes(typed, aspects, reference),
                 presets={n: Preset.model_validate(p) for n, p in compute_presets(typed, aspects, thresholds).items()},
                 hypervolume_selection=method_hypervolumes(typed, aspects, reference, on="selection") if split else None,
                 guard_thresholds=guard_thresholds, **extra)


# --------------------------------------------------------------------------------------------
# Checking, saving, loading
# --------------------------------------------------------------------------------------------


def _parse(front: Front | Mapping[str, Any]) -> tuple[Front | None, list[str]]:
    if isinstance(front, Front):
        return front, []
    if not isinstance(front, Mapping):
        return None, ["front is not a JSON object"]
    missing = [k for k in ("aspects", "reference_point", "points", "hypervolume", "presets") if k not in front]
    if missing:
        return None, [f"missing key {k!r}" for k in missing]
    try:
        return Front.model_validate(front), []
    except ValidationError as exc:
        return None, [validation_message(exc)]


def _close(a: Any, b: float) -> bool:
    return isinstance(a, (int, float)) and math.isclose(float(a), b, rel_tol=_HV_RTOL, abs_tol=_HV_ATOL)


def _check_volumes(name: str, stored: Mapping[str, float], expected: Mapping[str, float]) -> list[str]:
    problems = []
    for key in expected.keys() | stored.keys():
        if key not in stored:
            problems.append(f"{name}.{key} is missing (recomputed {expected[key]:.6g})")
        elif key not in expected:
            problems.append(f"{name}.{key} has no points of that method")
        elif not _close(stored[key], expected[key]):
            problems.append(f"{name}.{key} is {stored[key]}, recomputed {expected[key]:.12g}")
    return problems


def check_front(front: Front | Mapping[str, Any], thresholds: Iterable[float] = DEFAULT_THRESHOLDS) -> list[str]:
    """Recompute what ``front.json`` derives from its points; list every mismatch (empty: consistent).

    Checked: the structure, the soup/peo alpha rule, every ``on_front`` flag (on the
    selection means), every guard flag (against ``guard_thresholds``), every hypervolume
    and ``hypervolume_selection`` entry (same keys, values within 1e-9 relative), that
    ``hypervolume_ci`` names only methods with a hypervolume, and the presets (same names,
    same ``point_index``; pass the ``thresholds`` given to :func:`build_front` if they were
    not the defaults). Accepts a :class:`Front` or the raw JSON object.
    """
    typed, problems = _parse(front)
    if typed is None:
        return problems
    aspects = typed.aspects
    points = typed.points
    problems += [f"points[{i}] {p}" for i, p in enumerate(map(_alpha_problem, points)) if p]
    for i, (point, flag) in enumerate(zip(points, family_front_mask(points, aspects))):
        if point.on_front is not bool(flag):
            problems.append(f"points[{i}] ({point.method}): on_front is {point.on_front}, recomputed {bool(flag)}")
    for i, (point, reasons) in enumerate(zip(points, guard_flags(points, aspects, typed.guard_thresholds))):
        if reasons is not None and point.flagged is not bool(reasons):
            problems.append(f"points[{i}] ({point.method}): guard.flagged is {point.flagged}, recomputed {bool(reasons)}")
    problems += _check_volumes("hypervolume", typed.hypervolume,
                               method_hypervolumes(points, aspects, typed.reference_point))
    if typed.hypervolume_selection is not None:
        problems += _check_volumes("hypervolume_selection", typed.hypervolume_selection,
                                   method_hypervolumes(points, aspects, typed.reference_point, on="selection"))
    if typed.hypervolume_ci is not None and set(typed.hypervolume_ci) - set(typed.hypervolume):
        extra_keys = sorted(set(typed.hypervolume_ci) - set(typed.hypervolume))
        problems.append(f"hypervolume_ci has entries without a hypervolume: {', '.join(extra_keys)}")
    expected = compute_presets(points, aspects, thresholds)
    problems += [f"preset {name!r} is missing" for name in expected if name not in typed.presets]
    for name, entry in typed.presets.items():
        if name not in expected:
            problems.append(f"preset {name!r} does not follow from the points")
        elif entry.point_index != expected[name]["point_index"]:
            problems.append(f"preset {name!r} points at {entry.point_index}, recomputed {expected[name]['point_index']}")
    return problems


def save_front(front: Front | Mapping[str, Any], bundle_dir: str | os.PathLike[str], check: bool = True) -> Path:
    """Write ``<bundle_dir>/front.json`` atomically and return its path.

    With ``check`` (the default) an inconsistent front is refused before anything is
    written, so a bundle never ships flags or hypervolumes that contradict its points.
    """
    if check:
        problems = check_front(front)
        if problems:
            raise ValueError("refusing to write an inconsistent front.json: " + "; ".join(problems[:5]))
    typed, problems = _parse(front)
    if typed is None:
        raise ValueError("refusing to write an invalid front.json: " + "; ".join(problems[:5]))
    path = Path(bundle_dir) / FRONT_NAME
    atomic_write_json(path, typed.to_json())
    return path


REWRITE = "re-run `peo-hub recipe run RECIPE.yaml --resume` (or `peo-hub evaluate`) to rewrite it"


def load_front(path_or_dir: str | os.PathLike[str]) -> Front:
    """Read ``front.json`` from a file path or a bundle folder as a :class:`Front`.

    Raises :class:`~peo_hub.utils.errors.BundleError` naming the file and the fix when it is
    missing, not JSON, or lacks what the plot and presets need. Recomputed consistency is
    :func:`check_front`'s job, not this loader's, so a slightly stale file still loads.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / FRONT_NAME
    if not path.is_file():
        raise BundleError(f"no {FRONT_NAME} at {path}; the bundle has no evaluated front yet, {REWRITE}")
    typed, problems = _parse(read_json(path, REWRITE))
    if typed is None:
        raise BundleError(f"{path} is not a valid front.json ({problems[0]}); {REWRITE}")
    return typed
