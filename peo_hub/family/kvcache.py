"""A KV cache that appends in place: each new token is written into room reserved ahead.

Why: transformers' ``DynamicLayer`` grows by ``torch.cat``, which copies every cached key
and value at every generated token. For the sweep's big batches of short replies that copy
was the second largest cost after the matrix products (2.8 s of the quick start's 15.7 s of
torch op time). A :class:`ReservedLayer` holds its keys and values in buffers with room for
the next few tokens and writes each new token into them; when rows are dropped, the kept ones
are gathered into new buffers, as ``DynamicLayer`` does, with room again. ``keys`` and
``values`` are views of the filled part, so the attention reads exactly the numbers it read
before, in the same order (``tests/family/test_engines.py`` compares the tokens with transformers'
own ``generate``; ``tests/family/test_kvcache.py`` the cached tensors with ``DynamicLayer``'s).

It stays a ``DynamicLayer`` (``generate`` and the masks treat it as one); past its room it
grows like one, by a copy, with room again.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


def _with_room(states: torch.Tensor, room: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """A new buffer holding ``states`` (or only its ``rows``) followed by ``room`` unfilled positions.

    The rows are gathered straight into the buffer: one pass over the filled part, no more
    than the plain ``states[rows]`` that ``DynamicLayer`` does.
    """
    shape = list(states.shape)
    filled = shape[-2]
    shape[-2] = filled + room
    if rows is not None:
        shape[0] = len(rows)
    buffer = states.new_empty(shape)
    if rows is None:
        buffer[..., :filled, :] = states
    else:
        torch.index_select(states, 0, rows, out=buffer[..., :filled, :])
    return buffer


class ReservedLayer(DynamicLayer):
    """One layer's keys and values in buffers with room reserved (see the module docstring)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        super().__init__()
        self.device = keys.device
        self.room = max(1, room)
        self._keys, self._values = _with_room(keys, self.room), _with_room(values, self.room)
        self._length = keys.shape[-2]
        self.is_initialized = True
        self._show()

    def _show(self) -> None:
        """Point ``keys`` and ``values`` at the filled part of the buffers."""
        self.keys = self._keys[..., :self._length, :]
        self.values = self._values[..., :self._length, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self._length + key_states.shape[-2]
        if end > self._keys.shape[-2]:  # past the room: one copy, with room again
            room = end - self._length + self.room
            self._keys, self._values = _with_room(self.keys, room), _with_room(self.values, room)
        self._keys[..., self._length:end, :] = key_states
        self._values[..., self._length:end, :] = value_states
        self._length = end
        self._show()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self._length = max(0, self._length + tokens_to_remove)
        self._show()

    def reset(self) -> None:
        self._length = 0
        self._show()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the ``indices`` rows, gathered into new buffers with room again."""
        self._keys, self._values = (_with_room(states, self.room, indices) for states in (self.keys, self.values))
        self._show()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx.to(self._keys.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._keys = self._keys.repeat_interleave(repeats, dim=0)
        self._values = self._values.repeat_interleave(repeats, dim=0)
        self._show()


def reserve(cache: Any, room: int) -> Any:
    """Give every plain, filled ``DynamicLayer`` of ``cache`` room for ``room`` more tokens; returns ``cache``.

    The room is reserved again whenever the rows are selected or the room runs out: a
    caller that selects rows every few tokens (:func:`peo_hub.family.engines.generate_shrinking`)
    reserves that many, so the buffers are never much bigger than the cache they hold.
    Other layer kinds (sliding windows, quantised, linear attention) are left as they are.
    """
    layers = getattr(cache, "layers", None)
    if layers is None:
        return cache
    for i, layer in enumerate(layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            layers[i] = ReservedLayer(layer.keys, layer.values, room)
    return cache
