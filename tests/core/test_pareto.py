"""Tests for peo_hub.core.pareto: dominance and hypervolume (moocore) against independent references.

The references below are deliberately independent of the implementation: dominance by a
double loop over ``dominates`` and by blocked pairwise comparison, hypervolume by
inclusion-exclusion over all subsets, by summing the volume of every cell of the coordinate
grid, and by the exact "hypervolume by slicing objectives" recursion peo-hub used before it
moved to moocore.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from peo_hub.core.pareto import dominates, hypervolume, non_dominated_mask

from brute_pareto import brute_non_dominated, brute_hv_inclusion_exclusion, brute_hv_grid, pairwise_non_dominated, slicing_hv, _hv_recursive, random_points  # noqa: F401


def test_dominates_hand_cases() -> None:
    assert dominates([1, 1], [0, 1])
    assert not dominates([0, 1], [1, 1])
    assert not dominates([1, 1], [1, 1])  # equal: neither dominates
    assert not dominates([2, 0], [0, 2])  # a trade-off
    with pytest.raises(ValueError):
        dominates([1, 2], [1, 2, 3])


@pytest.mark.parametrize("d", [2, 3, 4])
@pytest.mark.parametrize("kind", ["float", "int"])
def test_non_dominated_matches_brute_force(d: int, kind: str) -> None:
    rng = np.random.default_rng(100 * d + len(kind))
    for _ in range(15):
        pts = random_points(rng, int(rng.integers(1, 30)), d, kind)
        np.testing.assert_array_equal(non_dominated_mask(pts), brute_non_dominated(pts))


def test_non_dominated_edge_cases() -> None:
    assert non_dominated_mask(np.zeros((0, 2))).shape == (0,)
    np.testing.assert_array_equal(non_dominated_mask([[0.3, 0.4]]), [True])
    # duplicates of a front point all stay; a duplicate of a dominated point stays dominated
    pts = [[1, 1], [1, 1], [0, 0], [0, 0], [2, 0]]
    np.testing.assert_array_equal(non_dominated_mask(pts), [True, True, False, False, True])
    with pytest.raises(ValueError, match="NaN"):
        non_dominated_mask([[np.nan, 1.0], [0.0, 0.0]])


# --------------------------------------------------------------------------------------------
# hypervolume
# --------------------------------------------------------------------------------------------


def test_hypervolume_hand_cases() -> None:
    assert hypervolume([[1.0, 1.0]], [0, 0]) == pytest.approx(1.0)
    assert hypervolume([[0.5, 2.0], [2.0, 0.5]], [0, 0]) == pytest.approx(1.75)  # 1 + 1 - 0.25
    assert hypervolume([[1, 1, 1], [2, 0.5, 0.5]], [0, 0, 0]) == pytest.approx(1 + 0.25)
    assert hypervolume([[3.0, 2.0]], [1.0, 1.0]) == pytest.approx(2.0)  # reference not at 0
    assert hypervolume(np.zeros((0, 3)), [0, 0, 0]) == 0.0


def test_hypervolume_points_below_reference_add_nothing() -> None:
    ref = [0.5, 0.5]
    assert hypervolume([[0.4, 0.9]], ref) == 0.0  # worse than the reference on x
    assert hypervolume([[0.5, 0.9]], ref) == 0.0  # equal on x: a flat box
    assert hypervolume([[-1.0, -1.0], [0.7, 0.6]], ref) == pytest.approx(0.2 * 0.1)
    # clipping never subtracts: adding a point below the reference changes nothing
    base = hypervolume([[0.9, 0.8]], ref)
    assert hypervolume([[0.9, 0.8], [0.1, 2.0]], ref) == pytest.approx(base)


def test_hypervolume_duplicates_and_dominated_points_do_not_count_twice() -> None:
    rng = np.random.default_rng(7)
    pts = rng.uniform(0, 1, size=(12, 3))
    value = hypervolume(pts, [0, 0, 0])
    assert hypervolume(np.vstack([pts, pts]), [0, 0, 0]) == pytest.approx(value)
    assert hypervolume(np.vstack([pts, pts * 0.5]), [0, 0, 0]) == pytest.approx(value)
    assert hypervolume(pts[::-1], [0, 0, 0]) == pytest.approx(value)


@pytest.mark.parametrize("d,max_n", [(2, 9), (3, 9), (4, 8)])
def test_hypervolume_matches_inclusion_exclusion(d: int, max_n: int) -> None:
    rng = np.random.default_rng(d)
    for trial in range(12):
        kind = "int" if trial % 2 else "float"
        pts = random_points(rng, int(rng.integers(1, max_n + 1)), d, kind)
        ref = np.full(d, 0.0 if kind == "float" else 0.5)
        assert hypervolume(pts, ref) == pytest.approx(brute_hv_inclusion_exclusion(pts, ref), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("d,max_n", [(2, 40), (3, 20), (4, 10)])
def test_hypervolume_matches_grid_on_continuous_points(d: int, max_n: int) -> None:
    rng = np.random.default_rng(10 + d)
    for _ in range(5):
        pts = random_points(rng, int(rng.integers(1, max_n + 1)), d, "float")
        ref = rng.uniform(-0.1, 0.2, size=d)
        assert hypervolume(pts, ref) == pytest.approx(brute_hv_grid(pts, ref), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("d", [3, 4])
def test_hypervolume_exact_on_100_points_with_ties(d: int) -> None:
    """Integer coordinates keep the brute-force grid small while n = 100 stresses the recursion."""
    rng = np.random.default_rng(40 + d)
    pts = rng.integers(-1, 6, size=(100, d)).astype(float)
    ref = np.zeros(d)
    assert hypervolume(pts, ref) == pytest.approx(brute_hv_grid(pts, ref), rel=1e-12)


# --------------------------------------------------------------------------------------------
# moocore against the former exact implementation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["float", "int"])
def test_moocore_matches_the_former_exact_implementation(d: int, kind: str) -> None:
    """moocore computes the same fronts and volumes as the slicing recursion (ties, duplicates,
    points below the reference, 1 to 120 points)."""
    rng = np.random.default_rng(500 + 10 * d + len(kind))
    for _ in range(10):
        pts = random_points(rng, int(rng.integers(1, 120)), d, kind)
        ref = np.full(d, 0.0 if kind == "float" else 0.5) + (rng.uniform(-0.1, 0.1, d) if kind == "float" else 0)
        np.testing.assert_array_equal(non_dominated_mask(pts), pairwise_non_dominated(pts))
        assert hypervolume(pts, ref) == pytest.approx(slicing_hv(pts, ref), rel=1e-12, abs=1e-15)


def test_the_former_implementation_agrees_with_brute_force() -> None:
    """The cross-check above means something only if the reference itself is right."""
    rng = np.random.default_rng(9)
    for d in (2, 3, 4):
        pts = random_points(rng, 8, d, "float")
        assert slicing_hv(pts, np.zeros(d)) == pytest.approx(brute_hv_inclusion_exclusion(pts, np.zeros(d)), rel=1e-9)
        np.testing.assert_array_equal(pairwise_non_dominated(pts), brute_non_dominated(pts))
