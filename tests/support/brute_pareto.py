"""Brute-force Pareto references, deliberately independent of peo_hub.core.pareto (and of moocore).

Dominance by a double loop over ``dominates`` and by blocked pairwise comparison; hypervolume
by inclusion-exclusion over all subsets, by summing the volume of every cell of the
coordinate grid, and by the exact "hypervolume by slicing objectives" recursion peo-hub used
before it moved to moocore. Shared by the pareto, front and plot tests.
"""

from __future__ import annotations

import itertools

import numpy as np

from peo_hub.core.pareto import dominates

# --------------------------------------------------------------------------------------------
# brute-force references
# --------------------------------------------------------------------------------------------


def brute_non_dominated(points: np.ndarray) -> np.ndarray:
    n = len(points)
    return np.array([not any(dominates(points[j], points[i]) for j in range(n) if j != i) for i in range(n)], dtype=bool)


def brute_hv_inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    """Σ over non-empty subsets S of (-1)^(|S|+1) · vol(∩ boxes); exact, exponential."""
    clipped = np.maximum(points, ref) - ref
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), size):
            total += (-1) ** (size + 1) * float(np.prod(clipped[list(subset)].min(axis=0)))
    return total


def brute_hv_grid(points: np.ndarray, ref: np.ndarray) -> float:
    """Sum the cells of the grid spanned by all coordinates whose upper corner is dominated."""
    clipped = np.maximum(points, ref)
    edges = [np.unique(np.concatenate([[ref[j]], clipped[:, j]])) for j in range(len(ref))]
    widths = [np.diff(e) for e in edges]
    uppers = [e[1:] for e in edges]
    total = 0.0
    for cell in itertools.product(*[range(len(w)) for w in widths]):
        corner = np.array([uppers[j][k] for j, k in enumerate(cell)])
        if np.any(np.all(clipped >= corner, axis=1)):
            total += float(np.prod([widths[j][k] for j, k in enumerate(cell)]))
    return total


def pairwise_non_dominated(points: np.ndarray) -> np.ndarray:
    """peo-hub's former implementation: vectorised pairwise comparison in row blocks."""
    pts = np.asarray(points, dtype=float)
    ge = np.all(pts[:, None, :] >= pts[None, :, :], axis=2)  # other >= cand everywhere
    gt = np.any(pts[:, None, :] > pts[None, :, :], axis=2)  # other > cand somewhere
    return ~np.any(ge & gt, axis=0)


def slicing_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """peo-hub's former exact hypervolume: slice along the last axis, recurse, sweep in 2-D."""
    shifted = np.maximum(np.asarray(points, dtype=float), ref) - ref
    shifted = shifted[np.all(shifted > 0, axis=1)]
    if len(shifted) == 0:
        return 0.0
    shifted = np.unique(shifted, axis=0)
    return _hv_recursive(shifted[pairwise_non_dominated(shifted)])


def _hv_recursive(front: np.ndarray) -> float:
    dims = front.shape[1]
    if dims == 1:
        return float(front[:, 0].max())
    if dims == 2:
        order = np.lexsort((front[:, 1], -front[:, 0]))
        xs, ys = front[order, 0], np.maximum.accumulate(front[order, 1])
        return float(np.sum(xs * np.diff(np.concatenate([[0.0], ys]))))
    pts = front[np.argsort(-front[:, -1], kind="stable")]
    depths = np.append(pts[:, -1], 0.0)
    total, slice_front, slice_volume = 0.0, np.empty((0, dims - 1)), 0.0
    for k, point in enumerate(pts):
        projected = point[:-1]
        if not np.any(np.all(slice_front >= projected, axis=1)):
            keep = ~np.all(projected >= slice_front, axis=1)
            slice_front = np.vstack([slice_front[keep], projected])
            slice_volume = _hv_recursive(slice_front)
        total += slice_volume * (depths[k] - depths[k + 1])
    return total


def random_points(rng: np.random.Generator, n: int, d: int, kind: str) -> np.ndarray:
    """Continuous points, or small integers (many ties and duplicates), some below 0."""
    if kind == "int":
        return rng.integers(-1, 5, size=(n, d)).astype(float)
    return rng.uniform(-0.2, 1.0, size=(n, d))


# --------------------------------------------------------------------------------------------
# dominance
# --------------------------------------------------------------------------------------------
