"""Pareto fronts of PEO sweeps: dominance, exact hypervolume, presets, ``front.json`` and the plot.

Every evaluated policy is a point in "aspect space": one normalised score per aspect, higher
is better on every axis (maximisation throughout this module). The questions a user asks of
a sweep are:

* which policies are worth offering? -> the non-dominated points (:func:`non_dominated_mask`);
* how much better is PEO than a plain rewarded soup or another baseline? -> the hypervolume
  each method's points dominate above a reference point (:func:`hypervolume`);
* which single policy should I pick? -> named presets (:func:`compute_presets`).

:func:`build_front` bundles the answers into ``front.json``, whose schema is a user-facing
contract (DESIGN.md section 3); :func:`check_front` recomputes everything derived in it so a
written file can be verified; :func:`plot_front` draws ``front.png``.

Pure numpy + matplotlib on purpose: the Space, the CLI and the tests import this without
torch.
"""

from __future__ import annotations

import itertools
import math
import os
import textwrap
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from peo_hub.errors import BundleError
from peo_hub.fsutil import atomic_file, atomic_write_json, read_json

FRONT_FILE = "front.json"
PLOT_FILE = "front.png"

#: Methods whose points form "the PEO family": a rewarded soup is PEO with ``alpha = 0``, so
#: soups and extrapolated points are one family and share one front.
FAMILY_METHODS: tuple[str, ...] = ("soup", "peo")

#: Fixed score levels used by the threshold presets (scores are normalised to [0, 1]).
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.8, 0.9)

_ALPHA_TOL = 1e-12
_HV_RTOL = 1e-9
_HV_ATOL = 1e-12


# --------------------------------------------------------------------------------------------
# Dominance
# --------------------------------------------------------------------------------------------


