"""Pareto math: dominance and exact hypervolume, for points in "aspect space" (maximisation).

Every evaluated policy is a point with one normalised score per aspect, higher is better on
every axis. Two questions of a sweep are answered here, on plain arrays:

* which policies are worth offering? -> the non-dominated points (:func:`non_dominated_mask`);
* how much score space does a set of policies cover? -> the hypervolume above a reference
  point (:func:`hypervolume`).

What a ``front.json`` says about these (flags, per-method hypervolumes, presets) is
:mod:`peo_hub.bundle.front`; drawing it is :mod:`peo_hub.bundle.plot`. The computing is moocore's (a
maintained C library for multi-objective optimisation, no torch), so the Space, the CLI and
the tests import this cheaply.
"""

from __future__ import annotations

from typing import Any, Sequence

import moocore
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

    moocore's ``is_nondominated`` (an O(n log n) dimension sweep for up to 3 aspects);
    duplicates are kept (``keep_weakly``): an exact copy of a non-dominated point is
    non-dominated, so two policies that score the same are both listed.
    """
    pts = as_points(points)
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(pts, maximise=True, keep_weakly=True), dtype=bool)


def hypervolume(points: Any, reference: Sequence[float]) -> float:
    """Exact volume of the region dominated by ``points`` and bounded below by ``reference``.

    Maximisation: the region is the union of the boxes ``[reference, p]``. A point that is not
    strictly better than the reference on some axis adds nothing (its box is flat or empty;
    it never adds negative volume). Computed exactly by moocore (no sampling; O(n log n) for
    2-3 aspects); ``tests/core/test_pareto.py`` checks it against an independent exact slicing
    implementation and two brute-force references.

    Why hypervolume: it is the one standard scalar that rewards a front for being both
    better and wider, and it is strictly monotone under Pareto improvement, so "PEO's
    hypervolume exceeds the soup's" is a fair one-number comparison at a fixed reference.
    """
    ref = np.asarray(reference, dtype=float).reshape(-1)
    if not np.all(np.isfinite(ref)):
        raise ValueError("the reference point must be finite")
    pts = as_points(points, dims=len(ref))
    pts = pts[np.all(pts > ref, axis=1)]  # flat or empty boxes have no volume
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref, maximise=True))
