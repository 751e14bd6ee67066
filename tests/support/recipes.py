"""Recipes for tests: tests/recipes/toy-ci.yaml with some fields changed, written where a test wants it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TOY_CI = Path(__file__).resolve().parents[1] / "recipes" / "toy-ci.yaml"


def toy_recipe(folder: Path, name: str = "r.yaml", **changes: Any) -> Path:
    """toy-ci.yaml with ``changes`` applied (dotted field paths, e.g. ``**{"train.dpo.max_steps": 2}``), saved as
    ``folder/name``."""
    data = yaml.safe_load(TOY_CI.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
