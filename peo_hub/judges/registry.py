"""The judge registry: what an aspect's score of a reply is, found by ``type`` in a recipe.

A judge maps (prompt, reply) pairs to scores in [0, 1], higher is better. Two kinds ship,
each registering itself in its own module (imported by :mod:`peo_hub.judges`):

* **programmatic** judges, plain Python functions of the text (the toy world's
  ``toy_helpful`` / ``toy_harmless`` in :mod:`peo_hub.judges.toy`; the real-text judges
  ``refusal``, ``chat_helpful`` and ``chat_harmless`` in :mod:`peo_hub.judges.text`, built on
  :mod:`peo_hub.judges.refusal`);
* **reward models** (``type: reward_model``, :mod:`peo_hub.judges.reward_model`): a
  sequence-classification model, cost models negated, foreign checkpoints such as
  safe-rlhf's Beaver loaded through ``key_mapping`` and a text ``template``.

Adding a judge is one :func:`register_judge` call; the recipe schema (:class:`JudgeSpec`),
the docs' list and :func:`build_judge` all read :data:`JUDGES`. ``prompts`` given to a
judge are the raw, unrendered prompts.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class JudgeType:
    """A registered judge: how to build it from its spec, and what the spec must hold."""

    name: str
    build: Callable[["JudgeSpec"], "Judge"]
    summary: str
    needs_model: bool = False
    #: The functions, classes and modules whose source computes the scores (see :func:`judge_code_hash`).
    code: tuple[Any, ...] = ()


JUDGES: dict[str, JudgeType] = {}


def register_judge(name: str, summary: str, needs_model: bool = False, code: Sequence[Any] = ()
                   ) -> Callable[[Callable[["JudgeSpec"], "Judge"]], Callable[["JudgeSpec"], "Judge"]]:
    """Decorator: make a judge factory ``(spec) -> Judge`` known to recipes as ``type: name``.

    ``code`` names what the scores are computed by (functions, classes, modules; the factory
    itself when empty), so that caches of judged replies can tell a changed judge apart.
    """
    def add(factory: Callable[["JudgeSpec"], "Judge"]) -> Callable[["JudgeSpec"], "Judge"]:
        JUDGES[name] = JudgeType(name=name, build=factory, summary=summary, needs_model=needs_model,
                                 code=tuple(code) or (factory,))
        return factory
    return add


def judge_code_hash(judge_type: str) -> str:
    """A hash of the source code that computes a registered judge's scores.

    Why: cached judge scores (the self-sampled pairs of :mod:`peo_hub.train.selfpairs`) must not
    outlive a change to the judge's code, e.g. a new refusal marker in :mod:`peo_hub.judges.refusal`;
    the judge's spec alone does not change then. Code whose source cannot be read (built
    in, or defined interactively) is named by its qualified name instead.
    """
    digest = hashlib.sha256()
    for obj in JUDGES[judge_type].code:
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            source = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', obj))}"
        digest.update(source.encode() + b"\0")
    return digest.hexdigest()


class JudgeSpec(BaseModel):
    """How one aspect's replies are scored (in [0, 1], higher is better).

    Reward-model judges load with ``AutoModelForSequenceClassification``. Checkpoints saved
    by other code bases need two more things to score as they were trained: their weight
    names mapped onto the transformers class (``key_mapping``; safe-rlhf's Beaver models keep
    their head in ``score_head``, which transformers would otherwise replace by a random
    ``score`` head without an error) and their own text format (``template``).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: str = Field(description="a registered judge: a programmatic one (toy_helpful, toy_harmless, ...) or "
                                   "reward_model")
    model: str | None = Field(default=None, description="reward_model: Hub id or local path of a sequence-classification model")
    revision: str | None = Field(default=None, description="reward_model: Hub revision to pin")
    negate: bool = Field(default=False, description="reward_model: true for cost models (lower cost = better)")
    normalise: Literal["sigmoid", "none"] = Field(
        default="sigmoid",
        description="reward_model: sigmoid((s - shift) / scale) maps the (negated, for cost models) raw score s to "
                    "[0, 1]; none keeps s as is (the front's reference point 0 then cuts negative scores off)",
    )
    scale: float = Field(
        default=1.0, gt=0,
        description="reward_model, sigmoid: raw-score units per sigmoid unit; raise it (e.g. 5) for models whose "
                    "scores spread over tens of units, so that differences between points do not saturate at 0 or 1",
    )
    shift: float = Field(default=0.0, description="reward_model, sigmoid: the raw score that maps to 0.5")
    template: str | None = Field(
        default=None,
        description="reward_model: the scored text as a format string with {prompt} and {reply}, e.g. Beaver's "
                    "'BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{reply}'; default: the judge's chat "
                    "template when it has one, else '{prompt} {reply}'",
    )
    key_mapping: dict[str, str] | None = Field(
        default=None,
        description="reward_model: regex -> replacement on checkpoint weight names, passed to from_pretrained, "
                    "e.g. {'^score_head': 'score'} for safe-rlhf checkpoints (Beaver)",
    )
    score_token: Literal["model", "last"] = Field(
        default="model",
        description="reward_model: model = the model's own pooling (transformers: the last token that is not the "
                    "pad token); last = the last token of the text by attention mask (safe-rlhf's convention; "
                    "differs when the text ends in the pad token, e.g. pad = eos)",
    )
    batch_size: int = Field(default=16, gt=0, description="reward_model: replies scored per forward pass")
    max_length: int = Field(default=1024, gt=0, description="reward_model: tokens per scored conversation")
    labels: str | None = Field(
        default=None,
        description="chat_harmless: where each prompt's harmful flag comes from, a data source with columns prompt "
                    "and harmful (true/false): a .jsonl/.json/.csv/.parquet file, or embedded:smollm2-safety (the "
                    "shipped prompt set, the default)",
    )

    @field_validator("template")
    @classmethod
    def _template_fields(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"template is not a valid format string ({exc}); write literal braces as {{{{ and }}}}") from None
        unknown = sorted(fields - {"prompt", "reply"})
        if unknown or fields != {"prompt", "reply"}:
            what = f"unknown field {{{unknown[0]}}}" if unknown else "it lacks " + " and ".join(
                f"{{{name}}}" for name in ("prompt", "reply") if name not in fields)
            raise ValueError(f"template must use exactly {{prompt}} and {{reply}}: {what}")
        return value

    @field_validator("key_mapping")
    @classmethod
    def _key_mapping_regexes(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        import re

        for pattern in value or {}:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"key_mapping pattern {pattern!r} is not a regular expression ({exc})") from None
        return value

    @model_validator(mode="after")
    def _known_type(self) -> "JudgeSpec":
        if self.type not in JUDGES:
            hint = difflib.get_close_matches(self.type, list(JUDGES), n=1)
            raise ValueError(f"unknown judge type {self.type!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                             + f"; known: {', '.join(JUDGES)}")
        if JUDGES[self.type].needs_model and not self.model:
            raise ValueError(f"judge type {self.type} needs model: <Hub id or path>")
        return self


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


def build_judge(spec: JudgeSpec) -> Judge:
    """The judge a recipe names, built by its registered factory."""
    return JUDGES[spec.type].build(spec)


def _function_judge(name: str, fn: Callable[[str, str], float]) -> Callable[[JudgeSpec], Judge]:
    return lambda spec: ProgrammaticJudge(name, fn)
