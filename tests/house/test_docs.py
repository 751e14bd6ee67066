"""The README documents what the code accepts: every recipe field, every CLI verb."""

from __future__ import annotations

from pathlib import Path

import pytest

from peo_hub.cli import build_parser
from peo_hub.data.config import DatasetSpec
from peo_hub.judges.registry import JudgeSpec
from peo_hub.recipe.schema import AspectSpec, HubSpec, Recipe
from peo_hub.train.config import DPOSpec, LoraSpec, ModelSpec, TrainSpec
from peo_hub.evaluate.config import EvaluateSpec, SweepSpec, VllmSpec

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
MODELS = [Recipe, AspectSpec, JudgeSpec, TrainSpec, LoraSpec, DPOSpec, ModelSpec, SweepSpec, EvaluateSpec, VllmSpec,
          HubSpec, DatasetSpec]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_recipe_field_is_documented(model: type) -> None:
    missing = [name for name in model.model_fields if f"`{name}`" not in README]
    assert not missing, f"{model.__name__} fields missing from README's recipe reference: {missing}"


def test_recipe_reference_is_generated_from_the_schema() -> None:
    """README's recipe reference equals what docs/recipe_reference.py renders from the schema now."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "docs" / "recipe_reference.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_cli_verb_is_documented() -> None:
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for verb in verbs:
        assert f"peo-hub {verb}" in README, verb


def test_quick_start_commands_come_first() -> None:
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "peo-hub recipe run recipes/toy.yaml" in first_block
    assert "pytest" in first_block
