"""Evaluating one policy: its replies to the evaluation prompts, scored by every aspect's judge.

A point's score on an aspect is the mean judge score of its replies to held-out prompts,
with a 95% prompt-level bootstrap interval (:mod:`peo_hub.core.stats`). Replies come from a
generation engine (:mod:`peo_hub.family.engines`), scores from the aspects' judges
(:mod:`peo_hub.judges.registry`). Scores are kept grouped by prompt (``scores[i]`` holds the scores
of the replies to prompt ``i``), because the prompt is the unit every interval resamples
and the unit the selection/confirmation split divides (:mod:`peo_hub.evaluate.confirm`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from peo_hub.judges.registry import Judge
from peo_hub.core.stats import cluster_mean_ci


def score_replies(raw_prompts: Sequence[str], replies: Sequence[Sequence[str]], judges: Mapping[str, Judge],
                  resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per aspect: mean over all prompts, its 95% interval, and every score grouped by prompt."""
    flat_prompts = [p for p, rs in zip(raw_prompts, replies) for _ in rs]
    flat_replies = [r for rs in replies for r in rs]
    metrics: dict[str, dict[str, Any]] = {}
    for aspect, judge in judges.items():
        flat = [round(float(s), 6) for s in judge(flat_prompts, flat_replies)]
        grouped, start = [], 0
        for rs in replies:
            grouped.append(flat[start:start + len(rs)])
            start += len(rs)
        mean, ci = cluster_mean_ci(grouped, resamples, seed)
        metrics[aspect] = {"mean": mean, "ci": None if ci is None else list(ci), "n": len(flat), "scores": grouped}
    return metrics
