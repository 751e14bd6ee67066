"""Pareto math: dominance and exact hypervolume, for points in "aspect space" (maximisation).

Every evaluated policy is a point with one normalised score per aspect, higher is better on
every axis. Two questions of a sweep are answered here, on plain arrays:

* which policies are worth offering? -> the non-dominated points (:func:`non_dominated_mask`);
* how much score space does a set of policies cover? -> the hypervolume above a reference
  point (:func:`hypervolume`).

What a ``front.json`` says about these (flags, per-method hypervolumes, presets) is
:mod:`peo_hub.front`; drawing it is :mod:`peo_hub.plot`. Pure numpy on purpose: the Space,
the CLI and the tests import this without torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def as_points(points: Any, dims: int | None = None) -> np.ndarray:
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
    pts = as_points(points)
    n = len(pts)
    dominated = np.zeros(n, dtype=bool)
    block = max(1, 2_000_000 // max(1, n * max(1, pts.shape[1])))
    for start in range(0, n, block):
        cand = pts[start : start + block]  # the points whose dominance we decide
        ge = np.all(pts[:, None, :] >= cand[None, :, :], axis=2)  # other >= cand everywhere
        gt = np.any(pts[:, None, :] > cand[None, :, :], axis=2)  # other > cand somewhere
        dominated[start : start + block] = np.any(ge & gt, axis=0)
    return ~dominated


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
    pts = as_points(points, dims=len(ref))
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
