"""Preference dataset formats, as a registry: each format says once what it needs and how it reads.

A format answers three questions about a table of rows, and only these:

* which columns does it need (for pairs, or just for prompts)?      :meth:`Format.columns`
* how do rows become ``prompt``/``chosen``/``rejected`` pairs?      :meth:`Format.pairs`
* how do rows become evaluation prompts?                             :meth:`Format.prompts`

Adding a format is one class with :func:`register`; the recipe schema, the loader and the
README's list all read :data:`FORMATS`. Rows that cannot give a usable pair (missing text,
identical chosen and rejected, a rejected dialogue that does not share the chosen one's
prompt) are dropped and counted; problems that mean the spec or the data is wrong raise
:class:`~peo_hub.utils.errors.DataError` naming the row and the fix.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Protocol, Sequence

from peo_hub.data.chat import ASSISTANT, HUMAN, check_messages
from peo_hub.utils.errors import DataError

Purpose = Literal["pairs", "prompts"]


class DatasetSpec(Protocol):
    """What a format reads of a recipe's ``dataset:`` (:class:`peo_hub.data.config.DatasetSpec`).

    A protocol, not an import: the spec's validation asks the formats what they accept, so
    the formats must not depend on the spec in turn.
    """

    @property
    def label(self) -> str | None: ...

    @property
    def columns(self) -> Mapping[str, str] | None: ...

    def describe(self) -> str: ...

# Drop reasons, as they appear in logs and in PreferenceData.dropped.
MISSING_TEXT = "missing or empty text"
IDENTICAL = "chosen identical to rejected"
PROMPT_DIFFERS = "prompt differs between chosen and rejected"
NO_ASSISTANT = "no assistant turn in chosen"
MULTI_TURN = "completion spans several turns"


@dataclass
class Rows:
    """Converted rows before rendering: prompts keep their structure until a tokenizer renders them."""

    prompts: list[Any] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    read: int = 0

    def add(self, prompt: Any, chosen: str | None, rejected: str | None) -> None:
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()) or (isinstance(prompt, list) and not prompt):
            self.dropped[MISSING_TEXT] += 1
        elif not chosen or not rejected or not chosen.strip() or not rejected.strip():
            self.dropped[MISSING_TEXT] += 1
        elif chosen == rejected:
            self.dropped[IDENTICAL] += 1  # zero DPO gradient: pure cost
        else:
            self.prompts.append(prompt)
            self.chosen.append(chosen)
            self.rejected.append(rejected)

    def __len__(self) -> int:
        return len(self.prompts)


def completion(value: Any, what: str) -> str | None:
    """A completion as text: a string, or the content of a list of assistant messages."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        messages = check_messages(value, what)
        roles = {message["role"] for message in messages}
        if roles - {"assistant"}:
            raise DataError(
                f"{what}: a completion must hold only assistant messages, found roles {sorted(roles)}; "
                "put earlier turns in the prompt column (or drop the prompt column for an implicit prompt)"
            )
        return "\n".join(message["content"] for message in messages)
    raise DataError(f"{what}: expected text or a list of assistant messages, got {type(value).__name__}; fix the data or the format")


def prompt_value(value: Any, what: str) -> str | list[dict[str, str]] | None:
    """A prompt as text or as validated messages."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return check_messages(value, what)
    raise DataError(f"{what}: expected text or a list of messages, got {type(value).__name__}; fix the data or the format")


class Format:
    """One dataset layout. Subclasses set :attr:`name` and override what differs."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: Whether the spec's ``label`` picks something in this format.
    uses_label: ClassVar[bool] = False

    def check_spec(self, spec: DatasetSpec, purpose: Purpose | None) -> None:
        """Raise ``ValueError("field: problem; fix")`` when the spec cannot be read this way.

        ``purpose`` is ``None`` at parse time (checks that always hold), ``"pairs"`` for an
        aspect's training data, ``"prompts"`` for evaluation prompts.
        """

    def columns(self, spec: DatasetSpec, names: Sequence[str], purpose: Purpose) -> dict[str, str | None]:
        """Role -> source column; ``None`` marks an optional column that is absent."""
        mapping: dict[str, str | None] = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
        return {"prompt": mapping["prompt"]} if purpose == "prompts" else mapping

    def pairs(self, data: Mapping[str, list], mapping: Mapping[str, str | None], spec: DatasetSpec) -> Rows:
        rows = Rows()
        where = spec.describe()
        for i, (prompt, good, bad) in enumerate(zip(*(data[str(mapping[r])] for r in ("prompt", "chosen", "rejected")))):
            rows.add(prompt_value(prompt, f"{where} row {i} prompt"), completion(good, f"{where} row {i} chosen"),
                     completion(bad, f"{where} row {i} rejected"))
        return rows

    def prompts(self, data: Mapping[str, list], mapping: Mapping[str, str | None], spec: DatasetSpec) -> list[Any]:
        return [prompt_value(value, f"{spec.describe()} row {i} prompt")
                for i, value in enumerate(data[str(mapping["prompt"])])]


