"""peo_hub.recipe.progress: a run shows numbered tasks a person can follow; library chatter goes to logs/run.log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from peo_hub.bundle.manifest import RUN_LOG
from peo_hub.recipe.pipeline import run_recipe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO / "tests" / "recipes" / "toy-ci.yaml").read_text())
    data["train"]["dpo"]["max_steps"] = 4
    data["train"]["dpo"]["logging_steps"] = 1
    data["sweep"] = {"weights": 2, "alpha": [0.0], "baselines": ["soup"]}
    data["evaluate"]["samples"] = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_run_shows_numbered_tasks_and_logs_the_libraries_to_a_file(tiny_recipe: Path, tmp_path: Path,
                                                                    capfd: pytest.CaptureFixture[str],
                                                                    peo_cache: Path) -> None:
    import datasets

    root = logging.getLogger()
    handlers_before, bars_before = root.handlers[:], datasets.is_progress_bar_enabled()
    out = run_recipe(tiny_recipe, output=tmp_path / "run")
    captured = capfd.readouterr()
    screen = captured.out + captured.err

    assert "[1/2] train helpful" in screen and "[2/2] train harmless" in screen
    assert "4/4 steps" in screen  # the task bar counts optimizer steps of the total
    assert "'loss'" not in screen and "rewards/margins" not in screen  # TRL's metric dicts are not on screen

    log = (out / RUN_LOG).read_text(encoding="utf-8")
    for step in range(1, 5):
        assert f"[1/2] train helpful step {step}/4" in log
    assert "'loss'" in log and "rewards/margins" in log  # ... they are in the log file

    # The caller's logging and the libraries' bars are as they were.
    assert root.handlers == handlers_before and datasets.is_progress_bar_enabled() == bars_before
