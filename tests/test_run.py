"""peo_hub.run: the pre-flight refuses what would fail later, before the first write; the run folder
is never shared by two recipes, survives a kill, and resumes to the same adapters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fakes import folder_digest
from peo_hub.bundle import adapter_complete
from peo_hub.cli import main

REPO = Path(__file__).resolve().parent.parent


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
