"""Which prompts are harmful requests: the label set read by the refusal plane and the steering baseline.

A label set maps a prompt's text to its harmful flag (and, where the set has one, its split).
Two readers: the refusal plane (:mod:`peo_hub.evaluate.refusal_plane`) splits the evaluation
prompts into harmful and benign ones, and ``steer`` (:mod:`peo_hub.evaluate.baselines.steer`)
takes its direction from the set's training prompts. The set is ``sweep.harmful_labels``;
without one, the labels an aspect's judge reads (``judge.labels``), else the shipped
``embedded:smollm2-safety``, so a recipe on the shipped prompts needs no setting and one on
prompts nobody labelled simply gets no plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from peo_hub.data.chat import to_messages
from peo_hub.utils.errors import DataError, PEOError, RecipeError

SHIPPED = "embedded:smollm2-safety"
TOY = "embedded:toy"


def prompt_text(prompt: Any) -> str:
    """The request a label names: a string prompt as is, else the last user message."""
    if isinstance(prompt, str):
        return prompt.strip()
    users = [m["content"] for m in to_messages(prompt) if m["role"] == "user"]
    return str(users[-1] if users else "").strip()


@dataclass(frozen=True)
class HarmfulLabels:
    """Prompt text -> harmful flag, from ``source``; ``train`` lists the set's training prompts."""

    source: str
    harmful: Mapping[str, bool]
    train: tuple[str, ...]

    def flags(self, prompts: Sequence[Any]) -> list[bool] | None:
        """Each prompt's flag, or ``None`` when some prompt has none (then there is no plane)."""
        keys = [prompt_text(p) for p in prompts]
        if any(k not in self.harmful for k in keys):
            return None
        return [bool(self.harmful[k]) for k in keys]

    def missing(self, prompts: Sequence[Any]) -> list[str]:
        return [prompt_text(p) for p in prompts if prompt_text(p) not in self.harmful]


def labels_source(explicit: str | None, judges: Mapping[str, Any]) -> str:
    """``sweep.harmful_labels``, else the first aspect judge's ``labels``, else the shipped set."""
    if explicit:
        return explicit
    named = [getattr(spec, "labels", None) for spec in judges.values()]
    return next((n for n in named if n), SHIPPED)


def sweep_labels(explicit: str | None, judges: Mapping[str, Any], prompts: Sequence[Any]) -> HarmfulLabels | None:
    """The label set of a sweep over ``prompts`` (``judges``: aspect -> judge spec).

    Named in ``sweep.harmful_labels``, every evaluation prompt must have a flag there (one line
    naming the first that has none); found by default, a set that cannot be read or misses
    some prompt gives ``None`` for the plane to stay away, silently (the toy's prompts are in no
    default set).
    """
    source = labels_source(explicit, judges)
    try:
        labels = load_harmful_labels(source)
    except PEOError:
        if explicit:
            raise
        return None
    missing = labels.missing(prompts)
    if explicit and missing:
        raise RecipeError(f"sweep.harmful_labels: {len(missing)} of the {len(prompts)} evaluation prompts have no "
                          f"harmful flag in {source} (e.g. {missing[0][:60]!r}); add them there or remove "
                          "sweep.harmful_labels")
    return labels


def require_labels(labels: HarmfulLabels | None, explicit: str | None, judges: Mapping[str, Any]) -> HarmfulLabels:
    """``labels``, or one line saying that a baseline needing harmful flags (steer) has none."""
    if labels is None:
        raise RecipeError(f"steer needs harmful flags for its direction's prompts and {labels_source(explicit, judges)} "
                          "cannot be read; set sweep.harmful_labels to a file with columns prompt and harmful")
    return labels


def load_harmful_labels(source: str) -> HarmfulLabels:
    """The label set ``source`` names: ``embedded:smollm2-safety``, ``embedded:toy`` or a data file."""
    if source == SHIPPED:
        from peo_hub.world.smollm2 import prompt_rows

        rows: list[Mapping[str, Any]] = prompt_rows()
    elif source == TOY:
        from peo_hub.world.toy import prompt_rows as toy_rows

        rows = toy_rows()
    else:
        rows = _file_rows(source)
    harmful: dict[str, bool] = {}
    for i, row in enumerate(rows):
        if not isinstance(row["harmful"], bool):
            raise DataError(f"sweep.harmful_labels {source} row {i}: harmful is {row['harmful']!r}; write true or false")
        harmful[prompt_text(row["prompt"])] = row["harmful"]
    train = tuple(dict.fromkeys(prompt_text(r["prompt"]) for r in rows if r.get("split") in (None, "train")))
    return HarmfulLabels(source=source, harmful=harmful, train=train)


def _file_rows(source: str) -> list[dict[str, Any]]:
    from peo_hub.data.config import DatasetSpec
    from peo_hub.data.load import load_rows

    spec = DatasetSpec(source=source)
    data = load_rows(spec, ("prompt", "harmful"), "sweep.harmful_labels")
    try:
        splits: list[Any] = load_rows(spec, ("split",), "sweep.harmful_labels")["split"]
    except DataError:  # no split column: every row may give the steering direction
        splits = [None] * len(data["prompt"])
    return [{"prompt": p, "harmful": h, "split": s} for p, h, s in zip(data["prompt"], data["harmful"], splits)]
