"""Preference data: Hub ids, local files and the embedded world -> prompt/chosen/rejected.

Every aspect of a PEO recipe names its preference data with a :class:`DatasetSpec`. This
module turns any supported source and format into one shape, a ``datasets.Dataset`` with
three string columns, so that the DPO trainer, the evaluation and the Space never see a
dataset's own layout:

``prompt``
    what the model is asked; rendered with the tokenizer's chat template when one is
    given (:func:`peo_hub.chat.render_prompt`), so training, evaluation and the Space agree.
``chosen`` / ``rejected``
    plain completions (strings). TRL appends the EOS token itself.

Formats (``DatasetSpec.format``) are the registry in :mod:`peo_hub.formats`: ``pairs``,
``pku-saferlhf``, ``hh-rlhf``, ``conversational`` and ``columns``.

Rows that cannot give a usable pair (missing text, identical chosen and rejected, a
rejected dialogue that does not share the chosen one's prompt) are dropped and counted;
the counts are logged and kept in :attr:`PreferenceData.dropped`. Problems that mean the
spec or the data is wrong (missing columns, labels that are not 0/1, a missing file) raise
:class:`~peo_hub.errors.DataError` with one line naming the problem and the fix.

``datasets`` is imported lazily so that validating a recipe stays fast.
"""

from __future__ import annotations

import difflib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peo_hub.chat import _short, has_chat_template, render_prompt, to_messages
from peo_hub.errors import DataError, validation_message
from peo_hub.formats import FORMATS, Purpose, Rows, split_hh
from peo_hub.ids import is_repo_id, looks_local

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "DatasetSpec",
    "GenerateSpec",
    "PreferenceData",
    "load_preference_data",
    "load_preference_dataset",
    "load_prompts",
    "load_rows",
    "pairs_dataset",
    "parse_dataset_spec",
    "render_prompt",
    "split_hh",
    "to_messages",
]

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


class GenerateSpec(BaseModel):
    """Pairs sampled from the base model itself (see :mod:`peo_hub.selfpairs`).

    For each of the source's prompts, ``samples`` replies are sampled from the recipe's
    base model (optionally under ``system_prompt``: context distillation, the adapter then
    learns to behave as if told so), scored with the aspect's judge, and the best is kept
    against the worst when their scores differ by at least ``margin``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    samples: int = Field(default=4, ge=2, le=64, description="replies sampled per prompt (best and worst become a pair)")
    margin: float = Field(default=0.1, ge=0, le=1,
                          description="keep a prompt's pair only when best and worst judge scores differ by this much")
    system_prompt: str | None = Field(
        default=None,
        description="a system message the replies are sampled under but the pairs are trained without (context "
                    "distillation), e.g. a safety instruction for a harmless aspect")
    context: list[dict[str, str]] | None = Field(
        default=None,
        description="example turns ({role: user|assistant, content}) put before each prompt while sampling, after "
                    "the system prompt, and not trained on either: few-shot context distillation, which small models "
                    "follow more readily than an instruction")
    max_new_tokens: int = Field(default=64, gt=0, le=4096, description="reply length cap while sampling")
    temperature: float = Field(default=1.0, gt=0, description="sampling temperature")
    top_p: float = Field(default=1.0, gt=0, le=1, description="nucleus sampling")
    batch_size: int = Field(default=32, gt=0, description="replies generated per batch (batch_size // samples prompts "
                                                          "at a time; each batch is cached when done)")

    @field_validator("context")
    @classmethod
    def _turns(cls, value: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
        for i, turn in enumerate(value or []):
            if set(turn) != {"role", "content"} or turn["role"] not in ("user", "assistant"):
                raise ValueError(f"context turn {i} must be {{role: user or assistant, content: text}}, got {turn}")
        return value


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


# --------------------------------------------------------------------------- loading


def _first_line(exc: BaseException) -> str:
    """The most specific one-line reason: `datasets` wraps parse errors in a generic one."""
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).rstrip(".")


def _load_raw(spec: DatasetSpec, split: str) -> "Dataset":
    """The source's rows for ``split`` as a ``datasets.Dataset``, or a one-line DataError."""
    import datasets

    kind = spec.source_kind
    if kind == "embedded":
        return _load_embedded(spec, split)
    if kind == "file":
        path = Path(spec.source).expanduser()
        if not path.exists():
            raise DataError(f"dataset file not found: {path} (resolved from {Path.cwd()}); check source in the dataset spec")
        if not path.is_file():
            raise DataError(f"dataset source {path} is not a file; point source at a .parquet/.jsonl/.json/.csv file or a folder")
        builder = file_builder(path.name)
        if builder is None:
            raise DataError(
                f"unsupported dataset file type: {path.name}; convert it to .parquet, .jsonl, .json or .csv"
            )
        if split != spec.split:
            raise DataError(
                f"eval_split {split!r} needs a Hub dataset or a folder with several splits, but {path.name} is one file; "
                "use test_size to hold out part of it"
            )
        if path.stat().st_size == 0:
            raise DataError(f"dataset file {path} is empty; fill it with one preference row per record")
        try:
            return datasets.load_dataset(builder, data_files={_split_name(split): str(path)}, split=split)
        except Exception as exc:  # pyarrow/json/csv parse errors all mean "not a readable data file"
            raise DataError(
                f"cannot read {path} as {builder}: {_first_line(exc)}; check that the file is valid {builder} "
                "with one preference row per record"
            ) from None
    if kind == "folder":
        path = Path(spec.source).expanduser()
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return _load_saved(path, split)
        return _load_builder(str(path), spec, split, where=f"folder {path}")
    if not is_repo_id(spec.source):
        raise DataError(
            f"dataset source {spec.source!r} is not a local file, a folder or a Hub dataset id; "
            "check the path (data files end in .parquet/.jsonl/.json/.csv) or write the id as owner/name"
        )
    return _load_builder(spec.source, spec, split, where=f"Hub dataset {spec.source!r}")


