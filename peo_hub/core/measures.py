"""The degeneration guard: measures that tell a policy that babbles from one that answers.

Extrapolating an adapter can push a model off the language it was trained on (the toy's
helpful adapter at alpha 0.5 emits word salad that a judge may still score), so a point's
judge scores alone cannot tell whether it is a usable policy. Three measures per reply,
none of which needs a judge:

* ``base_logprob``: the mean log-probability per token of the reply under the BASE model
  (given the same rendered prompt). Babble is text the base finds implausible; a real
  trade-off changes what is said, not whether it is language. Nats per token.
* ``distinct_2``: distinct token bigrams / bigrams within the reply (1.0 for replies under
  two tokens). Repetition loops ("then then then ...") drive it down.
* ``length``: the reply's length in tokens; a collapse to empty replies, or every reply
  running to the length cap, shows here.

A point is FLAGGED when, averaged over its replies to the selection prompts, it is past a
threshold RELATIVE TO THE BASE MODEL's own replies (so the same defaults hold for any base,
tokenizer and judge): see :class:`GuardThresholds`. Flagged points stay in ``front.json``
(and in the plot, drawn with a cross) but no preset ever picks one, and the alpha search
treats them as worse than any unflagged point.

This module is pure Python/numpy; ``base_logprob`` itself is computed by
:class:`peo_hub.evaluate.logprob.BaseLogprob`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: Per-reply measures the sweep records for every point (names are front.json keys).
MEASURES: tuple[str, ...] = ("base_logprob", "distinct_2", "length")


class GuardThresholds(BaseModel):
    """When a point counts as degenerate, relative to the base model's own replies.

    Each threshold can be switched off with ``null``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_logprob_drop: float | None = Field(
        default=2.0, gt=0,
        description="flag a point whose replies' mean log-probability per token under the base model is more "
                    "than this many nats below the base model's own replies (babble: text the base finds implausible)")
    min_distinct_ratio: float | None = Field(
        default=0.6, gt=0, le=1,
        description="flag a point whose mean distinct-2 (distinct token bigrams / bigrams in a reply) is below "
                    "this fraction of the base model's (repetition loops)")
    min_length_ratio: float | None = Field(
        default=0.25, gt=0, le=1,
        description="flag a point whose mean reply length in tokens is below this fraction of the base model's "
                    "(collapse to empty or one-word replies)")


def distinct_n(tokens: Sequence[Any], n: int = 2) -> float:
    """Distinct n-grams / n-grams of one token sequence; 1.0 when it has fewer than ``n`` tokens."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def text_measures(tokenizer: Any, replies: Sequence[Sequence[str]]) -> dict[str, list[list[float]]]:
    """``distinct_2`` and ``length`` of every reply, grouped by prompt like the judge scores."""
    flat = [r for group in replies for r in group]
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out: dict[str, list[list[float]]] = {"distinct_2": [], "length": []}
    start = 0
    for group in replies:
        tokens = ids[start:start + len(group)]
        start += len(group)
        out["distinct_2"].append([round(distinct_n(t, 2), 6) for t in tokens])
        out["length"].append([float(len(t)) for t in tokens])
    return out


def summarise(measures: Mapping[str, Sequence[Sequence[float]]], prompts: Sequence[int]) -> dict[str, float | None]:
    """Each measure's mean over the replies to ``prompts`` (NaNs, e.g. empty replies, skipped)."""
    out: dict[str, float | None] = {}
    for name in MEASURES:
        if name not in measures:
            continue
        values = np.array([v for i in prompts for v in measures[name][i]], dtype=float)
        values = values[np.isfinite(values)]
        out[name] = round(float(values.mean()), 6) if values.size else None
    return out


def flag_reasons(point: Mapping[str, float | None], base: Mapping[str, float | None],
                 thresholds: GuardThresholds) -> list[str]:
    """Why a point's measures count as degenerate against the base's (empty: not flagged)."""
    reasons = []

    def both(name: str) -> tuple[float, float] | None:
        a, b = point.get(name), base.get(name)
        return None if a is None or b is None else (float(a), float(b))

    pair = both("base_logprob")
    if thresholds.max_logprob_drop is not None and pair and pair[0] < pair[1] - thresholds.max_logprob_drop:
        reasons.append(f"base_logprob {pair[0]:.2f} is more than {thresholds.max_logprob_drop:g} below the base's "
                       f"{pair[1]:.2f}")
    pair = both("distinct_2")
    if thresholds.min_distinct_ratio is not None and pair and pair[0] < thresholds.min_distinct_ratio * pair[1]:
        reasons.append(f"distinct_2 {pair[0]:.2f} is below {thresholds.min_distinct_ratio:g} x the base's {pair[1]:.2f}")
    pair = both("length")
    if thresholds.min_length_ratio is not None and pair and pair[0] < thresholds.min_length_ratio * pair[1]:
        reasons.append(f"length {pair[0]:.1f} is below {thresholds.min_length_ratio:g} x the base's {pair[1]:.1f}")
    return reasons