def _as_points(points: Any, dims: int | None = None) -> np.ndarray:
    """``points`` as a finite float array of shape ``(n, d)``; an empty input gives ``(0, d)``.

    Non-finite scores are refused rather than silently ordered: a NaN compares false with
    everything, which would make a broken evaluation look non-dominated.
    """
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return arr.reshape(0, dims if dims is not None else (arr.shape[-1] if arr.ndim == 2 else 0))
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n_points, n_aspects), got shape {arr.shape}")
    if dims is not None and arr.shape[1] != dims:
        raise ValueError(f"points have {arr.shape[1]} coordinates, expected {dims}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("points contain NaN or infinite scores; fix the evaluation first")
    return arr


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` Pareto-dominates ``b`` (maximisation).

    ``a`` dominates ``b`` if it is at least as good on every axis and strictly better on at
    least one. Equal points therefore do not dominate each other, so duplicates survive
    together on a front (two policies that score the same are both worth listing).
    """
    va = np.asarray(a, dtype=float)
    vb = np.asarray(b, dtype=float)
    if va.shape != vb.shape:
        raise ValueError(f"cannot compare points of shapes {va.shape} and {vb.shape}")
    return bool(np.all(va >= vb) and np.any(va > vb))


def non_dominated_mask(points: Any) -> np.ndarray:
    """Boolean mask of the points that no other point dominates (maximisation).

    Vectorised pairwise comparison, in row blocks so that memory stays bounded for large
    sweeps. Duplicates are kept: an exact copy of a non-dominated point is non-dominated.
    """
    pts = _as_points(points)
    n = len(pts)
    dominated = np.zeros(n, dtype=bool)
    block = max(1, 2_000_000 // max(1, n * max(1, pts.shape[1])))
    for start in range(0, n, block):
        cand = pts[start : start + block]  # the points whose dominance we decide
        ge = np.all(pts[:, None, :] >= cand[None, :, :], axis=2)  # other >= cand everywhere
        gt = np.any(pts[:, None, :] > cand[None, :, :], axis=2)  # other > cand somewhere
        dominated[start : start + block] = np.any(ge & gt, axis=0)
    return ~dominated


# --------------------------------------------------------------------------------------------
# Hypervolume
# --------------------------------------------------------------------------------------------


def hypervolume(points: Any, reference: Sequence[float]) -> float:
    """Exact volume of the region dominated by ``points`` and bounded below by ``reference``.

    Maximisation: the region is the union of the boxes ``[reference, p]``. A point that is not
    strictly better than the reference on some axis is clipped to the reference there, so its
    box is flat and it adds nothing (it never adds negative volume). The result is exact (no
    sampling): a sweep for two axes, and for more axes the "hypervolume by slicing objectives"
    recursion (slice along the last axis, solve the lower-dimensional problem per slice, skip
    slices whose lower-dimensional front did not change). That is fast for the ~100-point,
    2-4-aspect fronts a PEO sweep produces.

    Why hypervolume: it is the one standard scalar that rewards a front for being both
    better and wider, and it is strictly monotone under Pareto improvement, so "PEO's
    hypervolume exceeds the soup's" is a fair one-number comparison at a fixed reference.
    """
    ref = np.asarray(reference, dtype=float).reshape(-1)
    if not np.all(np.isfinite(ref)):
        raise ValueError("the reference point must be finite")
    pts = _as_points(points, dims=len(ref))
    if len(pts) == 0:
        return 0.0
    shifted = np.maximum(pts, ref) - ref  # clip to the reference, move it to the origin
    shifted = shifted[np.all(shifted > 0, axis=1)]  # flat boxes have no volume
    if len(shifted) == 0:
        return 0.0
    shifted = np.unique(shifted, axis=0)
    shifted = shifted[non_dominated_mask(shifted)]
    return float(_hv_recursive(shifted))


def _hv_recursive(front: np.ndarray) -> float:
    """Hypervolume of a mutually non-dominated set of positive points w.r.t. the origin."""
    dims = front.shape[1]
    if dims == 1:
        return float(front[:, 0].max())
    if dims == 2:
        return _hv_2d(front)
    order = np.argsort(-front[:, -1], kind="stable")
    pts = front[order]
    depths = np.append(pts[:, -1], 0.0)
    total = 0.0
    slice_front = np.empty((0, dims - 1))
    slice_volume = 0.0
    for k, point in enumerate(pts):
        projected = point[:-1]
        if not np.any(np.all(slice_front >= projected, axis=1)):
            # the new point changes the (d-1)-D front: drop what it dominates, recompute
            keep = ~np.all(projected >= slice_front, axis=1)
            slice_front = np.vstack([slice_front[keep], projected])
            slice_volume = _hv_recursive(slice_front)
        total += slice_volume * (depths[k] - depths[k + 1])
    return total


def _hv_2d(front: np.ndarray) -> float:
    """Area dominated by a non-dominated 2-D set: sort by x descending, y then ascends."""
    order = np.lexsort((front[:, 1], -front[:, 0]))
    xs = front[order, 0]
    ys = np.maximum.accumulate(front[order, 1])
    steps = np.diff(np.concatenate([[0.0], ys]))
    return float(np.sum(xs * steps))


# --------------------------------------------------------------------------------------------
# Points and presets
# --------------------------------------------------------------------------------------------


def _means(points: Sequence[Mapping[str, Any]], aspects: Sequence[str]) -> np.ndarray:
    """The ``(n_points, n_aspects)`` matrix of metric means, with a clear error for gaps."""
    rows = []
    for i, point in enumerate(points):
        metrics = point.get("metrics") or {}
        row = []
        for aspect in aspects:
            if aspect not in metrics:
                raise ValueError(f"point {i} ({point.get('method')}) has no metric for aspect {aspect!r}")
            value = metrics[aspect]
            row.append(value["mean"] if isinstance(value, Mapping) else value)
        rows.append(row)
    return _as_points(rows, dims=len(aspects))


def _family_indices(points: Sequence[Mapping[str, Any]]) -> list[int]:
    return [i for i, p in enumerate(points) if p.get("method") in FAMILY_METHODS]


def family_front_mask(points: Sequence[Mapping[str, Any]], aspects: Sequence[str]) -> np.ndarray:
    """``on_front`` for every point: a PEO-family point that no other family point dominates.

    Baselines (base, single aspect adapters, MORL, ...) are never on the PEO front, and they
    do not knock family points off it either: the flag answers "which PEO policies are worth
    offering", the hypervolume table answers "how does PEO compare with the baselines".
    """
    means = _means(points, aspects)
    mask = np.zeros(len(points), dtype=bool)
    family = _family_indices(points)
    if family:
        mask[family] = non_dominated_mask(means[family])
    return mask


def _pick(candidates: Sequence[int], keys: Sequence[np.ndarray]) -> int:
    """The candidate with the lexicographically largest ``keys`` (earliest index on a full tie)."""
    return max(candidates, key=lambda i: (tuple(float(k[i]) for k in keys), -i))


def _preset_entry(point: Mapping[str, Any], index: int, aspects: Sequence[str], rule: str) -> dict[str, Any]:
    metrics = point.get("metrics") or {}
    return {
        "weights": point.get("weights"),
        "alpha": point.get("alpha"),
        "coefficients": point.get("coefficients"),
        "metrics": {a: float(metrics[a]["mean"] if isinstance(metrics[a], Mapping) else metrics[a]) for a in aspects},
        "method": point.get("method"),
        "point_index": index,
        "rule": rule,
    }


def _threshold_label(value: float) -> str:
    return f"{value:.2f}"


def compute_presets(
    points: Sequence[Mapping[str, Any]],
    aspects: Sequence[str],
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
) -> dict[str, dict[str, Any]]:
    """Named one-click choices among the PEO front's points.

    Only PEO-family points on the front are candidates (a preset must be a policy the bundle
    can realise with weights and alpha). Names and rules:

    * ``balanced``: maximise the worst aspect after scaling each aspect to [0, 1] over the
      front (0 = the front's worst score on that aspect, 1 = its best; an aspect on which
      the front is flat counts as 1). Scaling by the front's own range matters: raw judge
      scores live on different scales (e.g. harmless 0.87-0.96 vs helpful 0.16-0.27), and an
      unscaled max-min would just pick the most helpful point. Ties: larger sum of scaled
      scores, then the earlier point.
    * ``max_<A>``: the front's best point on aspect A (ties: larger sum of the others).
    * ``max_<A>_with_<B>_ge_<X>``: the best point on A among those whose mean score on B is
      at least X, for every ordered pair of distinct aspects and each X in ``thresholds``
      (written with two decimals, e.g. ``max_helpful_with_harmless_ge_0.90``).
    * ``max_<A>_with_<B>_ge_base``: the same with X = the base model's mean on B, i.e. "as
      much A as possible without losing B relative to the base" (only with a ``base`` point).

    A preset that no front point satisfies is left out. Each entry holds the point's
    ``weights``, ``alpha``, ``coefficients``, metric means, ``method``, its ``point_index``
    in ``points`` and a readable ``rule``; ``max_*`` presets add ``maximise`` (the aspect)
    and threshold presets ``constraint`` (``{"aspect": B, "min": X}``).
    """
    aspects = list(aspects)
    if not points:
        return {}
    means = _means(points, aspects)
    candidates = [int(i) for i in np.flatnonzero(family_front_mask(points, aspects))]
    if not candidates:
        return {}
    cols = [means[:, j] for j in range(len(aspects))]
    presets: dict[str, dict[str, Any]] = {}

    lo = means[candidates].min(axis=0)
    span = means[candidates].max(axis=0) - lo
    scaled = np.where(span > 0, (means - lo) / np.where(span > 0, span, 1.0), 1.0)
    best = _pick(candidates, [scaled.min(axis=1), scaled.sum(axis=1)])
    presets["balanced"] = _preset_entry(
        points[best], best, aspects, "maximise the worst aspect, each scaled to [0, 1] over the front"
    )

    for j, a in enumerate(aspects):
        others = means.sum(axis=1) - cols[j]
        best = _pick(candidates, [cols[j], others])
        presets[f"max_{a}"] = _preset_entry(points[best], best, aspects, f"maximise {a}")
        presets[f"max_{a}"]["maximise"] = a

    levels: list[tuple[str, float | None]] = [(_threshold_label(x), float(x)) for x in thresholds]
    base = [i for i, p in enumerate(points) if p.get("method") == "base"]
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
            entry = _preset_entry(points[best], best, aspects, f"maximise {a} subject to {b} >= {level:.4g}")
            entry["maximise"] = a
            entry["constraint"] = {"aspect": b, "min": level}
            presets[f"max_{a}_with_{b}_ge_{label}"] = entry
    return presets


# --------------------------------------------------------------------------------------------
# front.json
# --------------------------------------------------------------------------------------------


def _float_map(value: Any, aspects: Sequence[str], what: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping aspect -> number, got {value!r}")
    unknown = [k for k in value if k not in aspects]
    if unknown:
        raise ValueError(f"{what} names unknown aspect {unknown[0]!r}; aspects: {', '.join(aspects)}")
    return {a: float(value[a]) for a in aspects if a in value}


def _canonical_metric(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        mean = float(value["mean"])
        ci = value.get("ci")
    else:
        mean, ci = float(value), None
    if not math.isfinite(mean):
        raise ValueError(f"{where} mean is not finite ({mean})")
    if ci is not None:
        ci = [float(ci[0]), float(ci[1])]
    return {"mean": mean, "ci": ci}


def _canonical_point(point: Mapping[str, Any], aspects: Sequence[str], index: int) -> dict[str, Any]:
    """One ``front.json`` point: contract keys first, in a fixed order, then any extras."""
    method = point.get("method")
    if not isinstance(method, str) or not method:
        raise ValueError(f"point {index} has no method (e.g. 'base', 'soup', 'peo')")
    alpha = point.get("alpha")
    alpha = None if alpha is None else float(alpha)
    if method == "soup" and (alpha is None or abs(alpha) > _ALPHA_TOL):
        raise ValueError(f"point {index} is a soup but has alpha={alpha}; soups have alpha 0 (label it 'peo')")
    if method == "peo" and (alpha is None or abs(alpha) <= _ALPHA_TOL):
        raise ValueError(f"point {index} is 'peo' but has alpha={alpha}; alpha 0 is a 'soup' point")
    metrics = point.get("metrics") or {}
    missing = [a for a in aspects if a not in metrics]
    if missing:
        raise ValueError(f"point {index} ({method}) has no metric for aspect {missing[0]!r}")
    out: dict[str, Any] = {
        "method": method,
        "weights": _float_map(point.get("weights"), aspects, f"point {index} weights"),
        "alpha": alpha,
        "coefficients": _float_map(point.get("coefficients"), aspects, f"point {index} coefficients"),
        "metrics": {a: _canonical_metric(metrics[a], f"point {index} metric {a!r}") for a in aspects},
        "on_front": False,
    }
    for key, value in point.items():
        if key not in out:
            out[key] = value
    return out


def _reference_dict(reference_point: Any, aspects: Sequence[str]) -> dict[str, float]:
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


def method_hypervolumes(
    points: Sequence[Mapping[str, Any]], aspects: Sequence[str], reference: Mapping[str, float]
) -> dict[str, float]:
    """Hypervolume per method, with ``peo`` meaning the whole PEO family (soup + peo).

    Keys: ``peo`` (whenever a family point exists), ``soup`` (when soups exist), then every
    other method present, in order of first appearance. ``peo`` is the family's so that
    "peo >= soup" holds by construction and the gap is what extrapolation adds.
    """
    means = _means(points, aspects)
    ref = [reference[a] for a in aspects]
    methods = [p.get("method") for p in points]
    result: dict[str, float] = {}
    family = _family_indices(points)
    if family:
        result["peo"] = hypervolume(means[family], ref)
    for method in dict.fromkeys(methods):
        if method == "peo":
            continue
        rows = [i for i, m in enumerate(methods) if m == method]
        result[str(method)] = hypervolume(means[rows], ref)
    order = ["peo", "soup"]
    return {k: result[k] for k in order if k in result} | {k: v for k, v in result.items() if k not in order}


def build_front(
    aspects: Sequence[str],
    points: Sequence[Mapping[str, Any]],
    reference_point: Mapping[str, float] | Sequence[float] | None = None,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Assemble ``front.json`` (DESIGN.md section 3) from evaluated points.

    ``points`` are dicts with ``method`` ("base", "aspect", "soup", "peo", "morl", ...),
    ``weights``, ``alpha``, ``coefficients`` (each may be ``None`` where it does not apply,
    e.g. the base) and ``metrics`` ``{aspect: {"mean": float, "ci": [lo, hi]}}`` (a bare
    number is read as a mean without CI). Extra keys are kept. Soups must have ``alpha == 0``
    and ``peo`` points ``alpha != 0``, as the contract says. The reference point defaults to
    zeros: metrics are normalised to [0, 1], higher is better. Points keep their order, so
    ``presets[...]["point_index"]`` indexes ``points``.
    """
    aspects = list(aspects)
    if len(aspects) < 2 or len(set(aspects)) != len(aspects):
        raise ValueError(f"a front needs two or more distinct aspects, got {aspects}")
    canonical = [_canonical_point(p, aspects, i) for i, p in enumerate(points)]
    reference = _reference_dict(reference_point, aspects)
    for point, flag in zip(canonical, family_front_mask(canonical, aspects)):
        point["on_front"] = bool(flag)
    return {
        "aspects": aspects,
        "reference_point": reference,
        "points": canonical,
        "hypervolume": method_hypervolumes(canonical, aspects, reference),
        "presets": compute_presets(canonical, aspects, thresholds),
    }


def _structure_problems(front: Any) -> list[str]:
    """Schema problems that make recomputation impossible (empty list when none)."""
    if not isinstance(front, Mapping):
        return ["front is not a JSON object"]
    problems = [f"missing key {k!r}" for k in ("aspects", "reference_point", "points", "hypervolume", "presets") if k not in front]
    if problems:
        return problems
    aspects = front["aspects"]
    if not isinstance(aspects, list) or len(aspects) < 2 or not all(isinstance(a, str) for a in aspects):
        return ["'aspects' must be a list of two or more aspect names"]
    ref = front["reference_point"]
    if not isinstance(ref, Mapping) or not all(_is_number(ref.get(a)) for a in aspects):
        problems.append("'reference_point' must give a number for every aspect")
    if not isinstance(front["points"], list):
        return problems + ["'points' must be a list"]
    for i, point in enumerate(front["points"]):
        if not isinstance(point, Mapping) or not isinstance(point.get("method"), str):
            problems.append(f"points[{i}] has no method")
            continue
        metrics = point.get("metrics")
        for a in aspects:
            metric = metrics.get(a) if isinstance(metrics, Mapping) else None
            mean = metric.get("mean") if isinstance(metric, Mapping) else None
            if not _is_number(mean):
                problems.append(f"points[{i}] ({point['method']}) lacks a finite metrics.{a}.mean")
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _alpha_problems(points: Sequence[Mapping[str, Any]]) -> list[str]:
    problems = []
    for i, point in enumerate(points):
        alpha = point.get("alpha")
        if alpha is not None and not _is_number(alpha):
            problems.append(f"points[{i}] has a non-numeric alpha {alpha!r}")
            continue
        if point["method"] == "soup" and (alpha is None or abs(alpha) > _ALPHA_TOL):
            problems.append(f"points[{i}] is a soup with alpha={alpha}; soups have alpha 0")
        if point["method"] == "peo" and (alpha is None or abs(alpha) <= _ALPHA_TOL):
            problems.append(f"points[{i}] is 'peo' with alpha={alpha}; alpha 0 is a soup")
    return problems


def _close(a: Any, b: float) -> bool:
    return isinstance(a, (int, float)) and math.isclose(float(a), b, rel_tol=_HV_RTOL, abs_tol=_HV_ATOL)


def check_front(front: Mapping[str, Any], thresholds: Iterable[float] = DEFAULT_THRESHOLDS) -> list[str]:
    """Recompute what ``front.json`` derives from its points; list every mismatch.

    Checked: the schema needed to recompute, the soup/peo alpha rule, every ``on_front``
    flag, every hypervolume entry (same keys, values within 1e-9 relative), and the presets
    (same names, same ``point_index``; pass the ``thresholds`` given to :func:`build_front`
    if they were not the defaults). An empty list means the file is self-consistent.
    Used by the tests and after writing a bundle, so a hand edit or a bug in the pipeline
    cannot ship a front whose flags or numbers do not follow from its own points.
    """
    problems = _structure_problems(front)
    if problems:
        return problems
    aspects: list[str] = front["aspects"]
    points = front["points"]
    problems += _alpha_problems(points)
    for i, (point, flag) in enumerate(zip(points, family_front_mask(points, aspects))):
        if point.get("on_front") is not bool(flag):
            problems.append(f"points[{i}] ({point['method']}): on_front is {point.get('on_front')}, recomputed {bool(flag)}")
    expected_hv = method_hypervolumes(points, aspects, front["reference_point"])
    stored_hv = front["hypervolume"] if isinstance(front["hypervolume"], Mapping) else {}
    for key in expected_hv.keys() | stored_hv.keys():
        if key not in stored_hv:
            problems.append(f"hypervolume.{key} is missing (recomputed {expected_hv[key]:.6g})")
        elif key not in expected_hv:
            problems.append(f"hypervolume.{key} has no points of that method")
        elif not _close(stored_hv[key], expected_hv[key]):
            problems.append(f"hypervolume.{key} is {stored_hv[key]}, recomputed {expected_hv[key]:.12g}")
    problems += _preset_problems(front, points, aspects, thresholds)
    return problems


def _preset_problems(
    front: Mapping[str, Any], points: Sequence[Mapping[str, Any]], aspects: Sequence[str], thresholds: Iterable[float]
) -> list[str]:
    stored = front["presets"] if isinstance(front["presets"], Mapping) else {}
    expected = compute_presets(points, aspects, thresholds)
    problems = [f"preset {name!r} is missing" for name in expected if name not in stored]
    for name, entry in stored.items():
        if name not in expected:
            problems.append(f"preset {name!r} does not follow from the points")
        elif not isinstance(entry, Mapping) or entry.get("point_index") != expected[name]["point_index"]:
            got = entry.get("point_index") if isinstance(entry, Mapping) else entry
            problems.append(f"preset {name!r} points at {got}, recomputed {expected[name]['point_index']}")
    return problems


def save_front(front: Mapping[str, Any], bundle_dir: str | os.PathLike[str], check: bool = True) -> Path:
    """Write ``<bundle_dir>/front.json`` atomically and return its path.

    With ``check`` (the default) an inconsistent front is refused before anything is
    written, so a bundle never ships flags or hypervolumes that contradict its points.
    """
    if check:
        problems = check_front(front)
        if problems:
            raise ValueError("refusing to write an inconsistent front.json: " + "; ".join(problems[:5]))
    path = Path(bundle_dir) / FRONT_FILE
    atomic_write_json(path, front)
    return path


def load_front(path_or_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``front.json`` from a file path or a bundle folder.

    Raises :class:`~peo_hub.errors.BundleError` naming the file and the fix when it is
    missing, not JSON, or lacks what the plot and presets need. Recomputed consistency is
    :func:`check_front`'s job, not this loader's, so a slightly stale file still loads.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / FRONT_FILE
    if not path.is_file():
        raise BundleError(
            f"no {FRONT_FILE} at {path}; the bundle has no evaluated front yet, run "
            "`peo-hub recipe run RECIPE.yaml --resume` to evaluate it"
        )
    front = read_json(path, "re-run `peo-hub recipe run RECIPE.yaml --resume` to rewrite it")
    problems = _structure_problems(front)
    if problems:
        raise BundleError(
            f"{path} is not a valid front.json ({problems[0]}); re-run `peo-hub recipe run "
            "RECIPE.yaml --resume` to rewrite it"
        )
    return front


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------

