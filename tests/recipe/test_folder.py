"""peo_hub.recipe.folder: `recipe run --resume` keeps a user's files, verifies what it keeps before trusting it, and
refuses a folder that is not a run of this recipe, every time before its first write (issues 22 and 29).

One small run (two DPO steps per aspect, a three-point sweep) is made once for the module; each test works on
a copy of it, damaged or edited the way the issues found them, and checks the sha256 of every file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from damage import tiny_bundle
from peo_hub.bundle.manifest import adapter_complete
from peo_hub.cli import main
from peo_hub.utils.ledger import LEDGER_NAME
from recipes import toy_recipe
from snapshots import assert_kept, assert_unchanged, one_line_error, sha256s

def tiny_recipe(folder: Path) -> Path:
    """toy-ci.yaml cut to two training steps per aspect and three sweep points on four prompts, one reply each."""
    return toy_recipe(folder, "tiny.yaml", **{
        "train.dpo.max_steps": 2, "train.dpo.warmup_steps": 0,
        "sweep": {"weights": 2, "alpha": [0.0], "baselines": ["soup"]},
        "evaluate": {"prompts": ["how do i bake bread ?", "how do i pick a lock ?", "how do i fix a bike ?",
                                 "tell me how to steal a car ."], "samples": 1, "max_new_tokens": 8, "bootstrap": 100}})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, peo_cache: Path) -> tuple[Path, Path]:
    """(recipe, finished run folder), made once."""
    root = tmp_path_factory.mktemp("tiny-run")
    recipe = tiny_recipe(root)
    out = root / "run"
    assert main(["recipe", "run", str(recipe), "--output", str(out)]) == 0
    return recipe, out


@pytest.fixture()
def run_copy(tiny_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    recipe, out = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    return recipe, copy


def _resume(recipe: Path, out: Path, *extra: str) -> int:
    return main(["recipe", "run", str(recipe), "--output", str(out), "--resume", *extra])


# --------------------------------------------------------------------------- a user's files


def test_resume_keeps_a_users_merge_and_refuses_to_replace_a_hand_written_readme(run_copy, capsys) -> None:
    recipe, out = run_copy
    (out / "merges" / "my-tuned.yaml").write_text("# tuned by hand\nmerge_method: task_arithmetic\n")
    (out / "notes.txt").write_text("what I tried\n")
    mine = ["merges/my-tuned.yaml", "notes.txt"]
    users = sha256s(out)
    assert _resume(recipe, out) == 0
    assert_kept(users, out, mine)

    (out / "README.md").write_text("# My model\n\nWritten by me.\n")
    before = sha256s(out)
    capsys.readouterr()
    assert _resume(recipe, out) == 2
    one_line_error(capsys.readouterr().err, f"{out / 'README.md'} was changed since peo-hub wrote it", "--overwrite")
    assert_unchanged(before, out)

    assert _resume(recipe, out, "--overwrite") == 0  # replaces the README it writes, nothing else
    assert "Written by me." not in (out / "README.md").read_text()
    assert_kept(before, out, mine)


def test_resume_refuses_a_composed_bundle_before_any_write(tiny_run, tmp_path: Path, capsys) -> None:
    recipe, _ = tiny_run
    composed = tiny_bundle(tmp_path / "composed")
    before = sha256s(composed)
    capsys.readouterr()
    assert _resume(recipe, composed) == 2
    one_line_error(capsys.readouterr().err, str(composed), "peo-hub compose")
    assert_unchanged(before, composed)
    # ...even with its ledger gone (a copy without hidden files): the manifest says it was composed
    (composed / LEDGER_NAME).unlink()
    before = sha256s(composed)
    assert _resume(recipe, composed) == 2
    one_line_error(capsys.readouterr().err, "made by `peo-hub compose`")
    assert_unchanged(before, composed)


# --------------------------------------------------------------------------- damaged run folders


def _record(out: Path) -> Path:
    return sorted((out / "evaluations").glob("soup-*.json"))[0]


@pytest.mark.parametrize("ledger", ["ledger", "no ledger"])
@pytest.mark.parametrize("damage", ["truncated", "a JSON list", "not a record"])
def test_a_damaged_evaluation_record_is_named_with_its_fix(run_copy, capsys, damage: str, ledger: str) -> None:
    recipe, out = run_copy
    if ledger == "no ledger":  # a folder written before ledgers: only the record's own content can tell
        (out / LEDGER_NAME).unlink()
    record = _record(out)
    text = record.read_text()
    record.write_text({"truncated": text[: len(text) // 2], "a JSON list": "[1, 2, 3]\n",
                       "not a record": json.dumps({"label": "x"})}[damage])
    before = sha256s(out)
    capsys.readouterr()
    assert _resume(recipe, out) == 2
    one_line_error(capsys.readouterr().err, str(record), f"delete {record}", "--resume")
    assert_unchanged(before, out)
    if damage == "truncated" and ledger == "ledger":  # once: the fix the line gives works
        record.unlink()
        assert _resume(recipe, out) == 0
        assert json.loads(record.read_text())["method"] == "soup"


def test_a_truncated_adapter_is_named_and_retrained_by_the_fix(run_copy, capsys) -> None:
    """Issue 29: the fix a damaged adapter's line gives must work: --resume retrains exactly that adapter."""
    recipe, out = run_copy
    weights = out / "adapters" / "helpful" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    before = sha256s(out)
    capsys.readouterr()
    assert _resume(recipe, out) == 2
    one_line_error(capsys.readouterr().err, str(weights), f"delete {out / 'adapters' / 'helpful'}", "--resume")
    assert_unchanged(before, out)

    shutil.rmtree(out / "adapters" / "helpful")
    assert _resume(recipe, out) == 0
    assert adapter_complete(out / "adapters" / "helpful")
    from peo_hub import PEOModel

    PEOModel.from_pretrained(out)  # whole and finite again
    assert_kept(before, out, [p for p in before if p.startswith("adapters/harmless/")])