FORMATS: dict[str, Format] = {}


def register(cls: type[Format]) -> type[Format]:
    """Class decorator: make a format known to recipes and the loader under ``cls.name``."""
    FORMATS[cls.name] = cls()
    return cls


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise DataError(f"unknown dataset format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


@register
class Pairs(Format):
    name = "pairs"
    summary = "columns prompt, chosen, rejected (strings, or message lists)"


PKU_LABELS: dict[str, str] = {"better": "better_response_id", "safer": "safer_response_id"}


@register
class PKUSafeRLHF(Format):
    name = "pku-saferlhf"
    summary = "PKU-Alignment/PKU-SafeRLHF: label better (helpful) or safer (harmless) picks the chosen response"
    uses_label = True

    def check_spec(self, spec: DatasetSpec, purpose: Purpose | None) -> None:
        if spec.label is not None and spec.label not in PKU_LABELS:
            raise ValueError(f"label: format pku-saferlhf takes label: better or label: safer, not label {spec.label!r}")
        if purpose == "pairs" and spec.label is None:
            raise ValueError("label: format pku-saferlhf needs label: better or label: safer to pick the chosen response")

    def columns(self, spec: DatasetSpec, names: Sequence[str], purpose: Purpose) -> dict[str, str | None]:
        if purpose == "prompts":
            return {"prompt": "prompt"}
        return {"prompt": "prompt", "response_0": "response_0", "response_1": "response_1",
                "id": PKU_LABELS[str(spec.label)]}

    def pairs(self, data: Mapping[str, list], mapping: Mapping[str, str | None], spec: DatasetSpec) -> Rows:
        rows = Rows()
        column = lambda role: data[str(mapping[role])]  # noqa: E731
        for i, (prompt, r0, r1, pick) in enumerate(zip(column("prompt"), column("response_0"), column("response_1"),
                                                       column("id"))):
            if isinstance(pick, bool) or pick not in (0, 1):
                raise DataError(f"{spec.describe()} row {i}: {mapping['id']} is {pick!r}, expected 0 or 1; check that "
                                "this is PKU-SafeRLHF data, or filter bad rows out before loading")
            good, bad = (r0, r1) if pick == 0 else (r1, r0)
            where = f"{spec.describe()} row {i}"
            rows.add(prompt_value(prompt, f"{where} prompt"), completion(good, where), completion(bad, where))
        return rows


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str] | str:
    """HH-RLHF dialogues -> (prompt, chosen completion, rejected completion), or a drop reason.

    The prompt is the chosen dialogue up to and including its last ``"\\n\\nAssistant:"``;
    the rejected dialogue must start with the same text (a few HH rows differ earlier in the
    conversation; they are dropped, since no single prompt fits both). Completions keep their
    leading space so that ``prompt + chosen`` is the original dialogue.
    """
    cut = chosen.rfind(ASSISTANT)
    if cut < 0:
        return NO_ASSISTANT
    prompt = chosen[: cut + len(ASSISTANT)]
    if not rejected.startswith(prompt):
        return PROMPT_DIFFERS
    good, bad = chosen[len(prompt):], rejected[len(prompt):]
    if HUMAN in good or HUMAN in bad or ASSISTANT in bad:
        return MULTI_TURN
    return prompt, good, bad