_STYLE: dict[str, dict[str, Any]] = {
    "base": {"marker": "*", "color": "black", "s": 160, "label": "base"},
    "aspect": {"marker": "D", "color": "tab:purple", "s": 60, "label": "single aspect adapter"},
    "soup": {"marker": "s", "color": "tab:blue", "s": 40, "label": "soup (alpha = 0)"},
    "peo": {"marker": "o", "color": "tab:orange", "s": 40, "label": "PEO (alpha != 0)"},
}
_OTHER_COLORS = ["tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]


def _style(method: str, others: list[str]) -> dict[str, Any]:
    if method in _STYLE:
        return _STYLE[method]
    if method not in others:
        others.append(method)
    color = _OTHER_COLORS[(others.index(method)) % len(_OTHER_COLORS)]
    return {"marker": "^", "color": color, "s": 50, "label": method}


def _errors(points: Sequence[Mapping[str, Any]], aspect: str) -> np.ndarray:
    """``(2, n)`` asymmetric error bars from the CIs (zero where a point has none)."""
    out = np.zeros((2, len(points)))
    for k, point in enumerate(points):
        metric = point["metrics"][aspect]
        ci = metric.get("ci") if isinstance(metric, Mapping) else None
        if ci is not None:
            mean = float(metric["mean"])
            out[0, k] = max(0.0, mean - float(ci[0]))
            out[1, k] = max(0.0, float(ci[1]) - mean)
    return out


def _preset_aspects(entry: Mapping[str, Any]) -> set[str]:
    """Aspects a preset's rule talks about (empty for rules over all aspects, e.g. balanced)."""
    named = {entry.get("maximise")}
    constraint = entry.get("constraint")
    if isinstance(constraint, Mapping):
        named.add(constraint.get("aspect"))
    return {a for a in named if isinstance(a, str)}


def _preset_labels(front: Mapping[str, Any], panel: Sequence[str]) -> dict[int, str]:
    """Preset names grouped by point, for the presets whose rule lives in this panel's axes.

    With more than two aspects, ``max_a_with_b_ge_x`` only makes sense in the (a, b) panel;
    showing every preset everywhere buries the points. At most two names per label.
    """
    by_point: dict[int, list[str]] = {}
    for name, entry in (front.get("presets") or {}).items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("point_index"), int):
            continue
        if _preset_aspects(entry) <= set(panel):
            by_point.setdefault(entry["point_index"], []).append(name)
    labels = {}
    for index, names in by_point.items():
        names = sorted(names, key=lambda n: (n != "balanced", len(n)))
        extra = f" (+{len(names) - 2})" if len(names) > 2 else ""
        labels[index] = "\n".join(names[:2]) + extra
    return labels


