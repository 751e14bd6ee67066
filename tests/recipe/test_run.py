"""peo_hub.recipe.folder: the pre-flight refuses what would fail later, before the first write; the run folder
is never shared by two recipes, survives a kill, and resumes to the same adapters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fakes import folder_digest
from peo_hub.bundle.manifest import adapter_complete
from peo_hub.cli import main
from peo_hub.utils.errors import RecipeError
from peo_hub.recipe.load import load_recipe
from peo_hub.recipe.folder import RunFolder

REPO = Path(__file__).resolve().parents[2]


def _tiny_recipe(tmp_path: Path, steps: int) -> Path:
    data = yaml.safe_load((REPO / "tests" / "recipes" / "toy-ci.yaml").read_text())
    data["train"]["dpo"]["max_steps"] = steps
    data["sweep"] = {"weights": 2, "alpha": [0.0], "baselines": ["soup"]}
    data["evaluate"]["samples"] = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_killed_run_resumes_without_half_written_adapters(tmp_path: Path, peo_cache: Path) -> None:
    recipe = _tiny_recipe(tmp_path, steps=100)
    out = tmp_path / "run"
    env = {**os.environ, "PEO_HUB_CACHE": str(peo_cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "peo_hub.cli", "recipe", "run", str(recipe), "--output", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while not adapter_complete(out / "adapters" / "helpful"):
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.time() < deadline
            time.sleep(0.05)
        # now loading or training the second aspect
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    assert not (out / "adapters" / "harmless").exists(), "a killed training must leave no adapter folder"
    assert not (out / "peo_config.json").exists()
    helpful_before = folder_digest(out / "adapters" / "helpful")

    # Without --resume the half-done folder is protected.
    assert main(["recipe", "run", str(recipe), "--output", str(out)]) == 2
    assert main(["recipe", "run", str(recipe), "--output", str(out), "--resume"]) == 0
    assert folder_digest(out / "adapters" / "helpful") == helpful_before, "finished aspects are kept as they were"
    assert adapter_complete(out / "adapters" / "harmless")
    assert (out / "front.json").is_file() and (out / "peo_config.json").is_file()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]

    # A different recipe in the same folder is refused, naming what changed.
    changed = _tiny_recipe(tmp_path, steps=101)
    assert main(["recipe", "run", str(changed), "--output", str(out), "--resume"]) == 2


@pytest.mark.parametrize("base, needle", [
    ("nobody/nothing", "cannot load base_model 'nobody/nothing'"),
    ("/nonexistent/model-folder", "base_model folder /nonexistent/model-folder does not exist"),
])
def test_unavailable_base_fails_before_writing_anything(base: str, needle: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((REPO / "tests" / "recipes" / "toy-ci.yaml").read_text())
    data["base_model"] = base
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    assert main(["recipe", "run", str(recipe), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not out.exists()


def test_bad_dataset_fails_before_writing_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   peo_cache: Path) -> None:
    data = yaml.safe_load((REPO / "tests" / "recipes" / "toy-ci.yaml").read_text())
    data["aspects"]["harmless"]["dataset"] = {"source": str(tmp_path / "missing.jsonl")}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    assert main(["recipe", "run", str(recipe), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and err.count("\n") == 1, err
    assert not out.exists(), "a recipe whose data cannot be read must leave no folder behind"


# --------------------------------------------------------------------------- identity and pre-flight


def _recipe_file(tmp_path: Path, name: str = "r.yaml", **changes) -> Path:
    data = yaml.safe_load((REPO / "tests" / "recipes" / "toy-ci.yaml").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _fake_finished_adapter(folder: RunFolder, aspect: str) -> Path:
    """A finished adapter of this run, as train_one leaves it (files plus the recipe's hash)."""
    target = folder.adapter_dir(aspect)
    target.mkdir(parents=True)
    (target / "adapter_config.json").write_text("{}")
    (target / "adapter_model.safetensors").write_bytes(b"x")
    (target / "training_info.json").write_text(json.dumps({"recipe_hash": folder.fingerprint_hash}))
    return target


def test_resume_without_the_run_record_still_refuses_another_recipe(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = RunFolder(out, load_recipe(_recipe_file(tmp_path, **{"train.lora.r": 8})))
    first.prepare(resume=False)
    _fake_finished_adapter(first, "helpful")
    (out / "peo_run.json").unlink()  # never pushed, lost in copies
    other = RunFolder(out, load_recipe(_recipe_file(tmp_path, "r4.yaml", **{"train.lora.r": 4})))
    with pytest.raises(RecipeError, match="adapters/helpful was made by a different recipe"):
        other.prepare(resume=True)
    same = RunFolder(out, load_recipe(_recipe_file(tmp_path, "same.yaml", **{"train.lora.r": 8})))
    same.prepare(resume=True)  # the adapter's own record identifies the recipe
    assert (out / "peo_run.json").is_file()


def test_unstamped_artefacts_without_a_record_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    folder = RunFolder(out, load_recipe(_recipe_file(tmp_path)))
    folder.prepare(resume=False)
    target = _fake_finished_adapter(folder, "helpful")
    (target / "training_info.json").write_text("{}")  # e.g. an adapter copied in by hand
    (out / "peo_run.json").unlink()
    with pytest.raises(RecipeError, match="cannot tell which recipe made"):
        RunFolder(out, load_recipe(_recipe_file(tmp_path))).prepare(resume=True)


def test_a_corrupt_run_record_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    folder = RunFolder(out, load_recipe(_recipe_file(tmp_path)))
    folder.prepare(resume=False)
    _fake_finished_adapter(folder, "helpful")
    (out / "peo_run.json").write_text("{broken")
    assert main(["recipe", "run", str(_recipe_file(tmp_path)), "--output", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "peo_run.json" in err and err.count("\n") == 1


def test_a_folder_without_artefacts_takes_a_fixed_recipe(tmp_path: Path) -> None:
    out = tmp_path / "run"
    RunFolder(out, load_recipe(_recipe_file(tmp_path, **{"train.dpo.learning_rate": 1.0}))).prepare(resume=False)
    (out / "adapters").mkdir()  # a run stopped during its first aspect
    fixed = RunFolder(out, load_recipe(_recipe_file(tmp_path, "fixed.yaml")))
    with pytest.raises(RecipeError, match="pass --resume"):
        fixed.prepare(resume=False)
    fixed.prepare(resume=True)
    assert json.loads((out / "peo_run.json").read_text())["recipe_hash"] == fixed.fingerprint_hash


def test_a_non_run_folder_is_never_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["recipe", "run", str(_recipe_file(tmp_path)), "--output", str(out), "--resume"]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("output, needle", [
    ("FILE", "exists and is a file"),
    ("FILE/under", "is a file, not a folder"),
    ("/proc/peo-hub-run", "not writable"),
    ("n" * 300, "longer than 255 bytes"),
])
def test_unwritable_outputs_fail_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 output: str, needle: str, peo_cache: Path) -> None:
    (tmp_path / "FILE").write_text("x")
    target = output.replace("FILE", str(tmp_path / "FILE")) if "FILE" in output else (
        output if output.startswith("/") else str(tmp_path / output))
    assert main(["recipe", "run", str(_recipe_file(tmp_path)), "--output", target]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def _broken_base(tmp_path: Path, damage: str) -> Path:
    import shutil

    from peo_hub.world.base import ensure_embedded_base

    base = tmp_path / "base-model"
    shutil.copytree(ensure_embedded_base("embedded:toy"), base)
    weights = base / "model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    return base


@pytest.mark.parametrize("damage, needle", [("missing", "has no weights"), ("truncated", "truncated or corrupt")])
def test_a_base_folder_with_broken_weights_fails_in_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            damage: str, needle: str, peo_cache: Path) -> None:
    recipe = _recipe_file(tmp_path, base_model=str(_broken_base(tmp_path, damage)))
    for verb in (["recipe", "validate", str(recipe)], ["recipe", "run", str(recipe), "--output", str(tmp_path / "out")]):
        assert main(verb) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, needle", [
    ({"train.lora.target_modules": ["q_proj", "qkv"]}, "'qkv' matches no module of the base model; its linear layers "
                                                       "are named"),
    ({"aspects.helpful.judge": {"type": "reward_model", "model": "/nonexistent/judge"}},
     "aspects.helpful.judge.model: cannot load '/nonexistent/judge'"),
    ({"train.dpo.lr_scheduler_type": "sometimes"}, "train.dpo: TRL refuses these settings"),
])
def test_the_preflight_catches_what_needs_the_base_or_trl(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         change: dict, needle: str, peo_cache: Path) -> None:
    recipe = _recipe_file(tmp_path, **change)
    out = tmp_path / "out"
    assert main(["recipe", "validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert main(["recipe", "run", str(recipe), "--output", str(out)]) == 2
    assert not out.exists(), "nothing is written before the pre-flight passes"
