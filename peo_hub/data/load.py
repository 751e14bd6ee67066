"""Preference data: Hub ids, local files and the embedded world -> prompt/chosen/rejected.

Every aspect of a PEO recipe names its preference data with a :class:`DatasetSpec`. This
module turns any supported source and format into one shape, a ``datasets.Dataset`` with
three string columns, so that the DPO trainer, the evaluation and the Space never see a
dataset's own layout:

``prompt``
    what the model is asked; rendered with the tokenizer's chat template when one is
    given (:func:`peo_hub.data.chat.render_prompt`), so training, evaluation and the Space agree.
``chosen`` / ``rejected``
    plain completions (strings). TRL appends the EOS token itself.

Formats (``DatasetSpec.format``) are the registry in :mod:`peo_hub.data.formats`: ``pairs``,
``pku-saferlhf``, ``hh-rlhf``, ``conversational`` and ``columns``.

Rows that cannot give a usable pair (missing text, identical chosen and rejected, a
rejected dialogue that does not share the chosen one's prompt) are dropped and counted;
the counts are logged and kept in :attr:`PreferenceData.dropped`. Problems that mean the
spec or the data is wrong (missing columns, labels that are not 0/1, a missing file) raise
:class:`~peo_hub.utils.errors.DataError` with one line naming the problem and the fix.

``datasets`` is imported lazily so that validating a recipe stays fast.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from peo_hub.data.chat import _short, has_chat_template, render_prompt
from peo_hub.data.config import (
    EMBEDDED_PREFIX,
    SMOLLM2_PROMPTS,
    DatasetSpec,
    _split_name,
    file_builder,
    parse_dataset_spec,
)
from peo_hub.data.formats import FORMATS, Purpose, Rows
from peo_hub.utils.errors import DataError, first_line
from peo_hub.utils.ids import is_repo_id

if TYPE_CHECKING:
    from datasets import Dataset
__all__ = ["PreferenceData", "load_preference_data", "load_preference_dataset", "load_prompts", "load_rows",
           "pairs_dataset"]

logger = logging.getLogger(__name__)



def _reason(exc: BaseException) -> str:
    """The most specific one-line reason: ``datasets`` wraps parse errors in a generic one."""
    return first_line(exc, innermost=True).rstrip(".")

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
                f"cannot read {path} as {builder}: {_reason(exc)}; check that the file is valid {builder} "
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
        raise DataError(f"cannot read saved dataset {path}: {_reason(exc)}; re-save it with save_to_disk") from None
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
            f"cannot reach the Hub for {where} and it is not in the local cache ({_reason(exc)}); "
            "connect and unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE, or download it once, or use a local file"
        ) from None
    except ValueError as exc:  # unknown split, unknown config name, bad data_dir
        text = _reason(exc)
        if "split" in text.lower():
            fix = "set split (or eval_split) to one of the splits listed"
        elif "config" in text.lower() or "name" in text.lower():
            fix = "set subset (the config name) to one of those listed"
        else:
            fix = "check subset, data_dir and split"
        raise DataError(f"{where}: {text}; {fix}") from None
    except FileNotFoundError as exc:
        raise DataError(f"{where}: {_reason(exc)}; check data_dir and split") from None
    except Exception as exc:  # a data file `datasets` cannot parse (pyarrow, json, csv errors)
        raise DataError(f"cannot read {where}: {_reason(exc)}; check that every data file in it is valid "
                        "parquet, jsonl, json or csv") from None


def _load_embedded(spec: DatasetSpec, split: str) -> "Dataset":
    """Pairs from the offline toy world (:func:`peo_hub.world.toy.embedded_pairs`)."""
    import datasets

    from peo_hub.utils.errors import PEOError
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
            f"embedded dataset {name!r} (split {split!r}, label {spec.label!r}): {_reason(exc)}; "
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
                        "peo_hub.train.selfpairs.sample_pairs, not read; call that instead")
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