def _load_saved(path: Path, split: str) -> "Dataset":
    """A folder written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk``."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"cannot read saved dataset {path}: {_first_line(exc)}; re-save it with save_to_disk") from None
    if isinstance(loaded, datasets.DatasetDict):
        name = _split_name(split)
        if name not in loaded:
            raise DataError(f"split {name!r} not in saved dataset {path}; set split to one of {sorted(loaded)}")
        loaded = loaded[name]
    if "[" in split:
        raise DataError(f"split slicing ({split!r}) is not supported for save_to_disk folders; use max_samples instead")
    return loaded


def _load_builder(path_or_id: str, spec: DatasetSpec, split: str, where: str) -> "Dataset":
    """``datasets.load_dataset`` for a Hub id or a data folder, with its errors made actionable."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        return datasets.load_dataset(
            path_or_id, name=spec.subset, data_dir=spec.data_dir, split=split, revision=spec.revision
        )
    except DatasetNotFoundError:
        raise DataError(
            f"{where} not found (or it is gated/private); check the id, or accept its terms and log in with `hf auth login`"
        ) from None
    except ConnectionError as exc:
        raise DataError(
            f"cannot reach the Hub for {where} and it is not in the local cache ({_first_line(exc)}); "
            "connect and unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE, or download it once, or use a local file"
        ) from None
    except ValueError as exc:  # unknown split, unknown config name, bad data_dir
        text = _first_line(exc)
        if "split" in text.lower():
            fix = "set split (or eval_split) to one of the splits listed"
        elif "config" in text.lower() or "name" in text.lower():
            fix = "set subset (the config name) to one of those listed"
        else:
            fix = "check subset, data_dir and split"
        raise DataError(f"{where}: {text}; {fix}") from None
    except FileNotFoundError as exc:
        raise DataError(f"{where}: {_first_line(exc)}; check data_dir and split") from None
    except Exception as exc:  # a data file `datasets` cannot parse (pyarrow, json, csv errors)
        raise DataError(f"cannot read {where}: {_first_line(exc)}; check that every data file in it is valid "
                        "parquet, jsonl, json or csv") from None


