"""peo_hub.family.kvcache: a KV cache layer that appends in place holds exactly what DynamicLayer holds."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from peo_hub.family.kvcache import ReservedLayer, reserve


def states(rows: int, tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 2, tokens, 4, generator=g), torch.randn(rows, 2, tokens, 4, generator=g)


def test_reserved_layer_follows_dynamic_layer_through_appends_selects_and_crops() -> None:
    plain, first = DynamicLayer(), states(5, 3, 0)
    plain.update(*first)
    reserved = ReservedLayer(*first, room=2)  # appends of 1 and 3 tokens: the room runs out, it grows
    steps = [("append", 1), ("append", 3), ("select", [0, 2, 4]), ("append", 1), ("crop", -2), ("append", 2),
             ("select", [2]), ("append", 4)]
    for n, (kind, arg) in enumerate(steps):
        if kind == "append":
            new = states(len(plain.keys), arg, n + 1)
            got, want = reserved.update(*new), plain.update(*new)
            assert all(torch.equal(g, w) for g, w in zip(got, want))
        elif kind == "select":
            reserved.batch_select_indices(torch.tensor(arg))
            plain.batch_select_indices(torch.tensor(arg))
        else:
            reserved.crop(arg)
            plain.crop(arg)
        assert torch.equal(reserved.keys, plain.keys) and torch.equal(reserved.values, plain.values), (kind, arg)
        assert reserved.get_seq_length() == plain.get_seq_length()
        assert reserved.get_mask_sizes(1) == plain.get_mask_sizes(1)
    with pytest.raises(ValueError):
        reserved.crop(1)


def test_reserve_swaps_filled_dynamic_layers_only() -> None:
    cache = DynamicCache()
    cache.update(*states(2, 3, 0), layer_idx=0)
    cache.update(*states(2, 3, 1), layer_idx=1)
    keys = [layer.keys.clone() for layer in cache.layers]
    assert reserve(cache, 4) is cache
    assert all(type(layer) is ReservedLayer for layer in cache.layers)
    assert all(torch.equal(layer.keys, k) for layer, k in zip(cache.layers, keys))
    assert cache.get_seq_length() == 3
    assert reserve(None, 4) is None
