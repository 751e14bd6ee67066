"""Reading a recipe file: YAML with duplicate keys refused, validated into a :class:`~peo_hub.recipe.schema.Recipe`,
and the evaluation-only recipes of ``peo-hub evaluate`` (a file, command-line judges and prompts, or both).
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


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe file; every problem is one :class:`RecipeError` line."""
    return parse_recipe(_read_yaml(Path(path)), path)


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
