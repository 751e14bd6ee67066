"""peo_hub.core.policy: the formulation, weights parsing, labels that never collide, grid bounds."""

from __future__ import annotations

import math

import pytest

from peo_hub.utils.errors import PreferenceError
from peo_hub.core.policy import (MAX_COEFFICIENT, coefficient_warning, grid_size, make_preference, parse_assignments,
                                 weight_grid)

ASPECTS = ["helpful", "harmless"]


def test_coefficients_are_one_plus_alpha_times_normalised_weights() -> None:
    p = make_preference(ASPECTS, {"helpful": 7, "harmless": 3}, alpha=0.5)
    assert p.coefficients == pytest.approx({"helpful": 1.05, "harmless": 0.45})
    raw = make_preference(ASPECTS, coefficients={"helpful": 1.5, "harmless": 0.5})
    assert raw.weights == {"helpful": 0.75, "harmless": 0.25} and raw.alpha == pytest.approx(1.0)


def test_labels_keep_two_decimals_and_never_collide() -> None:
    assert make_preference(ASPECTS, {"helpful": 0.7, "harmless": 0.3}, alpha=0.5).label() == \
        "helpful0.70-harmless0.30-a0.50"
    labels = {make_preference(ASPECTS, {"helpful": 1, "harmless": 0}, alpha=a).label() for a in (0, 0.5, 0.501)}
    assert len(labels) == 3
    grid = weight_grid(ASPECTS, 201)
    assert len({make_preference(ASPECTS, w).label() for w in grid}) == 201
    assert all(len(label) < 120 for label in labels)


def test_weights_parser_refuses_repeats_and_survives_huge_values() -> None:
    with pytest.raises(PreferenceError, match="'helpful' is given twice"):
        parse_assignments("helpful=1,helpful=2")
    huge = make_preference(ASPECTS, parse_assignments("helpful=1e308,harmless=1e308"))
    assert huge.weights == {"helpful": 0.5, "harmless": 0.5}  # not all zeros (the base model)
    with pytest.raises(PreferenceError, match="must be at most 1000"):
        make_preference(ASPECTS, coefficients=parse_assignments("helpful=1e300", "coefficients"))
    with pytest.raises(PreferenceError, match="finite"):
        parse_assignments("helpful=inf")
    with pytest.raises(PreferenceError, match="alpha=1e\\+06 is beyond"):
        make_preference(ASPECTS, {"helpful": 1}, alpha=1e6)
    assert MAX_COEFFICIENT == 1000


def test_grid_size_and_bound() -> None:
    assert grid_size(2, 5) == 5 and grid_size(3, 5) == 15 == len(weight_grid(["a", "b", "c"], 5))
    assert all(math.isclose(sum(w.values()), 1.0) for w in weight_grid(["a", "b", "c", "d"], 4))
    with pytest.raises(PreferenceError, match="keep the grid at most"):
        weight_grid(ASPECTS, 10**9)


def test_coefficient_warnings() -> None:
    assert coefficient_warning({"a": 1.0}) is None
    assert "beyond |c| <= 3" in coefficient_warning({"a": 3.5})
    assert "outside the evaluated range [0, 1.5]" in coefficient_warning({"a": 2.0}, (0.0, 1.5))
