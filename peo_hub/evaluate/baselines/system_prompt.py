"""``system_prompt``: the base model told to refuse harmful requests and answer the rest; no training.

The cheapest dial there is, and the first a skeptic tries. Its dial is the instruction's
strength: ``sweep.system_prompt.prompts`` lists system prompts from mild to strict, and
point k (dial value k, label ``strength-k``) is the base model with the k-th of them as its
system message (the base model's own replies, with no instruction, are the base point: dial
0). The evaluation prompt is otherwise unchanged and rendered the way every policy's is
(:func:`peo_hub.data.chat.render_prompt`: the chat template's system turn, or the text first
for a model without a template); the judges see the plain request, as for every point.

Cost: no training run; one forward pass per generated token, over a prompt longer by the
system prompt's tokens (each point records how many: ``added_prompt_tokens``).
"""

from __future__ import annotations

from typing import Any

from peo_hub.evaluate.baselines.registry import (Baseline, BaselineContext, BaselinePoint, Replies,
                                                 register_baseline, rows_per_point)
from peo_hub.utils.errors import RecipeError


def with_system(prompt: Any, system: str) -> list[dict[str, str]]:
    """The prompt's messages with ``system`` as the system message (replacing one it had)."""
    from peo_hub.data.chat import to_messages

    return [{"role": "system", "content": system}] + [m for m in to_messages(prompt) if m["role"] != "system"]


def _points(sweep: Any, aspects: list[str], tokenizer: Any) -> list[BaselinePoint]:
    points = []
    for k, text in enumerate(sweep.system_prompt.prompts, start=1):
        added = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer is not None else None
        points.append(BaselinePoint(label=f"strength-{k}", dial=float(k),
                                    extra={"system_prompt": text, "added_prompt_tokens": added}))
    return points


def _replies(context: BaselineContext, points: list[BaselinePoint]) -> Replies:
    from peo_hub.data.chat import render_prompt

    texts = [[render_prompt(context.tokenizer, with_system(p, point.extra["system_prompt"])) for p in context.prompts]
             for point in points]
    yield from rows_per_point(context, texts)


def _check(sweep: Any, tokenizer: Any, prompts: list[Any]) -> None:
    """A chat template that drops the system message (the toy's does) would make every point the base."""
    from peo_hub.data.chat import render_prompt

    if not prompts:
        return
    system = sweep.system_prompt.prompts[-1]
    if render_prompt(tokenizer, with_system(prompts[0], system)) == render_prompt(tokenizer, prompts[0]):
        raise RecipeError("sweep.baselines: system_prompt needs a chat template that shows the model a system "
                          "message, and this base model's template drops it (every point would be the base); "
                          "remove system_prompt from sweep.baselines")


def _cost(sweep: Any, aspects: list[str]) -> dict[str, Any]:
    return {"training_runs": 0, "forward_passes_per_token": 1.0,
            "notes": "the base model; each prompt longer by the system prompt (added_prompt_tokens per point)"}


register_baseline(Baseline(
    name="system_prompt",
    summary="the base model under a safety system prompt (refuse harmful requests, answer the rest), one point per "
            "wording from mild to strict (sweep.system_prompt); no training",
    dial="strength: the k-th system prompt of sweep.system_prompt.prompts (0 = none, the base)",
    points=_points, replies=_replies, cost=_cost, check=_check))
