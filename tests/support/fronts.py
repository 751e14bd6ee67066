"""Hand-checkable sweeps for the front and plot tests: two aspects, ten points of known dominance."""

from __future__ import annotations

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
