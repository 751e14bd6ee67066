"""Sizes a recipe asks for, against the machine it runs on: refused before the run, with the arithmetic.

A recipe can be valid field by field and still ask for something no machine here can do:
``evaluate.samples: 1e12`` lays out points x prompts x samples rows before the first reply,
``evaluate.batch_size: 1e8`` asks one ``generate`` call for a KV cache of terabytes. Such a
run used to pass ``recipe validate`` and die deep in the sweep with a ``MemoryError``
traceback, after the training. :func:`check_sizes` (called by the pre-flight, so by
``recipe validate`` and ``recipe run`` alike) computes *lower bounds* of the memory each
phase needs from the recipe and the base model's config, compares them with this machine's
memory (RAM plus every GPU's), and refuses in one line that shows the multiplication and
names the fields to lower. Bounds are deliberately low (2 bytes per weight, no
activations beyond one float per hidden unit), so a refused recipe cannot run, and a
recipe that fits is never refused by an estimate.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

from peo_hub.recipe.schema import Recipe
from peo_hub.utils.errors import RecipeError

GB = 1024 ** 3


def machine_memory() -> int:
    """Bytes of memory this machine has for a run: physical RAM plus every CUDA device's memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
    try:
        import torch

        if torch.cuda.is_available():
            total += sum(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    except Exception:  # a broken CUDA setup is reported where the model is placed, not here
        pass
    return int(total)


def _size(n: float) -> str:
    for unit, scale in (("EB", 1024 ** 6), ("PB", 1024 ** 5), ("TB", 1024 ** 4), ("GB", GB), ("MB", 1024 ** 2)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} bytes"


def _n(value: float) -> str:
    return f"{value:.3g}" if value >= 1e6 else f"{int(value)}"


@dataclass(frozen=True)
class ModelShape:
    """What the bounds need of the base: parameters and the KV cache's bytes per token."""

    parameters: int
    layers: int
    hidden: int
    kv_bytes_per_token: int  # 2 (K and V) x layers x kv heads x head dim x 2 bytes

    @classmethod
    def of(cls, model: Any) -> "ModelShape":
        config = model.config
        layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0) or 0)
        hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or 0)
        heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0) or 1)
        kv_heads = int(getattr(config, "num_key_value_heads", 0) or heads)
        head_dim = int(getattr(config, "head_dim", 0) or (hidden // heads if heads else 0))
        parameters = sum(p.numel() for p in model.parameters())
        return cls(parameters=parameters, layers=layers, hidden=hidden,
                   kv_bytes_per_token=2 * layers * kv_heads * head_dim * 2)


def sweep_points(recipe: Recipe) -> int:
    """Policies the sweep evaluates, at least: the weight grid x the alphas (+ the soup's alpha 0), and the base."""
    aspects = len(recipe.aspects)
    grid = math.comb(recipe.sweep.weights + aspects - 2, aspects - 1)
    return grid * len(recipe.sweep.alphas) + 1


def check_sizes(recipe: Recipe, model: Any, prompt_tokens: int, n_prompts: int,
                memory: int | None = None) -> None:
    """Refuse (one line, with the numbers) a recipe whose sweep or training cannot fit this machine's memory.

    ``model`` is the base on PyTorch's meta device (its config and parameter count), ``prompt_tokens``
    the longest rendered evaluation prompt, ``n_prompts`` how many there are; ``memory`` defaults to
    :func:`machine_memory`.
    """
    memory = machine_memory() if memory is None else memory
    if memory <= 0:
        return  # unknown machine: nothing to compare with
    shape = ModelShape.of(model)
    have = f"this machine has {_size(memory)} of memory (RAM and GPUs)"
    spec = recipe.evaluate
    aspects = len(recipe.aspects)

    # 1. The sweep's rows: each is laid out before generation and keeps a score per aspect.
    points = sweep_points(recipe)
    rows = points * n_prompts * spec.samples
    rows_bytes = rows * 8 * (1 + aspects)
    if rows_bytes > memory:
        raise RecipeError(
            f"evaluate.samples: the sweep evaluates at least {points} points x {n_prompts} prompts x {_n(spec.samples)} "
            f"samples = {_n(rows)} replies and keeps a row and a score per aspect for each: at least {_n(rows)} x "
            f"{8 * (1 + aspects)} bytes = {_size(rows_bytes)}, but {have}; lower evaluate.samples (or the number of "
            "prompts, sweep.weights, sweep.alpha)")

    # 2. One generate call: its rows' KV cache plus the model.
    model_bytes = shape.parameters * 2
    call_rows = min(spec.batch_size, rows)
    tokens = prompt_tokens + spec.max_new_tokens
    kv_bytes = call_rows * tokens * shape.kv_bytes_per_token
    if shape.kv_bytes_per_token and kv_bytes + model_bytes > memory:
        raise RecipeError(
            f"evaluate.batch_size: one generate call of {_n(call_rows)} rows x ({prompt_tokens} prompt + "
            f"{spec.max_new_tokens} new) tokens holds a KV cache of {_n(call_rows)} x {tokens} x "
            f"{shape.kv_bytes_per_token} bytes per token = {_size(kv_bytes)}, plus the model's {_n(shape.parameters)} "
            f"weights x 2 bytes = {_size(model_bytes)}, but {have}; lower evaluate.batch_size or "
            "evaluate.max_new_tokens")

    # 3. One DPO step: chosen and rejected sequences, one float per hidden unit and layer at least.
    dpo = recipe.train.dpo
    length = dpo.max_length or prompt_tokens + spec.max_new_tokens
    train_rows = dpo.per_device_train_batch_size * 2
    activations = train_rows * length * shape.hidden * max(shape.layers, 1) * 4
    if shape.hidden and activations + model_bytes > memory:
        raise RecipeError(
            f"train.dpo.per_device_train_batch_size: one DPO step on {dpo.per_device_train_batch_size} pairs "
            f"(x2: chosen and rejected) x {length} tokens (train.dpo.max_length) keeps at least "
            f"{_n(train_rows)} x {length} x {shape.hidden} hidden x {shape.layers} layers x 4 bytes = "
            f"{_size(activations)} of activations, plus the model's {_size(model_bytes)}, but {have}; lower "
            "train.dpo.per_device_train_batch_size or train.dpo.max_length (gradient_accumulation_steps keeps the "
            "effective batch)")


def longest_prompt_tokens(tokenizer: Any, prompts: Sequence[Any]) -> int:
    """Tokens of the longest evaluation prompt as the sweep renders it (chat template included)."""
    from peo_hub.data.chat import render_prompt

    longest = 0
    for prompt in prompts:
        text = render_prompt(tokenizer, prompt)
        longest = max(longest, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return longest
