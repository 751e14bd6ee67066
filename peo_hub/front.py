"""``front.json``, typed: every evaluated policy, which are on the PEO front, hypervolumes, presets.

The file is a user-facing contract (README: "The front"). :class:`Front` is its one typed
form: the sweep builds it (:func:`build_front`), the bundle writes and reads it
(:meth:`Front.save`, :func:`load_front`), and the model card, the Space and
:class:`~peo_hub.model.PEOModel` read points and presets from it, never from raw JSON.

Derived fields (``on_front``, ``hypervolume``, ``presets``) follow from the points alone;
:func:`check_front` recomputes them so a hand edit or a bug cannot ship a front whose flags
or numbers contradict its own points. Additions to the file (new keys) are kept on load and
written back, so newer readers and older files get along.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peo_hub.errors import BundleError, validation_message
from peo_hub.fsutil import atomic_write_json, read_json
from peo_hub.pareto import as_points, hypervolume, non_dominated_mask

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


class FrontPoint(BaseModel):
    """One evaluated policy. ``weights``/``alpha``/``coefficients`` are ``None`` where they do not
    apply (the base has no weights; a MORL model is its own model, not a mix of adapters)."""

    model_config = _OPEN

    method: str = Field(min_length=1)
    weights: dict[str, float] | None = None
    alpha: float | None = None
    coefficients: dict[str, float] | None = None
    metrics: dict[str, Metric]
    on_front: bool = False

    def mean(self, aspect: str) -> float:
        return self.metrics[aspect].mean

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


class Front(BaseModel):
    """The whole ``front.json``."""

    model_config = _OPEN

    aspects: list[str]
    reference_point: dict[str, float]
    points: list[FrontPoint]
    hypervolume: dict[str, float]
    presets: dict[str, Preset] = Field(default_factory=dict)

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
        for point in data["points"]:
            for metric in point["metrics"].values():
                metric.setdefault("ci", None)
        data["presets"] = {name: {k: v for k, v in p.items() if v is not None or k in ("weights", "alpha", "coefficients")}
                           for name, p in data["presets"].items()}
        return data

    def save(self, bundle_dir: str | os.PathLike[str], check: bool = True) -> Path:
        """Write ``<bundle_dir>/front.json`` atomically; an inconsistent front is refused first."""
        return save_front(self, bundle_dir, check=check)


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


def _family_indices(points: Sequence[FrontPoint]) -> list[int]:
    return [i for i, p in enumerate(points) if p.in_family]


def family_front_mask(points: Sequence[Any], aspects: Sequence[str]) -> np.ndarray:
    """``on_front`` for every point: a PEO-family point that no other family point dominates.

    Baselines (base, MORL, ...) are never on the PEO front, and they do not knock family
    points off it either: the flag answers "which PEO policies are worth offering", the
    hypervolume table answers "how does PEO compare with the baselines".
    """
    typed = _points(points, aspects)
    means = _means(typed, aspects)
    mask = np.zeros(len(typed), dtype=bool)
    family = _family_indices(typed)
    if family:
        mask[family] = non_dominated_mask(means[family])
    return mask


def method_hypervolumes(points: Sequence[Any], aspects: Sequence[str],
                        reference: Mapping[str, float]) -> dict[str, float]:
    """Hypervolume per method, with ``peo`` meaning the whole PEO family (soup + peo).

    Keys: ``peo`` (whenever a family point exists), ``soup`` (when soups exist), then every
    other method present, in order of first appearance. ``peo`` is the family's so that
    "peo >= soup" holds by construction and the gap is what extrapolation adds.
    """
    typed = _points(points, aspects)
    means = _means(typed, aspects)
    ref = [reference[a] for a in aspects]
    methods = [p.method for p in typed]
    result: dict[str, float] = {}
    family = _family_indices(typed)
    if family:
        result["peo"] = hypervolume(means[family], ref)
    for method in dict.fromkeys(methods):
        if method == "peo":
            continue
        rows = [i for i, m in enumerate(methods) if m == method]
        result[method] = hypervolume(means[rows], ref)
    order = ["peo", "soup"]
    return {k: result[k] for k in order if k in result} | {k: v for k, v in result.items() if k not in order}


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

    Only PEO-family points on the front are candidates (a preset must be a policy the bundle
    can realise with weights and alpha). Names and rules:

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
    means = _means(typed, aspects)
    candidates = [int(i) for i in np.flatnonzero(family_front_mask(typed, aspects))]
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
                thresholds: Iterable[float] = DEFAULT_THRESHOLDS, **extra: Any) -> Front:
    """The :class:`Front` of evaluated points: flags, per-method hypervolumes and presets derived.

    ``points`` are :class:`FrontPoint` s or dicts with ``method``, ``weights``, ``alpha``,
    ``coefficients`` and ``metrics`` ``{aspect: {"mean": float, "ci": [lo, hi]}}`` (a bare
    number is read as a mean without CI); extra keys are kept. Soups must have ``alpha == 0``
    and ``peo`` points ``alpha != 0``. The reference point defaults to zeros. Points keep
    their order, so ``presets[...].point_index`` indexes ``points``. ``extra`` top-level keys
    (e.g. ``training_seconds``) are stored as they are.
    """
    aspects = list(aspects)
    if len(aspects) < 2 or len(set(aspects)) != len(aspects):
        raise ValueError(f"a front needs two or more distinct aspects, got {aspects}")
    typed = _points(points, aspects)
    reference = _reference(reference_point, aspects)
    for point, flag in zip(typed, family_front_mask(typed, aspects)):
        point.on_front = bool(flag)
    return Front(aspects=aspects, reference_point=reference, points=typed,
                 hypervolume=method_hypervolumes(typed, aspects, reference),
                 presets={n: Preset.model_validate(p) for n, p in compute_presets(typed, aspects, thresholds).items()},
                 **extra)


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


def check_front(front: Front | Mapping[str, Any], thresholds: Iterable[float] = DEFAULT_THRESHOLDS) -> list[str]:
    """Recompute what ``front.json`` derives from its points; list every mismatch (empty: consistent).

    Checked: the structure, the soup/peo alpha rule, every ``on_front`` flag, every
    hypervolume entry (same keys, values within 1e-9 relative), and the presets (same names,
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
    expected_hv = method_hypervolumes(points, aspects, typed.reference_point)
    stored_hv = typed.hypervolume
    for key in expected_hv.keys() | stored_hv.keys():
        if key not in stored_hv:
            problems.append(f"hypervolume.{key} is missing (recomputed {expected_hv[key]:.6g})")
        elif key not in expected_hv:
            problems.append(f"hypervolume.{key} has no points of that method")
        elif not _close(stored_hv[key], expected_hv[key]):
            problems.append(f"hypervolume.{key} is {stored_hv[key]}, recomputed {expected_hv[key]:.12g}")
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

    Raises :class:`~peo_hub.errors.BundleError` naming the file and the fix when it is
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
