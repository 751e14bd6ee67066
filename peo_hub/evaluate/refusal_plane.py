"""The refusal plane: how often a point refuses harmful requests, and how often benign ones.

Why a plane of its own: a helpful/harmless dial exists to offer a setting that refuses what
it should and answers the rest, and judge scores blur the two (a harmless judge may score
every benign reply 1). Two rates say it plainly: the share of harmful evaluation requests a
point refused (higher is safer) and the share of benign ones (lower is more useful). Refusal
is the project's detector (:func:`peo_hub.judges.refusal.is_refusal`), harmful the label set's
flag (:mod:`peo_hub.evaluate.labels`).

The sweep stores, per record, every reply's refusal flag grouped by prompt (``refusal``) and
each prompt's harmful flag (``harmful``, only when every evaluation prompt has one). Like every
reported number, a rate is measured on the confirmation prompts of its kind with a
prompt-level bootstrap interval; its ``selection`` value (the selection prompts of its kind)
is what the refusal-plane presets choose by (:func:`peo_hub.bundle.front.compute_presets`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from peo_hub.core.stats import cluster_mean_ci, prompt_sums, ratio_mean
from peo_hub.judges.refusal import is_refusal

KINDS = {"harmful": True, "benign": False}


def refusal_flags(replies: Sequence[Sequence[str]]) -> list[list[int]]:
    """1 for a refusal, 0 for an answer: every reply, grouped by prompt."""
    return [[int(is_refusal(reply)) for reply in group] for group in replies]


def plane(record: Mapping[str, Any], selection: Sequence[int], confirmation: Sequence[int],
          resamples: int = 1000, seed: int = 0) -> dict[str, Any] | None:
    """A point's refusal rates ``{harmful: {...}, benign: {...}}``, or ``None`` without flags.

    Each kind: ``rate`` (mean over the confirmation prompts of that kind), ``ci`` (95%,
    prompts resampled), ``n_prompts``, ``selection`` (the selection prompts' rate; equal to
    ``rate`` without a split). A kind with no confirmation prompt is left out.
    """
    flags, harmful = record.get("refusal"), record.get("harmful")
    if flags is None or harmful is None:
        return None
    split = list(selection) != list(confirmation)
    out: dict[str, Any] = {}
    for kind, wanted in KINDS.items():
        confirm = [flags[i] for i in confirmation if harmful[i] is wanted]
        if not confirm:
            continue
        rate, ci = cluster_mean_ci(confirm, resamples, seed)
        chosen = [flags[i] for i in selection if harmful[i] is wanted]
        out[kind] = {"rate": rate, "ci": None if ci is None else list(ci), "n_prompts": len(confirm),
                     "selection": (ratio_mean(*prompt_sums(chosen)) if chosen else None) if split else rate}
    return out or None