def _load_embedded(spec: DatasetSpec, split: str) -> "Dataset":
    """Pairs from the offline toy world (:func:`peo_hub.world.toy.embedded_pairs`)."""
    import datasets

    from peo_hub.errors import PEOError
    from peo_hub.world.toy import embedded_pairs  # lazy: the toy world pulls in its own data

    name = spec.source[len(EMBEDDED_PREFIX) :].strip()
    if name == SMOLLM2_PROMPTS:
        from peo_hub.world.smollm2 import prompt_rows

        return datasets.Dataset.from_list(prompt_rows(_split_name(split), spec.label))
    try:
        rows = embedded_pairs(name, split, spec.label)
    except PEOError:
        raise
    except (KeyError, ValueError) as exc:
        raise DataError(
            f"embedded dataset {name!r} (split {split!r}, label {spec.label!r}): {_first_line(exc)}; "
            "check the embedded name, split and label"
        ) from None
    return datasets.Dataset.from_list(list(rows))


def load_rows(spec: DatasetSpec, columns: Sequence[str], where: str) -> dict[str, list]:
    """The named columns of ``spec``'s split as lists, or one DataError naming the missing ones."""
    raw = _load_raw(spec, spec.split)
    missing = [c for c in columns if c not in raw.column_names]
    if missing:
        raise DataError(f"{where}: {spec.describe()} lacks column(s) {', '.join(missing)} (found "
                        f"{', '.join(raw.column_names) or 'none'}); add them or point at another file")
    return raw.select_columns(list(columns)).to_dict()


def _columns(spec: DatasetSpec, names: Sequence[str], purpose: Purpose) -> dict[str, str | None]:
    """Role -> source column for ``spec.format``; a missing one raises a DataError naming it."""
    mapping = FORMATS[spec.format].columns(spec, names, purpose)
    missing = [column for column in mapping.values() if column is not None and column not in names]
    if missing:
        hint = ("fix the columns mapping" if spec.format == "columns"
                else "pick the format that matches the data, or use format: columns with a columns mapping")
        found = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        raise DataError(f"{spec.describe()}: format {spec.format} needs column(s) {', '.join(missing)}, "
                        f"found {found or 'none'}; {hint}")
    return mapping


def _read(raw: "Dataset", spec: DatasetSpec, purpose: Purpose) -> tuple[dict[str, list], dict[str, str | None]]:
    mapping = _columns(spec, list(raw.column_names), purpose)
    used = [c for c in dict.fromkeys(mapping.values()) if c is not None]
    return raw.select_columns(used).to_dict(), mapping


def _convert(raw: "Dataset", spec: DatasetSpec) -> Rows:
    """Source rows -> prompt/chosen/rejected for ``spec.format``, counting drops."""
    data, mapping = _read(raw, spec, "pairs")
    rows = FORMATS[spec.format].pairs(data, mapping, spec)
    rows.read = raw.num_rows
    return rows


def _subset(n: int, k: int | None, seed: int) -> list[int]:
    """A seeded random subset of ``range(n)`` of size ``k`` (all when k is None), in source order."""
    import numpy as np

    if k is None or k >= n:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n)[:k])


def pairs_dataset(prompts: Sequence[Any], chosen: Sequence[str], rejected: Sequence[str], tokenizer: Any) -> "Dataset":
    """Raw prompts and their completions -> the three-column string Dataset the trainer takes."""
    rows = Rows(prompts=list(prompts), chosen=list(chosen), rejected=list(rejected))
    return _to_dataset(rows, range(len(rows)), tokenizer)


def _to_dataset(rows: Rows, indices: Sequence[int], tokenizer: Any) -> "Dataset":
    """Selected rows → the three-column string Dataset, prompts rendered with ``tokenizer``."""
    import datasets

    templated = has_chat_template(tokenizer)
    prompts, chosen, rejected = [], [], []
    for i in indices:
        prompts.append(render_prompt(tokenizer, rows.prompts[i]))
        # After a chat template the completion starts a fresh assistant turn: drop the
        # leading space that plain-text formats (HH-RLHF) keep after "Assistant:".
        chosen.append(rows.chosen[i].lstrip() if templated else rows.chosen[i])
        rejected.append(rows.rejected[i].lstrip() if templated else rows.rejected[i])
    features = datasets.Features(
        {"prompt": datasets.Value("string"), "chosen": datasets.Value("string"), "rejected": datasets.Value("string")}
    )
    return datasets.Dataset.from_dict({"prompt": prompts, "chosen": chosen, "rejected": rejected}, features=features)