def _draw_panel(ax: Any, front: Mapping[str, Any], x: str, y: str, current: Mapping[str, float] | None) -> None:
    points = front["points"]
    aspects = front["aspects"]
    means = _means(points, aspects)
    jx, jy = aspects.index(x), aspects.index(y)
    others: list[str] = []
    for method in dict.fromkeys(p["method"] for p in points):
        idx = [i for i, p in enumerate(points) if p["method"] == method]
        sub = [points[i] for i in idx]
        style = _style(method, others)
        on_top = 6 if method == "base" else 3  # the base often coincides with a corner point
        ax.errorbar(
            means[idx, jx], means[idx, jy], xerr=_errors(sub, x), yerr=_errors(sub, y),
            fmt="none", ecolor=style["color"], alpha=0.35, lw=1, zorder=1,
        )
        ax.scatter(
            means[idx, jx], means[idx, jy], marker=style["marker"], c=style["color"],
            s=style["s"], label=style["label"], zorder=on_top, edgecolors="white", linewidths=0.5,
        )
    family = _family_indices(points)
    if family:
        proj = means[family][:, [jx, jy]]
        nd = proj[non_dominated_mask(proj)]
        nd = nd[np.argsort(nd[:, 0], kind="stable")]
        label = "PEO front" if len(aspects) == 2 else "PEO front (projection)"
        ax.step(nd[:, 0], nd[:, 1], where="pre", color="tab:red", lw=1.5, zorder=2, label=label)
        # rings keep a one-point front visible (a step line through one point draws nothing)
        ax.scatter(nd[:, 0], nd[:, 1], s=120, facecolors="none", edgecolors="tab:red", linewidths=1.0, zorder=2)
    for index, text in _preset_labels(front, (x, y)).items():
        if 0 <= index < len(points):
            ax.annotate(
                text, (means[index, jx], means[index, jy]), xytext=(6, 6), textcoords="offset points",
                fontsize=7, color="tab:red", zorder=4,
            )
    if current is not None and x in current and y in current:
        ax.scatter(
            [float(current[x])], [float(current[y])], marker="X", s=220, c="red",
            edgecolors="black", linewidths=1.0, zorder=5, label="current",
        )
    ax.margins(x=0.12, y=0.12)  # room for the preset labels
    ax.set_xlabel(f"{x} (higher is better)")
    ax.set_ylabel(f"{y} (higher is better)")
    ax.grid(True, alpha=0.3)


