"""Side-by-side sequential searches whose requests are answered together, a round at a time.

The sweep's alpha search is sequential within one weight vector (Brent's method picks each
trial from the last ones) but independent across weight vectors. Run one search per thread,
each asking for its trials through ``ask``; whenever every unfinished search is waiting, the
caller's ``answer_all`` gets all their requests at once (in search order, so the outcome is
deterministic) and can evaluate them in one batched generation instead of one by one.

The searches only do bookkeeping (scipy's loop) while they run; every model call happens on
the calling thread inside ``answer_all``, so no model is touched from two threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

Request = TypeVar("Request")
Answer = TypeVar("Answer")
Result = TypeVar("Result")

#: A search: given ``ask`` (request -> answer, blocking), it runs to its result.
Search = Callable[[Callable[[Request], Answer]], Result]


@dataclass
class _Pending(Generic[Request, Answer]):
    index: int
    request: Request
    done: threading.Event = field(default_factory=threading.Event)
    answer: Any = None
    error: BaseException | None = None


class _Cancelled(Exception):
    """Raised inside a search whose round failed, so that its thread ends."""


def run_in_lockstep(searches: Sequence[Search[Request, Answer, Result]],
                    answer_all: Callable[[list[Request]], list[Answer]]) -> list[Result]:
    """Each search's result, in order; their requests answered in rounds by ``answer_all``.

    An exception in a search, or in ``answer_all``, is raised here after every thread has
    stopped (the waiting searches are cancelled).
    """
    lock = threading.Condition()
    pending: dict[int, _Pending[Request, Answer]] = {}
    finished: dict[int, Result] = {}
    failed: list[BaseException] = []

    def runner(index: int, search: Search[Request, Answer, Result]) -> None:
        def ask(request: Request) -> Answer:
            item: _Pending[Request, Answer] = _Pending(index, request)
            with lock:
                pending[index] = item
                lock.notify_all()
            item.done.wait()
            if item.error is not None:
                raise _Cancelled() from item.error
            return item.answer

        try:
            result = search(ask)
            with lock:
                finished[index] = result
                lock.notify_all()
        except _Cancelled:
            with lock:
                finished[index] = None  # type: ignore[assignment]
                lock.notify_all()
        except BaseException as error:  # noqa: BLE001 - re-raised on the calling thread
            with lock:
                failed.append(error)
                finished[index] = None  # type: ignore[assignment]
                lock.notify_all()

    threads = [threading.Thread(target=runner, args=(i, s), daemon=True, name=f"search-{i}")
               for i, s in enumerate(searches)]
    for thread in threads:
        thread.start()
    try:
        while True:
            with lock:
                lock.wait_for(lambda: len(pending) + len(finished) == len(searches))
                if not pending:
                    break
                round_ = [pending.pop(i) for i in sorted(pending)]
            if failed:
                _cancel(round_, failed[0])
                continue
            try:
                answers = answer_all([item.request for item in round_])
                if len(answers) != len(round_):
                    raise RuntimeError(f"answer_all gave {len(answers)} answers to {len(round_)} requests")
            except BaseException as error:
                failed.append(error)
                _cancel(round_, error)
                continue
            for item, answer in zip(round_, answers):
                item.answer = answer
                item.done.set()
    finally:
        for thread in threads:
            thread.join()
    if failed:
        raise failed[0]
    return [finished[i] for i in range(len(searches))]


def _cancel(round_: list[_Pending[Any, Any]], error: BaseException) -> None:
    for item in round_:
        item.error = error
        item.done.set()
