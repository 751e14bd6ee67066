"""Serving many users at once: requests that arrive close together share one batched ``generate``.

Why: a :class:`~peo_hub.family.model.PEOModel` can give every row of a batch its own preference
(:meth:`~peo_hub.family.model.PEOModel.generate` with ``preferences``), so concurrent users with
different sliders need not wait for each other. A :class:`BatchQueue` owns one worker thread,
the only caller of the model: whenever it is free it takes every waiting request (up to
``max_batch``) as one batch, and each request's reply streams back to its own caller as it
grows. Requests arriving while a batch generates form the next one, so batches grow with the
load and a lone request starts at once; ``window_s`` > 0 makes the first waiting request wait
that long for company (larger batches, later first token). A batch of one is generated exactly as before batching existed
(switch the model to that preference, generate), so a lone user pays nothing for it.

Rows never see each other's preference (the per-row scales are the whole difference), and
greedy replies equal each user's solo reply (``tests/serve/test_space.py`` checks 20 clients).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from peo_hub.core.policy import Preference

_DONE = object()


@dataclass
class _Request:
    messages: str | Sequence[Mapping[str, str]]
    preference: Preference
    out: "queue.Queue[Any]" = field(default_factory=queue.Queue)


class RowStreamer:
    """A transformers streamer for a whole batch: each row's text so far goes to its own queue.

    ``generate`` calls :meth:`put` with the prompt first (skipped), then with one new token
    per row and step. Each row's tokens are decoded whole every step (short replies: cheap,
    and never a half-decoded character); a row ends at its first end-of-sequence token.
    """

    def __init__(self, tokenizer: Any, outs: Sequence["queue.Queue[Any]"], eos_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.outs = list(outs)
        self.eos_ids = eos_ids
        self.tokens: list[list[int]] = [[] for _ in outs]
        self.sent = ["" for _ in outs]
        self.finished = [False for _ in outs]
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for row, token in enumerate(value.view(-1).tolist()):
            if self.finished[row]:
                continue
            if token in self.eos_ids:
                self.finished[row] = True
                continue
            self.tokens[row].append(token)
            text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True).strip()
            if text != self.sent[row] and not text.endswith("\ufffd"):
                self.sent[row] = text
                self.outs[row].put(text)

    def end(self) -> None:
        for row, out in enumerate(self.outs):
            text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True).strip()
            if text != self.sent[row]:
                out.put(text)


class BatchQueue:
    """Collects concurrent chat requests into batches for one model (see the module docstring)."""

    def __init__(self, model: Any, gen_kwargs: Mapping[str, Any], window_s: float = 0.0,
                 max_batch: int = 16) -> None:
        self.model = model
        self.gen_kwargs = dict(gen_kwargs)
        self.window_s = window_s
        self.max_batch = max(1, max_batch)
        self._pending: list[_Request] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batch_sizes: list[int] = []  # every batch generated so far (for tests and monitoring)

    def stream(self, messages: str | Sequence[Mapping[str, str]], preference: Preference) -> Iterator[str]:
        """Queue one request; yield its reply as it grows (each item: the whole text so far)."""
        request = _Request(messages, preference)
        with self._ready:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="peo-batch-generate", daemon=True)
                self._worker.start()
            self._pending.append(request)
            self._ready.notify()
        while True:
            item = request.out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _take(self) -> list[_Request]:
        with self._ready:
            while not self._pending:
                self._ready.wait()
            deadline = time.monotonic() + self.window_s
            while len(self._pending) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._ready.wait(left)
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                self._generate(batch)
            except BaseException as exc:  # handed to every reader of the batch, raised in its thread
                for request in batch:
                    request.out.put(exc)
            finally:
                for request in batch:
                    request.out.put(_DONE)

    def _generate(self, batch: list[_Request]) -> None:
        from peo_hub.data.chat import render_prompt

        self.batch_sizes.append(len(batch))
        model, tokenizer = self.model, self.model.tokenizer
        if tokenizer.pad_token is None:  # GPT-2-style tokenizers have none; batching needs one
            tokenizer.pad_token = tokenizer.eos_token
        eos = model.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        texts = [render_prompt(tokenizer, r.messages) for r in batch]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                           add_special_tokens=False).to(model.device)
        streamer = RowStreamer(tokenizer, [r.out for r in batch], eos_ids)
        if len(batch) == 1:  # exactly the single-user path: switch, then generate at that preference
            preference = batch[0].preference
            if preference.weights is not None:
                model.set_preference(preference.weights, alpha=preference.alpha or 0.0)
            else:
                model.set_preference(coefficients=preference.coefficients)
            model.generate(**inputs, streamer=streamer, **self.gen_kwargs)
            return
        model.generate([r.preference for r in batch], **inputs, streamer=streamer, **self.gen_kwargs)