def _prompt_key(prompt: Any) -> Any:
    return prompt if isinstance(prompt, str) else tuple((m["role"], m["content"]) for m in prompt)


def _hold_out(rows: Rows, pool: list[int], n_test: int, seed: int) -> tuple[list[int], list[int]]:
    """Split ``pool`` into (held-out, train) by whole prompts, at least ``n_test`` pairs held out.

    Why by prompt: datasets like PKU-SafeRLHF pair one prompt with several response pairs;
    a pair-level split would evaluate on prompts the adapter was trained on.
    """
    import numpy as np

    groups: dict[Any, list[int]] = {}
    for index in pool:
        groups.setdefault(_prompt_key(rows.prompts[index]), []).append(index)
    keys = list(groups)
    held: set[int] = set()
    for k in np.random.default_rng(seed + 1).permutation(len(keys)):
        if len(held) >= n_test:
            break
        held.update(groups[keys[int(k)]])
    return [i for i in pool if i in held], [i for i in pool if i not in held]


@dataclass
class PreferenceData:
    """What :func:`load_preference_data` returns: training pairs, optional held-out pairs, provenance."""

    spec: DatasetSpec
    train: "Dataset"
    eval: "Dataset | None"
    rows_read: int
    dropped: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. sampled pairs: their cache key and mean score

    def provenance(self) -> dict[str, Any]:
        """The spec plus counts, for the bundle manifest and the model card."""
        return {
            **self.spec.model_dump(exclude_none=True),
            "rows_read": self.rows_read,
            "train_rows": self.train.num_rows,
            "eval_rows": 0 if self.eval is None else self.eval.num_rows,
            "dropped": dict(self.dropped),
            **self.extra,
        }


def _report(spec: DatasetSpec, split: str, rows: Rows) -> None:
    total = sum(rows.dropped.values())
    if total:
        detail = ", ".join(f"{count} {reason}" for reason, count in rows.dropped.most_common())
        logger.warning("%s (split %s): dropped %d of %d rows: %s", spec.source, split, total, rows.read, detail)
    if not len(rows):
        detail = ", ".join(f"{count} {reason}" for reason, count in rows.dropped.most_common()) or "the split is empty"
        raise DataError(
            f"{spec.describe()}: no usable preference pairs in split {split!r} ({rows.read} rows read; {detail}); "
            "check format, split and label"
        )


def load_preference_data(spec: DatasetSpec | Mapping[str, Any], tokenizer: Any = None) -> PreferenceData:
    """Read ``spec`` into training (and, with test_size/eval_split, held-out) prompt/chosen/rejected pairs.

    Order of operations, so the result is reproducible from the spec alone: read the split
    → convert the format and drop unusable rows (counted) → with ``max_samples``, a seeded
    subset (kept in source order) → with ``test_size``, a seeded hold-out of whole prompts →
    render the prompts with ``tokenizer`` (only for the rows kept, since rendering costs
    more than reading). ``eval_split`` rows go through the same steps, capped at max_samples.
    """
    spec = parse_dataset_spec(spec, purpose="pairs")
    if spec.generate is not None:
        raise DataError(f"{spec.describe()}: generate: pairs are sampled from the base model by "
                        "peo_hub.selfpairs.sample_pairs, not read; call that instead")
    rows = _convert(_load_raw(spec, spec.split), spec)
    _report(spec, spec.split, rows)
    pool = _subset(len(rows), spec.max_samples, spec.seed)
    dropped = Counter(rows.dropped)
    rows_read = rows.read

    eval_ds = None
    train_idx = pool
    if spec.test_size is not None:
        n_test = spec.test_size if isinstance(spec.test_size, int) else max(1, round(len(pool) * spec.test_size))
        if n_test >= len(pool):
            raise DataError(
                f"{spec.describe()}: test_size {spec.test_size} holds out {n_test} of {len(pool)} pairs, leaving none to train on; "
                "lower test_size or raise max_samples"
            )
        held_idx, train_idx = _hold_out(rows, pool, n_test, spec.seed)
        if not train_idx:
            raise DataError(
                f"{spec.describe()}: test_size {spec.test_size} holds out every prompt of the {len(pool)} pairs, "
                "leaving none to train on; lower test_size or raise max_samples"
            )
        eval_ds = _to_dataset(rows, held_idx, tokenizer)
    elif spec.eval_split is not None:
        eval_rows = _convert(_load_raw(spec, spec.eval_split), spec)
        _report(spec, spec.eval_split, eval_rows)
        eval_ds = _to_dataset(eval_rows, _subset(len(eval_rows), spec.max_samples, spec.seed), tokenizer)
        dropped.update(eval_rows.dropped)
        rows_read += eval_rows.read

    train = _to_dataset(rows, train_idx, tokenizer)
    return PreferenceData(spec=spec, train=train, eval=eval_ds, rows_read=rows_read, dropped=dict(dropped))


