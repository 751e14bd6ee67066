"""Controllability: does a method's measured behaviour follow its dial, and does a preset deliver its rule?

Two questions a user of a dial asks, as MOD (Shi et al. 2024) and DPA (Wang et al. 2024)
report them:

* **Does turning the dial move the scores in order?** Per method, the Spearman rank
  correlation (``scipy.stats.spearmanr``) between its dial and every measured score over
  its grid: each aspect's mean and, in the refusal plane, the shares of harmful and benign
  requests refused. The dial is the method's own: a weight ``w_<aspect>`` for the methods
  mixed by weights (soup, PEO at each alpha, MOD, MORL: one entry per weight), the point's
  ``dial`` value for one-knob baselines (a system prompt's strength, a steering scale).
  A rank correlation of +1 (or -1) is a dial that never goes back; near 0, a dial that
  does not steer. Searched points (``source: search``) and the base are not on a grid.
* **Does a preset deliver what its rule asked for?** Per preset, on the confirmation
  prompts (the rule chose on the selection prompts): a constraint's measured value, its
  interval, the gap to the level asked for and whether it is met; an objective's regret,
  how far the chosen point falls behind the best point the rule could have chosen, when
  measured on the confirmation prompts.

Everything here follows from front.json's points and presets; :func:`peo_hub.bundle.front.build_front`
stores it as ``controllability`` and :func:`peo_hub.bundle.front.check_front` recomputes it.
Points are read duck-typed (``method``, ``mean``, ``weights``, ``alpha``, ``refusal``, extra keys),
so this module does not import the front's types.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: The refusal plane's measures, as named in controllability entries.
REFUSED = {"refused_harmful": "harmful", "refused_benign": "benign"}


def _extra(point: Any, key: str) -> Any:
    return (getattr(point, "model_extra", None) or {}).get(key)


def _rate(point: Any, kind: str, choosing: bool = False) -> float | None:
    plane = getattr(point, "refusal", None)
    rate = None if plane is None else getattr(plane, kind)
    if rate is None:
        return None
    return rate.choosing() if choosing else rate.rate


def spearman(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """``{rho, p_value, n}``; rho ``None`` when either side is constant (no order to follow)."""
    from scipy.stats import spearmanr

    n = len(x)
    if n < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return {"rho": None, "p_value": None, "n": n}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    return {"rho": None if math.isnan(rho) else round(rho, 6), "p_value": None if math.isnan(p) else round(p, 6),
            "n": n}


def _measures(points: Sequence[Any], aspects: Sequence[str]) -> dict[str, list[float]]:
    """Every measured score of the points: each aspect's mean, and the refusal rates all of them have."""
    out = {a: [float(p.mean(a)) for p in points] for a in aspects}
    for name, kind in REFUSED.items():
        rates = [_rate(p, kind) for p in points]
        if rates and all(r is not None for r in rates):
            out[name] = [float(r) for r in rates]  # type: ignore[arg-type]
    return out


def _groups(points: Sequence[Any]) -> list[tuple[dict[str, Any], list[Any]]]:
    """(entry header, points) per dial: each method's grid, PEO once per alpha."""
    groups: dict[tuple[Any, ...], tuple[dict[str, Any], list[Any]]] = {}
    for point in points:
        if point.method == "base" or _extra(point, "source") == "search":
            continue
        dial = _extra(point, "dial")
        if isinstance(dial, Mapping):
            key: tuple[Any, ...] = (point.method, "dial", dial.get("name"))
            header = {"method": point.method, "dial": str(dial.get("name"))}
        elif point.weights is not None:
            alpha = point.alpha if point.method == "peo" else None
            key = (point.method, "weights", alpha)
            header = {"method": point.method, "dial": "weights"} | ({"alpha": alpha} if alpha is not None else {})
        else:
            continue
        groups.setdefault(key, (header, []))[1].append(point)
    return list(groups.values())


