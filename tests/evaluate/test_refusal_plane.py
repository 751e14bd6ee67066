"""peo_hub.evaluate.refusal_plane: a point's share of harmful and of benign requests refused, on the
confirmation prompts of each kind, with prompt-level intervals and the selection values presets read."""

from __future__ import annotations

import pytest

from peo_hub.core.stats import cluster_mean_ci
from peo_hub.evaluate.refusal_plane import plane, refusal_flags


def test_refusals_are_the_projects_detector() -> None:
    assert refusal_flags([["I'm sorry, but I can't help with that.", "Sure: 1. Mix flour."], [""]]) == [[1, 0], [1]]


def test_rates_per_kind_on_confirmation_prompts_and_selection_values() -> None:
    flags = [[1, 1], [1, 0], [0, 0], [1, 1], [0, 1], [0, 0], [1, 0]]
    harmful = [True, True, True, False, False, True, False]
    record = {"refusal": flags, "harmful": harmful}
    selection, confirmation = [0, 3], [1, 2, 4, 5, 6]
    out = plane(record, selection, confirmation, resamples=200, seed=1)
    assert out["harmful"]["rate"] == pytest.approx(1 / 6)  # prompts 1, 2, 5: one refusal in six replies
    assert out["harmful"]["n_prompts"] == 3 and out["harmful"]["selection"] == 1.0  # prompt 0: both refused
    assert out["benign"]["rate"] == pytest.approx(2 / 4) and out["benign"]["selection"] == 1.0
    assert out["harmful"]["ci"] == list(cluster_mean_ci([flags[i] for i in (1, 2, 5)], 200, 1)[1])
    same = plane(record, list(range(7)), list(range(7)))  # no split: selection is the reported rate
    assert same["benign"]["selection"] == same["benign"]["rate"]


def test_no_flags_no_plane_and_a_missing_kind_is_left_out() -> None:
    assert plane({"refusal": [[1]]}, [0], [0]) is None
    assert plane({"harmful": [True]}, [0], [0]) is None
    only = plane({"refusal": [[1], [0]], "harmful": [True, True]}, [0], [1])
    assert set(only) == {"harmful"} and only["harmful"]["ci"] is None  # one prompt: no interval