def load_preference_dataset(spec: DatasetSpec | Mapping[str, Any], tokenizer: Any = None) -> "Dataset":
    """The training pairs of ``spec``: a Dataset with string columns prompt, chosen, rejected.

    With ``tokenizer`` the prompts are rendered with its chat template (see
    :func:`render_prompt`); held-out rows (test_size) are excluded. Use
    :func:`load_preference_data` for the held-out part and the drop counts.
    """
    return load_preference_data(spec, tokenizer).train


def load_prompts(
    spec: DatasetSpec | Mapping[str, Any] | Sequence[str], tokenizer: Any = None, where: str = "prompts"
) -> list[str]:
    """An evaluation prompt set: inline strings, or the prompts of a dataset spec.

    * a list of strings: used as given (deduplicated, order kept);
    * a dataset spec: its prompt column (for hh-rlhf, the dialogue up to the last
      ``Assistant:``; for an implicit conversational prompt, the shared turns), only the
      columns that give the prompt are required, so a file with just ``prompt`` works
      with format pairs. Deduplicated, then a seeded subset of ``max_samples``.
      With ``test_size`` or ``eval_split``, the prompts of exactly the held-out pairs of
      :func:`load_preference_data`, so evaluation never sees training prompts.

    Without ``tokenizer`` the prompts come back raw (a string prompt as is, message lists
    flattened): keep those for judges with their own input format and call
    :func:`render_prompt` for the policy. With ``tokenizer`` they are rendered.
    """
    if isinstance(spec, str):
        raise DataError(f"{where}: expected a list of prompt strings or a dataset spec, got the string {spec!r}; wrap it in a list")
    if isinstance(spec, Sequence):
        bad = [p for p in spec if not isinstance(p, str)]
        if bad:
            raise DataError(f"{where}: inline prompts must be strings, got {_short(bad[0])}; quote each prompt")
        prompts = _dedup(p for p in spec if p.strip())
        if not prompts:
            raise DataError(f"{where}: the inline prompt list is empty; add at least one prompt")
        return [render_prompt(tokenizer, p) for p in prompts]

    spec = parse_dataset_spec(spec, where, purpose="prompts")
    if spec.test_size is not None or spec.eval_split is not None:
        held = load_preference_data(spec, tokenizer).eval
        assert held is not None  # test_size/eval_split always give a hold-out
        return _dedup(list(held["prompt"]))

    raw = _load_raw(spec, spec.split)
    data, mapping = _read(raw, spec, "prompts")
    values = FORMATS[spec.format].prompts(data, mapping, spec)
    # Dedup on the raw form (message lists by their items), render only what is kept.
    unique: dict[Any, Any] = {}
    for value in values:
        if value is None or (isinstance(value, str) and not value.strip()) or value == []:
            continue
        key = value if isinstance(value, str) else tuple((m["role"], m["content"]) for m in value)
        unique.setdefault(key, value)
    kept = list(unique.values())
    if not kept:
        raise DataError(f"{where}: {spec.describe()} has no non-empty prompts; check format and split")
    kept = [kept[i] for i in _subset(len(kept), spec.max_samples, spec.seed)]
    return [render_prompt(tokenizer, value) for value in kept]


def _dedup(values: Any) -> list[str]:
    return list(dict.fromkeys(values))