@register
class HHRLHF(Format):
    name = "hh-rlhf"
    summary = "Anthropic/hh-rlhf: chosen/rejected full dialogues; the prompt is the text up to the last Assistant:"

    def columns(self, spec: DatasetSpec, names: Sequence[str], purpose: Purpose) -> dict[str, str | None]:
        return {"chosen": "chosen"} if purpose == "prompts" else {"chosen": "chosen", "rejected": "rejected"}

    def pairs(self, data: Mapping[str, list], mapping: Mapping[str, str | None], spec: DatasetSpec) -> Rows:
        rows = Rows()
        for i, (good, bad) in enumerate(zip(data[str(mapping["chosen"])], data[str(mapping["rejected"])])):
            if (good is not None and not isinstance(good, str)) or (bad is not None and not isinstance(bad, str)):
                raise DataError(f"{spec.describe()} row {i}: hh-rlhf chosen/rejected must be dialogue text, got "
                                f"{type(good).__name__}/{type(bad).__name__}; use format conversational for message lists")
            if not good or not bad or not good.strip() or not bad.strip():
                rows.dropped[MISSING_TEXT] += 1
                continue
            parts = split_hh(good, bad)
            if isinstance(parts, str):
                rows.dropped[parts] += 1
            else:
                rows.add(*parts)
        return rows

    def prompts(self, data: Mapping[str, list], mapping: Mapping[str, str | None], spec: DatasetSpec) -> list[Any]:
        return [value[: value.rfind(ASSISTANT) + len(ASSISTANT)] for value in data[str(mapping["chosen"])]
                if isinstance(value, str) and ASSISTANT in value]


@register
class Conversational(Format):
    name = "conversational"
    summary = ("TRL's conversational format: message lists, with a prompt column or an implicit prompt "
               "(the shared turns before the final assistant message)")

    def columns(self, spec: DatasetSpec, names: Sequence[str], purpose: Purpose) -> dict[str, str | None]:
        prompt = "prompt" if "prompt" in names else None
        if purpose == "prompts":
            return {"prompt": prompt} if prompt else {"chosen": "chosen"}
        return {"prompt": prompt, "chosen": "chosen", "rejected": "rejected"}

    def pairs(self, data: Mapping[str, list], mapping: Mapping[str, str | None], spec: DatasetSpec) -> Rows:
        if mapping["prompt"] is not None:
            return super().pairs(data, mapping, spec)
        rows = Rows()
        for i, (good, bad) in enumerate(zip(data[str(mapping["chosen"])], data[str(mapping["rejected"])])):
            if good is None or bad is None:
                rows.dropped[MISSING_TEXT] += 1
                continue
            if isinstance(good, str) or isinstance(bad, str):
                raise DataError(f"{spec.describe()} row {i}: without a prompt column, chosen and rejected must be full "
                                "message lists; add a prompt column or use format pairs")
            good_m, bad_m = check_messages(good, f"row {i} chosen"), check_messages(bad, f"row {i} rejected")
            if not good_m or good_m[-1]["role"] != "assistant" or not bad_m or bad_m[-1]["role"] != "assistant":
                rows.dropped[NO_ASSISTANT] += 1
            elif good_m[:-1] != bad_m[:-1] or not good_m[:-1]:
                rows.dropped[PROMPT_DIFFERS if good_m[:-1] else MISSING_TEXT] += 1
            else:
                rows.add(good_m[:-1], good_m[-1]["content"], bad_m[-1]["content"])
        return rows

    def prompts(self, data: Mapping[str, list], mapping: Mapping[str, str | None], spec: DatasetSpec) -> list[Any]:
        if mapping.get("prompt") is not None:
            return super().prompts(data, mapping, spec)
        values = []
        for i, value in enumerate(data[str(mapping["chosen"])]):
            if isinstance(value, (list, tuple)):
                messages = check_messages(value, f"{spec.describe()} row {i} chosen")
                if len(messages) > 1 and messages[-1]["role"] == "assistant":
                    values.append(messages[:-1])
        return values


@register
class Columns(Format):
    name = "columns"
    summary = "pairs under other column names: columns: {prompt: q, chosen: good, rejected: bad}"

    def check_spec(self, spec: DatasetSpec, purpose: Purpose | None) -> None:
        keys = set(spec.columns or {})
        if keys != {"prompt", "chosen", "rejected"}:
            missing = sorted({"prompt", "chosen", "rejected"} - keys)
            extra = sorted(keys - {"prompt", "chosen", "rejected"})
            detail = "; ".join(p for p in (f"missing {missing}" if missing else "", f"unknown {extra}" if extra else "") if p)
            raise ValueError(f"columns: format columns needs a mapping with exactly prompt, chosen and rejected "
                             f"({detail}), e.g. columns: {{prompt: question, chosen: good, rejected: bad}}")

    def columns(self, spec: DatasetSpec, names: Sequence[str], purpose: Purpose) -> dict[str, str | None]:
        mapping = dict(spec.columns or {})
        return {"prompt": mapping["prompt"]} if purpose == "prompts" else mapping
