"""Evaluating one policy: its replies to the evaluation prompts, scored by every aspect's judge.

A point's score on an aspect is the mean judge score of its replies to held-out prompts,
with a 95% bootstrap interval (:mod:`peo_hub.stats`). Replies come from a generation engine
(:mod:`peo_hub.engines`), scores from the aspects' judges (:mod:`peo_hub.judges`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from peo_hub.judges import Judge
from peo_hub.stats import bootstrap_ci


def score_replies(raw_prompts: Sequence[str], replies: Sequence[Sequence[str]], judges: Mapping[str, Judge],
                  resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per aspect: mean, 95% CI and every score (kept so a front can be re-analysed)."""
    flat_prompts = [p for p, rs in zip(raw_prompts, replies) for _ in rs]
    flat_replies = [r for rs in replies for r in rs]
    metrics: dict[str, dict[str, Any]] = {}
    for aspect, judge in judges.items():
        scores = judge(flat_prompts, flat_replies)
        metrics[aspect] = {
            "mean": float(np.mean(scores)),
            "ci": list(bootstrap_ci(scores, resamples, seed)),
            "n": len(scores),
            "scores": [round(s, 6) for s in scores],
        }
    return metrics
