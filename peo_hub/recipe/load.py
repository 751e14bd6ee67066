"""Reading a recipe file: YAML with duplicate keys refused, command-line field overrides
(``--set train.dpo.max_steps=20``) applied, validated into a :class:`~peo_hub.recipe.schema.Recipe`;
and the evaluation-only recipes of ``peo-hub evaluate`` (a file, command-line judges and prompts, or both).

Why overrides are applied to the file's data before validation: an overridden field is then
checked exactly like one written in the file (the same one-line errors naming the field
path), and the recipe a run records (``peo_run.json``, the bundle's manifest) is the one
that ran, overrides included.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import ValidationError

from peo_hub.recipe.schema import (
    JUDGE_ARG_HELP,
    EvaluationRecipe,
    Recipe,
    _evaluation_part,
    _field_names,
    _is_training_recipe,
    judge_from_arg,
    parse_recipe,
)
from peo_hub.utils.errors import RecipeError, first_line, validation_message


def evaluation_recipe(path: str | os.PathLike[str] | None = None, judges: Sequence[str] = (),
                      prompts: str | None = None) -> EvaluationRecipe:
    """The evaluation of ``peo-hub evaluate``: a recipe file, judges and prompts given on the command line, or both.

    The file may be an evaluation recipe (:class:`EvaluationRecipe`) or a whole training
    recipe, whose judges, ``sweep`` and ``evaluate`` sections are used (its MORL baseline is
    left out: there is no data to train it). ``judges`` (``ASPECT=...``) replace or add an
    aspect's judge; ``prompts`` (a dataset source with a prompt column) replaces the prompts.
    Every problem is one :class:`RecipeError` line naming the field.
    """
    where = Path(path) if path is not None else Path("<command line>")
    data: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(where)
        if raw is None or not isinstance(raw, dict):
            raise RecipeError(f"{where} must be a YAML mapping of fields (aspects, evaluate, ...); start from "
                              "recipes/toy.yaml")
        data = _evaluation_part(parse_recipe(raw, where)) if _is_training_recipe(raw) else dict(raw)
        data.setdefault("name", where.stem)
    aspects = dict(data.get("aspects") or {})
    for text in judges:
        aspect, judge = judge_from_arg(text)
        aspects[aspect] = {"judge": judge}
    if aspects:
        data["aspects"] = aspects
    if prompts is not None:
        data["evaluate"] = {**dict(data.get("evaluate") or {}), "prompts": {"source": prompts}}
    if path is None and "evaluate" not in data:
        raise RecipeError("give --recipe RECIPE.yaml, or --prompts FILE with a --judge for every aspect")
    try:
        return EvaluationRecipe.model_validate(data)
    except ValidationError as exc:
        message = validation_message(exc, field_names=_field_names())
        hint = " (with --judge: " + JUDGE_ARG_HELP + ")" if "aspects" in message and judges else ""
        raise RecipeError(f"{where}: {message}{hint}") from None


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says it is an error;
    PyYAML silently keeps the last, so a second ``train:`` would quietly replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(f"key {key!r} appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Recipe:
    """Read and validate a recipe file; every problem is one :class:`RecipeError` line.

    ``overrides`` are ``FIELD.PATH=VALUE`` strings (``--set``), applied in order on top of
    the file (see :func:`apply_overrides`); an error they cause names them.
    """
    data = _read_yaml(Path(path))
    if not overrides:
        return parse_recipe(data, path)
    if not isinstance(data, dict):
        return parse_recipe(data, path)  # the file's own error (empty, not a mapping) comes first
    changed = apply_overrides(data, overrides)
    try:
        return parse_recipe(changed, path)
    except RecipeError as exc:
        raise RecipeError(f"{exc} (with --set {' --set '.join(overrides)})") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=VALUE`` as (``["a", "b", "c"]``, the value read as YAML: ``20``, ``[0, 0.5]``, ``true``, ``null``)."""
    usage = "write --set FIELD.PATH=VALUE, e.g. --set train.dpo.max_steps=20 or --set sweep.alpha=[0,0.5]"
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"--set {text}: {usage}")
    parts = key.split(".")
    if any(not part.strip() for part in parts):
        raise RecipeError(f"--set {text}: {key!r} has an empty part; {usage}")
    if not raw.strip():
        raise RecipeError(f"--set {text}: no value after '='; give one (null to unset the field)")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise RecipeError(f"--set {text}: the value is not valid YAML ({problem}); quote it, e.g. "
                          f"--set '{key}=\"{raw}\"'") from None
    return [part.strip() for part in parts], value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of a recipe's data with each ``FIELD.PATH=VALUE`` set (sections created as needed).

    Setting a field inside something that is not a section (``train.dpo.max_steps.x=1``) is
    one :class:`RecipeError` line; unknown fields are left for validation, which names them.
    """
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise RecipeError(f"--set {text}: {where} is a value ({child!r}), not a section with fields; "
                                  f"set {where} itself")
            node = child
        node[parts[-1]] = value
    return result


def _read_yaml(path: Path) -> Any:
    """A recipe file's YAML, or one :class:`RecipeError` line (missing, a folder, unreadable, bad YAML)."""
    if not path.exists():
        raise RecipeError(f"recipe {path} does not exist; check the path (e.g. recipes/toy.yaml)")
    if path.is_dir():
        raise RecipeError(f"recipe {path} is a folder; give the YAML file inside it")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.__class__.__name__}: {exc}; check permissions and encoding") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise RecipeError(f"{path}: {exc}; keep one of them") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise RecipeError(f"{path} is not valid YAML{where}: {problem}; fix the syntax") from None
    return data
