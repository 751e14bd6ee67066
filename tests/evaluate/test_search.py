"""peo_hub.evaluate.search: the bounded alpha search finds the best guarded alpha within its budget."""

from __future__ import annotations

import pytest

from peo_hub.evaluate.search import objective, search_alpha


def test_objective_is_the_weighted_score_minus_a_penalty_for_babble() -> None:
    assert objective({"h": 3, "s": 1}, {"h": 1.0, "s": 0.0}, False) == pytest.approx(0.75)
    assert objective({"h": 1, "s": 1}, {"h": 1.0, "s": 1.0}, True) == pytest.approx(0.0)  # below any unflagged


def test_finds_the_peak_of_a_smooth_trade_off_within_budget() -> None:
    calls = []

    def evaluate(alpha: float):
        calls.append(alpha)
        return {"h": 1.0 - (alpha - 0.7) ** 2, "s": 0.5}, False

    best, history = search_alpha(evaluate, {"h": 1.0, "s": 0.0}, (0.0, 2.0), evaluations=6)
    assert len(calls) == len(history) <= 6 and len(set(calls)) == len(calls)  # no policy evaluated twice
    assert best.alpha == pytest.approx(0.7, abs=0.02)
    assert best.objective == max(t.objective for t in history)
    assert all(0.0 < a < 2.0 for a in calls)


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_the_budget_is_a_hard_cap(budget: int) -> None:
    _, history = search_alpha(lambda a: ({"h": a, "s": 0.0}, False), {"h": 1, "s": 1}, (0.0, 1.0), budget)
    assert len(history) == budget


def test_the_guard_keeps_the_search_out_of_babble() -> None:
    """The judge likes ever larger alpha, but past 1.0 the policy babbles: the search stays below."""
    best, history = search_alpha(lambda a: ({"h": a / 2, "s": 0.0}, a > 1.0), {"h": 1, "s": 0}, (0.0, 2.0), 8)
    assert any(t.flagged for t in history)
    assert not best.flagged and best.alpha <= 1.0 and best.alpha > 0.8
