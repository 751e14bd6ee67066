"""``mod``: decoding-time mixing of the aspect policies at the family's weights (Shi et al., NeurIPS 2024).

Where PEO mixes the aspect adapters' *weights* (θ₀ + Σ cᵢ Δᵢ), MOD mixes the aspect
policies' *outputs*: at every token, ``Σ wᵢ log πᵢ`` with ``πᵢ`` = the base with aspect i's
adapter at coefficient 1 (:mod:`peo_hub.family.mod`). Its points are the sweep's weight grid
(``sweep.weights``), the same weight vectors as the soup's, so the two mixings compare
point for point; its dial is the weights, as PEO's is (alpha has no counterpart).

Cost: the aspect adapters PEO trained (no run of its own), and per generated token one
forward pass of as many rows as the point has non-zero weights (N at an interior point, 1
at a corner, where MOD is the aspect policy), batched together on one loaded model.
"""

from __future__ import annotations

from typing import Any

from peo_hub.core.policy import make_preference, weight_grid
from peo_hub.evaluate.baselines.registry import (Baseline, BaselineContext, BaselinePoint, Replies, by_point,
                                                 register_baseline)


def _points(sweep: Any, aspects: list[str], tokenizer: Any) -> list[BaselinePoint]:
    points = []
    for weights in weight_grid(aspects, sweep.weights):
        nonzero = sum(w > 0 for w in weights.values())
        points.append(BaselinePoint(label=make_preference(aspects, weights).label(), weights=weights,
                                    extra={"forward_rows_per_token": nonzero}))
    return points


def _replies(context: BaselineContext, points: list[BaselinePoint]) -> Replies:
    """All points' rows (point x prompt x sample) in one batched MOD pass, yielded per point."""
    from peo_hub.family.mod import mod_rows

    spec = context.evaluate
    texts = [t for _ in points for t in context.rendered for _ in range(spec.samples)]
    samples = [s for _ in points for _ in context.rendered for s in range(spec.samples)]
    weights = [point.weights for point in points for _ in range(len(context.rendered) * spec.samples)]
    chunks = mod_rows(context.model(), context.tokenizer, texts, samples, weights, spec, context.seed)
    for k, replies in by_point((chunk for _, chunk in chunks), len(points), len(context.rendered), spec.samples):
        yield k, replies, {}


def _cost(sweep: Any, aspects: list[str]) -> dict[str, Any]:
    grid = weight_grid(aspects, sweep.weights)
    rows = [sum(w > 0 for w in weights.values()) for weights in grid]
    return {"training_runs": len(aspects), "new_training_runs": 0, "forward_passes_per_token": sum(rows) / len(rows),
            "notes": f"the {len(aspects)} aspect adapters PEO trained; per token one batched forward of as many rows as "
                     f"non-zero weights ({len(aspects)} inside the simplex, 1 at a corner; the mean over the grid)"}


register_baseline(Baseline(
    name="mod",
    summary="decoding-time mixing (MOD, Shi et al. 2024): per token Σ w_i log π_i of the aspect policies, at the "
            "sweep's weight grid; no training beyond the aspect adapters",
    dial="weights: the grid's weight vectors, as the soup's",
    points=_points, replies=_replies, cost=_cost))