def plot_front(
    front: Mapping[str, Any],
    path: str | os.PathLike[str],
    current: Mapping[str, float] | None = None,
) -> Path:
    """Draw ``front.png``: every point by method, CIs, the PEO front, presets, the base.

    One panel for two aspects, a grid of pairwise panels for more (the drawn front is then
    the family's non-dominated set in that projection). ``current`` (aspect -> score) is
    highlighted, for the Space to show the user's live preference. Uses matplotlib's Agg
    canvas directly (no pyplot, no global backend switch), so it is safe inside a server or a
    notebook; the file is written to a temporary sibling and renamed, never half-written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    aspects = list(front["aspects"])
    pairs = list(itertools.combinations(aspects, 2))
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.6 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (x, y) in zip(axes, pairs):
        _draw_panel(ax, front, x, y, current)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    hv = front.get("hypervolume") or {}
    summary = ", ".join(f"{k} {v:.3f}" for k, v in hv.items() if isinstance(v, (int, float)))
    summary = textwrap.fill(f"hypervolume: {summary}", width=60 * ncols) if summary else ""
    fig.suptitle(f"Pareto front of {' vs '.join(aspects)}\n{summary}".strip(), fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0].legend(unique.values(), unique.keys(), fontsize=7, loc="best")
    fig.tight_layout()
    return _save_figure_atomically(fig, Path(path))


def _save_figure_atomically(fig: Any, path: Path) -> Path:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