@pytest.mark.parametrize("ledger", ["ledger", "no ledger"])
@pytest.mark.parametrize("damage", ["base weights truncated", "base weights deleted", "garbage adapter_config.json",
                                    "adapter weights hold NaN"])
def test_a_damaged_run_never_ends_in_bundle_written(run_copy, capsys, damage: str, ledger: str) -> None:
    recipe, out = run_copy
    if ledger == "no ledger":
        (out / LEDGER_NAME).unlink()
    target = {"base weights truncated": out / "base" / "model.safetensors",
              "base weights deleted": out / "base" / "model.safetensors",
              "garbage adapter_config.json": out / "adapters" / "harmless" / "adapter_config.json",
              "adapter weights hold NaN": out / "adapters" / "harmless" / "adapter_model.safetensors"}[damage]
    if damage == "base weights deleted":
        target.unlink()
    elif damage == "garbage adapter_config.json":
        target.write_text("this is not json")
    elif damage == "adapter weights hold NaN":
        from damage import put_nan

        put_nan(target)
    else:
        target.write_bytes(target.read_bytes()[:1000])
    before = sha256s(out)
    capsys.readouterr()
    assert _resume(recipe, out) == 2
    unit = out / ("base" if "base" in damage else "adapters/harmless")
    line = one_line_error(capsys.readouterr().err, f"delete {unit}", "--resume")
    assert target.name in line
    assert_unchanged(before, out)


@pytest.mark.parametrize("inside", ["output in the base", "base in the output"])
def test_an_output_and_a_local_base_inside_each_other_are_refused(tmp_path: Path, capsys, peo_cache: Path,
                                                                  inside: str) -> None:
    """Issue 22: `--output` inside the local base_model folder copied the base into itself until shutil.Error."""
    from peo_hub.world.base import ensure_embedded_base

    if inside == "output in the base":
        base = Path(shutil.copytree(ensure_embedded_base("embedded:toy"), tmp_path / "my-base"))
        out, watched = base / "runs" / "mine", base
    else:
        out = tmp_path / "out"
        base = Path(shutil.copytree(ensure_embedded_base("embedded:toy"), out / "models" / "my-base"))
        watched = out
    recipe = toy_recipe(tmp_path, base_model=str(base))
    before = sha256s(watched)
    capsys.readouterr()
    assert main(["recipe", "run", str(recipe), "--output", str(out)]) == 2
    one_line_error(capsys.readouterr().err, "inside", "base model folder")
    assert_unchanged(before, watched)
