"""Generation and judging: what a policy at one preference actually says, and how it scores.

A point's score on an aspect is the mean judge score of sampled replies to held-out
prompts, with a 95% percentile-bootstrap interval over replies. Judges map a
(prompt, reply) to [0, 1], higher is better: programmatic ones (the toy world's) or a
reward / cost model (``AutoModelForSequenceClassification``; cost models negated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch

from peo_hub.errors import PEOError
from peo_hub.recipe import EvaluateSpec, JudgeSpec


class Judge(Protocol):
    """Scores replies in [0, 1] (higher is better). ``prompts`` are the raw, unrendered prompts."""

    def __call__(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]: ...


@dataclass
class ProgrammaticJudge:
    """A pure Python scoring function ``(prompt, reply) -> float``."""

    name: str
    fn: Callable[[str, str], float]

    def __call__(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]:
        return [float(self.fn(p, r)) for p, r in zip(prompts, replies)]


class RewardModelJudge:
    """A sequence-classification reward (or cost) model as a judge.

    The conversation is rendered with the judge's own chat template when it has one (so
    Beaver-style or ArmoRM-style models see the format they were trained on), else as
    ``prompt + reply``. Raw scores are negated for cost models and squashed with a
    sigmoid so every aspect lives in [0, 1] with higher = better.
    """

    def __init__(self, spec: JudgeSpec, device: str | torch.device | None = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        assert spec.model is not None
        self.spec = spec
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(spec.model, revision=spec.revision)
            self.model = AutoModelForSequenceClassification.from_pretrained(spec.model, revision=spec.revision)
        except OSError as exc:
            raise PEOError(
                f"cannot load reward model {spec.model!r}: {str(exc).splitlines()[0]}; check the id or path "
                "(offline runs need it in the local cache)"
            ) from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        self.model.eval().to(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def _text(self, prompt: str, reply: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}], tokenize=False
            )
        return f"{prompt} {reply}"

    def raw_scores(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]:
        texts = [self._text(p, r) for p, r in zip(prompts, replies)]
        scores: list[float] = []
        size = self.spec.batch_size
        for start in range(0, len(texts), size):
            batch = self.tokenizer(texts[start:start + size], return_tensors="pt", padding=True,
                                   truncation=True, max_length=self.spec.max_length).to(self.model.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits
            scores.extend(logits[:, 0].float().cpu().tolist())
        return scores

    def __call__(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]:
        raw = self.raw_scores(prompts, replies)
        sign = -1.0 if self.spec.negate else 1.0
        if self.spec.normalise == "sigmoid":
            return [1.0 / (1.0 + math.exp(-sign * s)) for s in raw]
        return [sign * s for s in raw]


def build_judge(spec: JudgeSpec) -> Judge:
    """The judge a recipe names."""
    if spec.type == "reward_model":
        return RewardModelJudge(spec)
    from peo_hub.world.toy import JUDGES

    return ProgrammaticJudge(spec.type, JUDGES[spec.type])


def bootstrap_ci(scores: Sequence[float], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def generate_replies(model: Any, tokenizer: Any, rendered_prompts: Sequence[str], spec: EvaluateSpec,
                     seed: int) -> list[list[str]]:
    """``spec.samples`` sampled replies for each rendered prompt, in batches.

    ``model`` is anything with a transformers ``generate`` (a ``PEOModel`` at its current
    preference, or a plain model). Seeded, so two points see the same random stream.
    """
    torch.manual_seed(seed)
    expanded = [p for p in rendered_prompts for _ in range(spec.samples)]
    replies: list[str] = []
    greedy = spec.temperature == 0
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else getattr(model, "device", "cpu")
    for start in range(0, len(expanded), spec.batch_size):
        batch = tokenizer(expanded[start:start + spec.batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)
        kwargs: dict[str, Any] = {"max_new_tokens": spec.max_new_tokens, "do_sample": not greedy}
        if not greedy:
            kwargs.update(temperature=spec.temperature, top_p=spec.top_p, top_k=0)
        with torch.inference_mode():
            output = model.generate(**batch, pad_token_id=tokenizer.pad_token_id, **kwargs)
        replies.extend(tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    replies = [r.strip() for r in replies]
    return [replies[i * spec.samples:(i + 1) * spec.samples] for i in range(len(rendered_prompts))]


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
