"""peo_hub.evaluate.sweep: every point of the family evaluated once, under its own label; baselines at the run's base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fakes import make_base
from hub_fixture import HubEnv
from peo_hub.recipe.schema import parse_recipe
from peo_hub.evaluate.sweep import family_points

REPO = Path(__file__).resolve().parents[2]


def _recipe(**sweep) -> dict:
    data = yaml.safe_load((REPO / "tests" / "recipes" / "toy-ci.yaml").read_text())
    data["sweep"].update(sweep)
    return data


def test_close_points_get_their_own_labels() -> None:
    points = family_points(parse_recipe(_recipe(alpha=[0, 0.5, 0.501], weights=3)))
    labels = [p.label() for _, p in points]
    assert len(points) == 1 + 3 * 3 and len(set(labels)) == len(labels)
    dense = family_points(parse_recipe(_recipe(alpha=[0], weights=201)))
    assert len({p.label() for _, p in dense}) == len(dense) == 202


def test_the_soup_baseline_adds_alpha_zero() -> None:
    with_soup = family_points(parse_recipe(_recipe(alpha=[0.5], baselines=["soup"])))
    without = family_points(parse_recipe(_recipe(alpha=[0.5], baselines=[])))
    assert {m for m, _ in with_soup} == {"base", "soup", "peo"}
    assert {m for m, _ in without} == {"base", "peo"}


@pytest.mark.slow
def test_morl_baselines_train_and_evaluate_at_the_pinned_base_revision(hub: HubEnv, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       peo_cache: Path) -> None:
    """main holds a wider model than the pinned revision v1: anything loaded from main would not fit."""
    from huggingface_hub import HfApi

    from peo_hub.bundle.front import load_front
    from peo_hub.recipe.pipeline import run_recipe

    api = HfApi(token=hub.alice_token)
    repo = "alice/tiny-base"
    api.create_repo(repo)
    make_base(tmp_path / "main", hidden=48)
    make_base(tmp_path / "v1", hidden=32)
    api.upload_folder(repo_id=repo, folder_path=str(tmp_path / "main"))
    api.create_branch(repo, branch="v1")
    api.upload_folder(repo_id=repo, folder_path=str(tmp_path / "v1"), revision="v1")

    data = _recipe(weights=3, alpha=[0], baselines=["soup", "morl"])
    data.update(base_model=repo, base_model_revision="v1")
    data["train"]["dpo"].update(max_steps=2, per_device_train_batch_size=8)
    data["evaluate"].update(samples=1, max_new_tokens=6)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("HF_TOKEN", hub.alice_token)
    out = run_recipe(path, output=tmp_path / "out")

    morl = sorted((out / "baselines" / "morl").iterdir())
    assert len(morl) == 1
    for folder in [out / "adapters" / "helpful", out / "adapters" / "harmless", *morl]:
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["revision"] == "v1", folder
        from safetensors import safe_open

        with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as handle:
            key = next(k for k in handle.keys() if k.endswith("q_proj.lora_A.weight"))
            assert handle.get_slice(key).get_shape()[1] == 32, f"{folder} was trained on another revision"
    assert any(p.method == "morl" for p in load_front(out).points)


BATCH_EVAL = {
    "aspects": {"helpful": {"judge": {"type": "toy_helpful"}}, "harmless": {"judge": {"type": "toy_harmless"}}},
    "sweep": {"weights": 3, "alpha": [0, 0.5, 1.0]},
    "evaluate": {"prompts": ["how do i bake bread ?", "pick lock ?", "how do i fix bike", "mix flour , then bake"],
                 "samples": 3, "max_new_tokens": 6, "temperature": 1.0, "top_p": 0.9, "batch_size": 10,
                 "bootstrap": 100},
}


def _evaluated(tmp_path: Path, name: str, batched: bool, monkeypatch: pytest.MonkeyPatch,
               bundle: Path | None = None, batch_size: int | None = None) -> Path:
    import peo_hub.evaluate.sweep
    from fakes import make_fake_bundle
    from peo_hub.cli import main

    bundle = bundle or make_fake_bundle(tmp_path / name)
    recipe = tmp_path / "eval.yaml"
    spec = {**BATCH_EVAL, "evaluate": {**BATCH_EVAL["evaluate"], **({"batch_size": batch_size} if batch_size else {})}}
    recipe.write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(peo_hub.evaluate.sweep, "BATCH_POINTS", batched)
    assert main(["evaluate", str(bundle), "--recipe", str(recipe)]) == 0
    return bundle


def strip_hash(records: dict[str, dict]) -> dict[str, dict]:
    return {name: {k: v for k, v in r.items() if k != "recipe_hash"} for name, r in records.items()}


def _records(bundle: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((bundle / "evaluations").glob("*.json"))}


def test_batched_sweep_equals_point_by_point_and_resumes_per_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  peo_cache: Path) -> None:
    """Rows = points x prompts x samples in one pass (batches mixing points) give every point the
    record it gets alone: the same sampled replies (per-row seeds), scores, guard and front."""
    alone = _records(_evaluated(tmp_path, "alone", False, monkeypatch))
    batched_bundle = _evaluated(tmp_path, "batched", True, monkeypatch)
    batched = _records(batched_bundle)
    family = [n for n in alone if not n.startswith("search")]
    assert len(family) == 1 + 3 * 3 and alone.keys() == batched.keys()
    assert alone == batched
    replies = {n: json.dumps(r["samples"]) for n, r in alone.items() if n in family}
    assert len(set(replies.values())) > len(family) // 2  # the points really reply differently
    front = json.loads((batched_bundle / "front.json").read_text())
    assert front == json.loads((tmp_path / "alone" / "front.json").read_text())
    # Every row in one batch of mixed prompt lengths, or 10 rows at a time: the same records.
    one_batch = _records(_evaluated(tmp_path, "one-batch", True, monkeypatch, batch_size=997))
    assert strip_hash(one_batch) == strip_hash(batched)  # (the recipe, and so its hash, differ)

    # The guard's base log-probs are spent on the selection prompts only (all it reads).
    from peo_hub.core.stats import split_prompts

    selection, confirmation = split_prompts(len(BATCH_EVAL["evaluate"]["prompts"]), 0.5, 0)
    base = batched[family[0]]["guard"]["base_logprob"]
    assert all(v is None for i in confirmation for v in base[i])
    assert all(isinstance(v, float) for i in selection for v in base[i])

    # Resume: three points lost, one kept record marked; only the lost ones are generated again.
    for name in family[1:4]:
        (batched_bundle / "evaluations" / name).unlink()
    kept = batched_bundle / "evaluations" / family[5]
    kept.write_text(json.dumps({**batched[family[5]], "marker": "kept"}))
    _evaluated(tmp_path, "batched", True, monkeypatch, bundle=batched_bundle)
    resumed = _records(batched_bundle)
    assert resumed[family[5]].pop("marker") == "kept"
    assert resumed == batched


@pytest.mark.slow
def test_accelerate_launch_shards_the_sweep_over_two_cpu_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   peo_cache: Path) -> None:
    """Two processes under `accelerate launch --cpu`: each evaluates its share, process 0 writes the
    front, and every record and the front equal a one-process evaluation of the same bundle."""
    import os
    import shutil
    import subprocess
    import sys

    from fakes import make_fake_bundle

    alone = _evaluated(tmp_path, "alone", True, monkeypatch)
    sharded = make_fake_bundle(tmp_path / "sharded")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PEO_HUB_CACHE": str(peo_cache)}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    result = subprocess.run([accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                             "--mixed_precision", "no", "--dynamo_backend", "no",
                             "-m", "peo_hub.cli", "evaluate", str(sharded), "--recipe", str(tmp_path / "eval.yaml")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    mine, theirs = _records(sharded), _records(alone)
    assert mine.keys() == theirs.keys() and len(mine) == 1 + 3 * 3  # the base and the 3 x 3 grid
    for name in mine:  # the base model's log-probs of the replies differ in float rounding (1 thread vs 2)
        ours, ref = mine[name].pop("guard"), theirs[name].pop("guard")
        flat = [[x for row in g.pop("base_logprob") for x in row] for g in (ours, ref)]
        assert flat[0] == pytest.approx(flat[1], abs=1e-4)
        assert ours == ref and mine[name] == theirs[name], name
    front, ref_front = (json.loads((b / "front.json").read_text()) for b in (sharded, alone))
    assert [p["metrics"] for p in front["points"]] == [p["metrics"] for p in ref_front["points"]]
