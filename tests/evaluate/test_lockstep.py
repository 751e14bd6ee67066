"""peo_hub.evaluate.lockstep: side-by-side searches answered a round at a time, in order, failures surfaced."""

from __future__ import annotations

import threading

import pytest

from peo_hub.evaluate.lockstep import run_in_lockstep
from peo_hub.evaluate.search import search_alpha


def _counter(name: str, asks: int):
    """A search that asks ``asks`` times, each request depending on the previous answer."""
    def search(ask):
        value = 0
        for step in range(asks):
            value = ask((name, step, value))
        return name, value
    return search


def test_each_round_holds_one_request_per_unfinished_search_in_search_order() -> None:
    rounds: list[list[tuple]] = []

    def answer_all(requests):
        rounds.append(requests)
        assert threading.current_thread() is threading.main_thread()  # the model is only touched here
        return [value + 1 for _, _, value in requests]

    results = run_in_lockstep([_counter("a", 3), _counter("b", 1), _counter("c", 2)], answer_all)
    assert results == [("a", 3), ("b", 1), ("c", 2)]
    assert [[name for name, _, _ in r] for r in rounds] == [["a", "b", "c"], ["a", "c"], ["a"]]


def test_lockstep_brent_searches_equal_the_same_searches_one_after_another() -> None:
    curves = {w: (lambda a, w=w: ({"x": 1 - (a - w) ** 2}, a > 1.8)) for w in (0.2, 0.7, 1.3)}
    alone = [search_alpha(lambda a, w=w: curves[w](a), {"x": 1.0}, (0, 2), 5) for w in curves]
    together = run_in_lockstep(
        [lambda ask, w=w: search_alpha(lambda a: ask((w, a)), {"x": 1.0}, (0, 2), 5) for w in curves],
        lambda requests: [curves[w](a) for w, a in requests])
    assert together == alone


def test_a_failing_search_is_raised_and_the_others_stop() -> None:
    def broken(ask):
        ask("first")
        raise ValueError("search broke")

    with pytest.raises(ValueError, match="search broke"):
        run_in_lockstep([_counter("a", 50), broken], lambda requests: [0 for _ in requests])


def test_a_failing_round_is_raised_without_leaving_threads_waiting() -> None:
    def answer_all(requests):
        raise RuntimeError("generation failed")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="generation failed"):
        run_in_lockstep([_counter("a", 3), _counter("b", 3)], answer_all)
    assert threading.active_count() == before
    with pytest.raises(RuntimeError, match="1 answers to 2 requests"):
        run_in_lockstep([_counter("a", 3), _counter("b", 3)], lambda requests: [0])
