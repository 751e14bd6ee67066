"""The recipe's ``dataset:`` section: where preference pairs or prompts come from, and how to read them.

:class:`DatasetSpec` names a source (a Hub dataset, a local file or folder, or ``embedded:``
data shipped with peo-hub), a format (:data:`peo_hub.data.formats.FORMATS`), a split and a
sample size; :class:`GenerateSpec` asks for pairs sampled from the base model itself and
labelled by the aspect's judge. Validation asks the formats what they accept, so a wrong
column or label is refused when the recipe is read, not when the data is.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peo_hub.data.formats import FORMATS, Purpose
from peo_hub.utils.errors import DataError, validation_message
from peo_hub.utils.ids import looks_local

__all__ = ["DatasetSpec", "GenerateSpec", "SamplingContext", "parse_dataset_spec"]

logger = logging.getLogger(__name__)


EMBEDDED_PREFIX = "embedded:"


SMOLLM2_PROMPTS = "smollm2-safety"  # peo_hub.world.smollm2.NAME, without importing it at parse time


# File suffix -> the `datasets` packaged builder that reads it. Compressed JSON/CSV (the raw
# HH-RLHF files are train.jsonl.gz) are read transparently by `datasets`.
FILE_BUILDERS: dict[str, str] = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")


def file_builder(source: str) -> str | None:
    """The `datasets` builder for a local file name, or None when the suffix is not a data file."""
    name = source.lower()
    for compression in COMPRESSION_SUFFIXES:
        if name.endswith(compression):
            name = name[: -len(compression)]
            break
    return next((builder for suffix, builder in FILE_BUILDERS.items() if name.endswith(suffix)), None)


def _split_name(split: str) -> str:
    """``"train[:1000]"`` → ``"train"``: the split a local file is registered under."""
    return split.split("[", 1)[0].strip() or "train"


def _check_turns(value: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
    """Example turns must be ``{role: user|assistant, content: text}``: a system turn belongs in system_prompt."""
    for i, turn in enumerate(value or []):
        if set(turn) != {"role", "content"} or turn["role"] not in ("user", "assistant"):
            raise ValueError(f"context turn {i} must be {{role: user or assistant, content: text}}, got {turn}")
    return value


class SamplingContext(BaseModel):
    """One of several contexts a prompt's replies are sampled under (``generate.contexts``); never trained on."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    system_prompt: str | None = Field(default=None, description="a system message for this context's samples")
    context: list[dict[str, str]] | None = Field(
        default=None, description="example turns ({role: user|assistant, content}) before the prompt in this context")

    @field_validator("context")
    @classmethod
    def _turns(cls, value: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
        return _check_turns(value)


class GenerateSpec(BaseModel):
    """Pairs sampled from the base model itself (see :mod:`peo_hub.train.selfpairs`).

    For each of the source's prompts, ``samples`` replies are sampled from the recipe's
    base model (optionally under ``system_prompt``: context distillation, the adapter then
    learns to behave as if told so), scored with the aspect's judge, and the best is kept
    against the worst when their scores differ by at least ``margin``.

    ``contexts`` samples each prompt under several contexts instead of one, ``samples``
    split evenly among them. Why: a judge can only prefer what the samples contain. A
    calibrated harmless judge (``chat_harmless_calibrated``) wants a refusal against an
    answer on every prompt, the refusal chosen on a harmful one and the answer on a benign
    one; no single context makes a small model both refuse and answer the same prompt
    often enough, but a context that leans to refusing next to one that leans to answering
    does (contrastive sampling, as in RLCD, Yang et al. 2023). The judge, not the context,
    still decides which reply is chosen.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    samples: int = Field(default=4, ge=2, le=64, description="replies sampled per prompt (best and worst become a pair)")
    margin: float = Field(default=0.1, ge=0, le=1,
                          description="keep a prompt's pair only when best and worst judge scores differ by this much")
    pairs_per_prompt: int = Field(
        default=1, ge=1, le=32,
        description="pairs kept per prompt: the best reply against the worst, the second best against the second "
                    "worst, and so on (each pair must meet margin; at most samples // 2, no reply used twice)")
    system_prompt: str | None = Field(
        default=None,
        description="a system message the replies are sampled under but the pairs are trained without (context "
                    "distillation), e.g. a safety instruction for a harmless aspect")
    context: list[dict[str, str]] | None = Field(
        default=None,
        description="example turns ({role: user|assistant, content}) put before each prompt while sampling, after "
                    "the system prompt, and not trained on either: few-shot context distillation, which small models "
                    "follow more readily than an instruction")
    contexts: list[SamplingContext] | None = Field(
        default=None, min_length=1,
        description="instead of system_prompt/context: several contexts ({system_prompt, context} each), the samples "
                    "split evenly among them (samples must be a multiple of their number), e.g. one that leans to "
                    "refusing and one that leans to answering, so that every prompt gets both kinds of reply for the "
                    "judge to choose from; none is trained on")
    max_new_tokens: int = Field(default=64, gt=0, le=4096, description="reply length cap while sampling")
    temperature: float = Field(default=1.0, gt=0, description="sampling temperature")
    top_p: float = Field(default=1.0, gt=0, le=1, description="nucleus sampling")
    batch_size: int = Field(default=32, gt=0, description="replies generated per batch (batch_size // samples prompts "
                                                          "at a time; each batch is cached when done)")

    @field_validator("context")
    @classmethod
    def _turns(cls, value: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
        return _check_turns(value)

    @model_validator(mode="after")
    def _contexts_or_one(self) -> "GenerateSpec":
        if self.contexts is not None:
            if self.system_prompt is not None or self.context is not None:
                raise ValueError("contexts: give either system_prompt/context (one context) or contexts (several), "
                                 "not both; move them into a contexts entry")
            if self.samples % len(self.contexts):
                raise ValueError(f"contexts: samples {self.samples} do not split evenly among {len(self.contexts)} "
                                 f"contexts; make samples a multiple of {len(self.contexts)}")
        if self.pairs_per_prompt > self.samples // 2:
            raise ValueError(f"pairs_per_prompt: {self.pairs_per_prompt} pairs need at least "
                             f"{2 * self.pairs_per_prompt} samples (no reply is used twice); raise samples to "
                             f"{2 * self.pairs_per_prompt} or lower pairs_per_prompt to {self.samples // 2}")
        return self

    def sampling_contexts(self) -> list[SamplingContext]:
        """The contexts replies are sampled under: ``contexts``, or the one made of system_prompt and context."""
        if self.contexts is not None:
            return list(self.contexts)
        return [SamplingContext(system_prompt=self.system_prompt, context=self.context)]


class DatasetSpec(BaseModel):
    """Where one aspect's preference pairs come from and how to read them.

    The YAML form is the model: ``{source: ..., format: ..., split: ..., label: ...}``.
    Every field has a default except ``source``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(
        description=(
            "Hub dataset id (e.g. 'PKU-Alignment/PKU-SafeRLHF'), a local file (.parquet, .jsonl, .json, "
            ".csv, optionally .gz), a local folder (data files, or a `save_to_disk` dataset), or "
            "'embedded:<name>' for the offline toy world."
        )
    )
    format: str = Field(
        default="pairs",
        description="How the rows are laid out: pairs, pku-saferlhf, hh-rlhf, conversational or columns.",
    )
    split: str = Field(
        default="train",
        description="Split to read; `datasets` slicing works (e.g. 'train[:2000]'). For a single local file the name only labels it.",
    )
    subset: str | None = Field(
        default=None,
        validation_alias=AliasChoices("subset", "name"),
        description="Hub config name (`datasets`' `name`, also accepted as `name`), e.g. 'alpaca-7b' for PKU-SafeRLHF.",
    )
    data_dir: str | None = Field(
        default=None,
        description="Folder inside the Hub repo or local folder, e.g. 'helpful-base' or 'harmless-base' for Anthropic/hh-rlhf.",
    )
    revision: str | None = Field(
        default=None, description="Hub git revision (branch, tag or commit) to pin for reproducibility."
    )
    label: str | None = Field(
        default=None,
        description=(
            "pku-saferlhf: 'better' (helpfulness, better_response_id) or 'safer' (harmlessness, "
            "safer_response_id) picks the chosen response. embedded:toy: the aspect label passed to the "
            "toy world. embedded:smollm2-safety: harmful or benign keeps only those prompts. Not used by other "
            "formats."
        ),
    )
    columns: dict[str, str] | None = Field(
        default=None,
        description="format 'columns' only: {prompt: <column>, chosen: <column>, rejected: <column>}.",
    )
    max_samples: int | None = Field(
        default=None,
        gt=0,
        description="Use at most this many pairs (a seeded random subset, in source order); None uses all.",
    )
    seed: int = Field(default=0, description="Seed for the max_samples subset and the test_size hold-out.")
    test_size: float | int | None = Field(
        default=None,
        description=(
            "Hold out pairs for evaluation from the same split: a fraction in (0, 1) or a count, rounded up to "
            "whole prompts (no prompt is in both parts). Taken from the max_samples pool, so train = max_samples "
            "- held out."
        ),
    )
    eval_split: str | None = Field(
        default=None,
        description="Hold-out from another split of a Hub dataset or folder instead (e.g. 'test'); capped at max_samples.",
    )
    generate: GenerateSpec | None = Field(
        default=None,
        description="sample the pairs from the base model instead of reading them: the source then only needs "
                    "prompts (max_samples caps the prompts); see generate below",
    )

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("source is empty; give a Hub dataset id, a local file or embedded:<name>")
        if value.startswith(EMBEDDED_PREFIX) and not value[len(EMBEDDED_PREFIX) :].strip():
            raise ValueError("embedded source needs a name after 'embedded:', e.g. embedded:toy")
        return value

    @field_validator("test_size")
    @classmethod
    def _test_size_range(cls, value: float | int | None) -> float | int | None:
        if value is None:
            return value
        if isinstance(value, bool):
            raise ValueError("test_size must be a fraction in (0, 1) or a count >= 1, not a boolean")
        if isinstance(value, float) and not value.is_integer() and not 0 < value < 1:
            raise ValueError(f"test_size {value} is neither a fraction in (0, 1) nor a whole count; e.g. use 0.05 or 200")
        if isinstance(value, float) and value.is_integer() and value >= 1:
            return int(value)
        if value <= 0:
            raise ValueError(f"test_size must be > 0, got {value}; e.g. use 0.05 or 200")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in FORMATS:
            hint = difflib.get_close_matches(value, list(FORMATS), n=1)
            raise ValueError(f"unknown format {value!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                             + f"; known: {', '.join(FORMATS)}")
        return value

    @model_validator(mode="after")
    def _format_fields(self) -> "DatasetSpec":
        self.check(None)
        return self

    def check(self, purpose: Purpose | None) -> None:
        """Raise ``ValueError("field: problem; fix")`` unless the spec can be read for ``purpose``."""
        fmt = FORMATS[self.format]
        if self.generate is not None and (self.test_size is not None or self.eval_split is not None):
            raise ValueError("generate: sampled pairs have no hold-out; remove test_size/eval_split and evaluate on "
                             "other prompts (evaluate.prompts)")
        if purpose == "pairs" and self.generate is None and self.source == f"{EMBEDDED_PREFIX}{SMOLLM2_PROMPTS}":
            raise ValueError(f"generate: {self.source} holds prompts only; add generate: {{samples: 4}} to sample "
                             "pairs for them from the base model")
        if self.is_embedded and self.format != "pairs":
            raise ValueError(f"format: embedded sources are already pairs; remove format or set format: pairs "
                             f"(got {self.format!r})")
        if self.label is not None and not (fmt.uses_label or self.is_embedded):
            raise ValueError(f"label: only format pku-saferlhf and embedded sources use a label; remove label "
                             f"{self.label!r} for format {self.format}")
        if self.columns is not None and self.format != "columns":
            raise ValueError("columns: only format columns uses a column mapping; set format: columns or remove columns")
        if self.test_size is not None and self.eval_split is not None:
            raise ValueError("eval_split: test_size is also set; hold out either part of split (test_size) or another "
                             "split (eval_split), not both")
        fmt.check_spec(self, purpose)

    @property
    def is_embedded(self) -> bool:
        """True for ``embedded:<name>``: the offline toy world, not a file or a Hub id."""
        return self.source.startswith(EMBEDDED_PREFIX)

    @property
    def source_kind(self) -> Literal["embedded", "file", "folder", "hub"]:
        """How ``source`` is read.

        A known data-file suffix means a local file; an existing folder, or anything that
        starts like a path (``/``, ``./``, ``../``, ``~``), is local; the rest is a Hub id.
        Decided from the string (plus one ``is_dir``) so that a missing file is reported
        as missing, not as an unknown Hub dataset.
        """
        if self.is_embedded:
            return "embedded"
        if file_builder(self.source) is not None:
            return "file"
        if Path(self.source).expanduser().is_dir():
            return "folder"
        return "file" if looks_local(self.source) else "hub"

    def describe(self) -> str:
        """A short human name for logs and errors, e.g. ``Anthropic/hh-rlhf[helpful-base] train``."""
        where = self.source
        extra = ",".join(part for part in (self.subset, self.data_dir) if part)
        if extra:
            where += f"[{extra}]"
        return f"{where} {self.split}"


def parse_dataset_spec(obj: Any, where: str = "dataset", purpose: Purpose | None = None) -> DatasetSpec:
    """Validate a dataset spec (dict, YAML-loaded) into a :class:`DatasetSpec`, or raise one-line DataError.

    ``where`` prefixes the field path in errors, e.g. ``aspects.helpful.dataset``; ``purpose``
    (``pairs`` or ``prompts``) adds the checks that depend on what the data is read for.
    """
    if isinstance(obj, str):
        raise DataError(f"{where}: expected a mapping like {{source: ..., format: ...}}, got the string {obj!r}; "
                        f"write source: {obj}")
    try:
        spec = obj if isinstance(obj, DatasetSpec) else DatasetSpec.model_validate(obj)
        if purpose is not None:
            spec.check(purpose)
    except ValidationError as exc:
        raise DataError(validation_message(exc, where, DatasetSpec.model_fields)) from None
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise DataError(f"field {where + '.' + field!r}: {message}" if message else f"{where}: {exc}") from None
    return spec