def dial_controllability(points: Sequence[Any], aspects: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per dial: ``{method, dial, [alpha], n, spearman: {dial_name: {measure: {rho, p_value, n}}}}``."""
    entries = []
    for header, group in _groups(points):
        measures = _measures(group, aspects)
        if header["dial"] == "weights":
            dials = {f"w_{a}": [float((p.weights or {}).get(a, 0.0)) for p in group] for a in aspects}
        else:
            dials = {header["dial"]: [float(_extra(p, "dial")["value"]) for p in group]}
        entries.append({**header, "n": len(group),
                        "spearman": {d: {m: spearman(x, y) for m, y in measures.items()} for d, x in dials.items()}})
    return entries


def preset_fidelity(points: Sequence[Any], aspects: Sequence[str], presets: Mapping[str, Any],
                    candidates: Callable[[bool], list[int]]) -> dict[str, dict[str, Any]]:
    """Per preset, on the confirmation prompts: the constraint as measured, and the objective's regret.

    ``candidates(plane)`` gives the indices a rule may choose from (the front's, or the refusal
    plane's); the regret compares the chosen point with the best of those that met the
    constraint on the selection prompts, as the rule saw them.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, preset in presets.items():
        index = preset.point_index
        if index is None or not 0 <= index < len(points):
            continue
        point = points[index]
        constraint = preset.constraint or {}
        plane = "refused" in constraint
        pool = candidates(plane)
        entry: dict[str, Any] = {}
        if constraint:
            level = float(constraint["min"])
            if plane:
                kind = constraint["refused"]
                rate = point.refusal and getattr(point.refusal, kind)
                measured, ci = (None, None) if not rate else (rate.rate, rate.ci)
                pool = [i for i in pool if (_rate(points[i], kind, choosing=True) or 0.0) >= level - 1e-12]
                entry["asked"] = {"measure": f"refused_{kind}", "min": level}
            else:
                measured, ci = point.mean(constraint["aspect"]), point.metrics[constraint["aspect"]].ci
                pool = [i for i in pool if _choosing_mean(points[i], constraint["aspect"]) >= level - 1e-12]
                entry["asked"] = {"measure": constraint["aspect"], "min": level}
            if measured is not None:
                entry.update(measured=measured, ci=None if ci is None else list(ci), gap=measured - level,
                             met=bool(measured >= level), met_at_95=None if ci is None else bool(ci[0] >= level))
        objective = _objective(name, preset, aspects)
        if objective is not None and pool:
            values = objective(points, pool)
            chosen = values[pool.index(index)] if index in pool else objective(points, [index])[0]
            entry["regret"] = {"objective": _objective_name(name, preset), "value": float(max(values) - chosen)}
        out[name] = entry
    return out


def _choosing_mean(point: Any, aspect: str) -> float:
    selection = getattr(point, "selection", None)
    return float(selection[aspect]) if selection and aspect in selection else float(point.mean(aspect))


def _objective_name(name: str, preset: Any) -> str:
    if preset.maximise:
        return preset.maximise
    if (getattr(preset, "model_extra", None) or {}).get("minimise") == "benign_refused":
        return "fewer benign refused"
    return "worst aspect, scaled over the front" if name == "balanced" else name


def _objective(name: str, preset: Any, aspects: Sequence[str]) -> Callable[[Sequence[Any], list[int]], list[float]] | None:
    """The rule's objective on the confirmation prompts (higher is better) over candidate rows."""
    if preset.maximise:
        return lambda points, rows: [float(points[i].mean(preset.maximise)) for i in rows]
    if (getattr(preset, "model_extra", None) or {}).get("minimise") == "benign_refused":
        return lambda points, rows: [-(_rate(points[i], "benign") or 0.0) for i in rows]
    if name == "balanced":
        def balanced(points: Sequence[Any], rows: list[int]) -> list[float]:
            means = np.array([[points[i].mean(a) for a in aspects] for i in rows], dtype=float)
            lo, span = means.min(axis=0), np.ptp(means, axis=0)
            scaled = np.where(span > 0, (means - lo) / np.where(span > 0, span, 1.0), 1.0)
            return [float(v) for v in scaled.min(axis=1)]
        return balanced
    return None
