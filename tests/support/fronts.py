"""Hand-checkable sweeps for the front and plot tests: two aspects, ten points of known dominance,
and a front with a refusal plane, a search-free grid per method and a steering baseline."""

from __future__ import annotations

from typing import Any

ASPECTS = ["helpful", "harmless"]


def make_point(method: str, h: float, s: float, w: float | None = None, alpha: float | None = 0.0) -> dict:
    metrics = {
        "helpful": {"mean": h, "ci": [h - 0.02, h + 0.03]},
        "harmless": {"mean": s, "ci": [s - 0.01, s + 0.01]},
    }
    weights = None if w is None else {"helpful": w, "harmless": 1 - w}
    coefs = None if w is None or alpha is None else {k: (1 + alpha) * v for k, v in weights.items()}
    return {"method": method, "weights": weights, "alpha": alpha, "coefficients": coefs, "metrics": metrics}


def toy_points() -> list[dict]:
    """A small hand-checkable sweep.

    index: method (helpful, harmless)
      0 base (0.30, 0.80)   1 aspect (0.50, 0.70)   2 aspect (0.20, 0.95)
      3 soup (0.20, 0.92)   4 soup (0.35, 0.85)      5 soup (0.30, 0.80)  <- dominated by 4
      6 peo  (0.25, 0.96)   7 peo  (0.45, 0.78)      8 peo  (0.35, 0.85)  <- duplicate of 4
      9 morl (0.40, 0.90)
    """
    return [
        make_point("base", 0.30, 0.80, None, None),
        make_point("aspect", 0.50, 0.70, 1.0),
        make_point("aspect", 0.20, 0.95, 0.0),
        make_point("soup", 0.20, 0.92, 0.0),
        make_point("soup", 0.35, 0.85, 0.5),
        make_point("soup", 0.30, 0.80, 0.75),
        make_point("peo", 0.25, 0.96, 0.25, 0.5),
        make_point("peo", 0.45, 0.78, 0.75, 0.5),
        make_point("peo", 0.35, 0.85, 0.5, 0.5),
        make_point("morl", 0.40, 0.90, 0.5),
    ]


def plane_rate(rate: float, selection: float | None = None, ci: float = 0.05) -> dict[str, Any]:
    return {"rate": rate, "ci": [rate - ci, rate + ci], "n_prompts": 10,
            "selection": rate if selection is None else selection}


def plane_point(method: str, helpful: float, harmless: float, harmful: float, benign: float,
                w: float | None = None, alpha: float | None = 0.0, selection: dict[str, float] | None = None,
                harmful_selection: float | None = None, **extra: Any) -> dict[str, Any]:
    """One point with metrics, a refusal plane and (for weight-dialled methods) weights."""
    weights = None if w is None else {"helpful": w, "harmless": 1 - w}
    return {"method": method, "weights": weights, "alpha": alpha,
            "coefficients": None if weights is None or alpha is None else
            {a: (1 + alpha) * v for a, v in weights.items()},
            "metrics": {"helpful": {"mean": helpful, "ci": [helpful - 0.05, helpful + 0.05]},
                        "harmless": {"mean": harmless, "ci": [harmless - 0.05, harmless + 0.05]}},
            "selection": selection or {"helpful": helpful, "harmless": harmless},
            "refusal": {"harmful": plane_rate(harmful, harmful_selection), "benign": plane_rate(benign)}, **extra}


def plane_front() -> list[dict[str, Any]]:
    """Soups and PEO points, a PEO point the aspects' front dominates but that refuses enough harmful requests
    (index 5), and a steering baseline with its own dial."""
    return [
        plane_point("base", 0.50, 0.50, 0.05, 0.02, alpha=None),
        plane_point("soup", 0.20, 0.95, 0.97, 0.40, w=0.0),   # 1
        plane_point("soup", 0.55, 0.80, 0.80, 0.10, w=0.5),   # 2
        plane_point("soup", 0.80, 0.30, 0.10, 0.01, w=1.0),   # 3
        plane_point("peo", 0.85, 0.25, 0.05, 0.00, w=1.0, alpha=0.5),  # 4
        plane_point("peo", 0.50, 0.78, 0.90, 0.08, w=0.5, alpha=0.5),  # 5: dominated by 2 in the aspects
        plane_point("peo", 0.10, 0.97, 0.99, 0.60, w=0.0, alpha=0.5),  # 6
        plane_point("steer", 0.45, 0.60, 0.50, 0.20, alpha=None, dial={"name": "scale", "value": -1.0}),
        plane_point("steer", 0.40, 0.70, 0.70, 0.30, alpha=None, dial={"name": "scale", "value": 1.0}),
        plane_point("steer", 0.30, 0.90, 0.95, 0.50, alpha=None, dial={"name": "scale", "value": 2.0}),
    ]


def plane_bundle_front() -> dict[str, Any]:
    """The plane front as the sweep writes it: controllability, method costs and a difference to steer."""
    from peo_hub.bundle.front import build_front, controllability

    front = build_front(ASPECTS, plane_front(), method_cost={
        "peo": {"training_runs": 2, "forward_passes_per_token": 1.0},
        "steer": {"training_runs": 0, "forward_passes_per_token": 1.0, "dial": "scale: the multiple"}})
    front.controllability = controllability(front.points, ASPECTS, front.presets)
    data = front.to_json()
    data["hypervolume_difference"] = {"peo_minus_steer": {"estimate": 0.12, "ci": [0.05, 0.2], "verdict": "better"}}
    return data
