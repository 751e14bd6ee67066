"""Training seeds as replicates: ``seeds`` / ``--seeds`` validated, one replicate per seed in the run folder,
a killed multi-seed run resumed per seed to the same front, and front.json reproduced byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fakes import folder_digest
from peo_hub.bundle.front import load_front
from peo_hub.bundle.manifest import adapter_complete
from peo_hub.cli import main
from peo_hub.recipe.folder import fingerprint_hash, recipe_fingerprint, without_later_defaults
from peo_hub.recipe.load import load_recipe
from peo_hub.recipe.schema import parse_recipe
from peo_hub.utils.errors import RecipeError

REPO = Path(__file__).resolve().parents[2]
CI_RECIPE = REPO / "tests" / "recipes" / "toy-ci.yaml"


def _data(**changes: object) -> dict:
    """toy-ci's recipe with ``changes``; without its ``seed: 0`` when ``seeds`` is given and ``seed`` is not."""
    data = yaml.safe_load(CI_RECIPE.read_text())
    if "seeds" in changes and "seed" not in changes:
        data.pop("seed")
    data.update(changes)
    return data


# -- the recipe field and the flag


@pytest.mark.parametrize("seeds, needle", [
    ([0, 1, 1], "seed 1 is listed twice"),
    ([0, -1], "seed -1 is out of range"),
    ([], "give at least one seed"),
    ([0, "1"], "seeds.1"),
    ([0, True], "seeds.1"),
    ([0, 1.5], "seeds.1"),
])
def test_bad_seeds_name_the_field(seeds: list, needle: str) -> None:
    with pytest.raises(RecipeError, match="seeds") as info:
        parse_recipe(_data(seeds=seeds), "r.yaml")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_seed_and_seeds_combine_as_documented() -> None:
    recipe = parse_recipe(_data(seeds=[3, 1, 2]), "r.yaml")
    assert recipe.seed == 3 and recipe.training_seeds == [3, 1, 2]  # the first is the run's seed
    with pytest.raises(RecipeError, match="field 'seeds': seed 0 is not the first of seeds"):
        parse_recipe(_data(seed=0, seeds=[3, 1]), "r.yaml")  # toy-ci says seed: 0
    assert parse_recipe(_data(seed=3, seeds=[3, 1]), "r.yaml").training_seeds == [3, 1]
    # One seed is the same recipe as `seed` alone: same fingerprint, so --resume takes either.
    one = parse_recipe(_data(seeds=[3]), "r.yaml")
    alone = parse_recipe(_data(seed=3), "r.yaml")
    assert one.seeds is None and recipe_fingerprint(one) == recipe_fingerprint(alone)
    # A recipe without seeds keeps the fingerprint it had before `seeds` existed.
    assert "seeds" not in recipe_fingerprint(alone)
    assert fingerprint_hash(recipe_fingerprint(alone)) == fingerprint_hash(without_later_defaults(alone.model_dump(
        mode="json", exclude={"hub", "name", "seeds"})))


def test_a_field_added_later_keeps_older_runs_hash_until_it_is_set() -> None:
    """generate.pairs_per_prompt arrived after runs were recorded: at its default a recipe hashes as before."""
    data = _data()
    for aspect in data["aspects"].values():
        aspect["dataset"] = {"source": "embedded:smollm2-safety", "split": "train", "generate": {"samples": 4}}
    recipe = parse_recipe(data, "r.yaml")
    recorded = recipe.model_dump(mode="json", exclude={"hub", "name", "seeds"})
    for aspect in recorded["aspects"].values():  # what a run recorded before the field existed
        del aspect["dataset"]["generate"]["pairs_per_prompt"]
    assert fingerprint_hash(recipe_fingerprint(recipe)) == fingerprint_hash(without_later_defaults(recorded))
    first = next(iter(data["aspects"].values()))
    first["dataset"]["generate"]["pairs_per_prompt"] = 2
    assert fingerprint_hash(recipe_fingerprint(parse_recipe(data, "r.yaml"))) != fingerprint_hash(without_later_defaults(recorded))


def test_the_seeds_flag_replaces_seed_and_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = load_recipe(CI_RECIPE).with_seeds([2, 0, 1])
    assert (recipe.seed, recipe.seeds) == (2, [2, 0, 1])
    with pytest.raises(RecipeError, match="^--seeds: seed 0 is listed twice"):
        load_recipe(CI_RECIPE).with_seeds([0, 0])
    with pytest.raises(SystemExit) as exit_info:
        main(["recipe", "run", str(CI_RECIPE), "--seeds", "0,x", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "not a list of seeds" in capsys.readouterr().err
    assert main(["recipe", "run", str(CI_RECIPE), "--seeds", "0,0", "--output", str(tmp_path / "out")]) == 2
    assert "--seeds: seed 0 is listed twice" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "a bad --seeds is refused before anything is written"


# -- the quick start: one seed, said plainly, and reproduced


@pytest.mark.slow
def test_one_seed_says_one_training_run_and_keeps_wall_clock_out_of_the_front(toy_bundle: Path) -> None:
    front = json.loads((toy_bundle / "front.json").read_text())
    assert front["seeds"] == [0]
    across = front["across_seeds"]
    assert across["n_seeds"] == 1 and "one training run" in across["note"]
    assert {e["verdict"] for e in across["hypervolume_difference"].values()} == {"one training run"}
    assert "training_seconds" not in json.dumps(front) and "train_seconds" not in json.dumps(front)
    timings = json.loads((toy_bundle / "timings.json").read_text())
    assert timings["training_seconds"]["peo"] > 0 and timings["training_seconds"]["peo_runs"] == 2
    assert "one training run" in (toy_bundle / "README.md").read_text()
    assert not (toy_bundle / "seeds").exists()


@pytest.mark.slow
def test_sweeping_the_same_adapters_again_gives_the_same_front_byte_for_byte(toy_bundle: Path, tmp_path: Path) -> None:
    """The cheap half of "same recipe, seed and machine, same front.json": the sweep and the front made
    again from the same adapters (the full double run, training included, is the multi-seed test below)."""
    from peo_hub.recipe.pipeline import run_recipe

    again = tmp_path / "again"
    shutil.copytree(toy_bundle, again, ignore=shutil.ignore_patterns("evaluations", "front.json", "front.png"))
    adapters = folder_digest(again / "adapters")
    run_recipe(CI_RECIPE, output=again, resume=True)
    assert folder_digest(again / "adapters") == adapters, "the adapters were kept, not trained again"
    assert (again / "front.json").read_bytes() == (toy_bundle / "front.json").read_bytes()


# -- several seeds: replicates, resumed per seed, reproduced


def _two_seed_recipe(tmp_path: Path) -> Path:
    data = _data(seeds=[0, 1])
    data["train"]["dpo"].update(max_steps=20, warmup_steps=2)
    data["sweep"] = {"weights": 3, "alpha": [0.0, 0.5], "baselines": ["soup", "morl"]}
    data["evaluate"].update(samples=2, bootstrap=200)
    path = tmp_path / "two-seeds.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_killed_multi_seed_run_resumes_per_seed_to_the_same_front(tmp_path: Path, peo_cache: Path) -> None:
    from peo_hub import PEOModel

    recipe = _two_seed_recipe(tmp_path)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["recipe", "run", str(recipe), "--output", str(whole)]) == 0

    env = {**os.environ, "PEO_HUB_CACHE": str(peo_cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "peo_hub.cli", "recipe", "run", str(recipe), "--output",
                             str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    try:
        while not adapter_complete(killed / "seeds" / "1" / "adapters" / "helpful"):
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.time() < deadline
            time.sleep(0.05)
    finally:  # seed 0 is done (adapters, MORL, every record); seed 1 is training
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (killed / "front.json").exists()
    seed0 = {name: folder_digest(killed / name) for name in ("adapters", "baselines", "evaluations")}
    seed1_helpful = folder_digest(killed / "seeds" / "1" / "adapters" / "helpful")

    assert main(["recipe", "run", str(recipe), "--output", str(killed), "--resume"]) == 0
    assert {name: folder_digest(killed / name) for name in seed0} == seed0, "seed 0 was kept as it was"
    assert folder_digest(killed / "seeds" / "1" / "adapters" / "helpful") == seed1_helpful
    # Same recipe, same seeds, same machine: the same front.json, byte for byte (and each seed's own front).
    assert (killed / "front.json").read_bytes() == (whole / "front.json").read_bytes()
    assert (killed / "seeds" / "1" / "front.json").read_bytes() == (whole / "seeds" / "1" / "front.json").read_bytes()
    for adapter in ("adapters/helpful", "seeds/1/adapters/harmless", "seeds/1/baselines/morl"):
        for path in sorted((whole / adapter).rglob("adapter_*")):  # weights and config; training_info has the clock
            assert path.read_bytes() == (killed / path.relative_to(whole)).read_bytes(), path

    # A finished one-seed run takes another seed under --resume: only seed 1 is trained and swept, and
    # the front is the one the two-seed run made. The base point is the same policy for every seed, so
    # seed 1 copies seed 0's record of it instead of generating it again; trained points are its own.
    extended = tmp_path / "extended"
    assert main(["recipe", "run", str(recipe), "--output", str(extended), "--seeds", "0"]) == 0
    first = {name: folder_digest(extended / name) for name in ("adapters", "baselines", "evaluations")}
    assert not (extended / "seeds").exists()
    assert main(["recipe", "run", str(recipe), "--output", str(extended), "--seeds", "0,1", "--resume"]) == 0
    assert {name: folder_digest(extended / name) for name in first} == first, "seed 0 was kept, not redone"
    assert (extended / "front.json").read_bytes() == (whole / "front.json").read_bytes()
    for path in sorted((whole / "seeds" / "1" / "evaluations").glob("*.json")):
        record = json.loads(path.read_text())
        shared = record["method"] == "base"
        assert ("shared_from_seed" in record) == shared, path.name
        if shared:
            zero = json.loads((whole / "evaluations" / path.name).read_text())
            assert {**record, "shared_from_seed": None} == {**zero, "shared_from_seed": None}

    front = load_front(whole)
    assert front.seeds == [0, 1] and front.across_seeds is not None
    assert set(front.across_seeds.hypervolume_difference) == {"peo_minus_soup", "peo_minus_base", "peo_minus_morl"}
    seed1 = load_front(whole / "seeds" / "1")
    for name, entry in front.across_seeds.hypervolume_difference.items():
        assert entry.per_seed == pytest.approx([front.hypervolume_difference[name].estimate,
                                                seed1.hypervolume_difference[name].estimate])
        assert entry.ci is not None and entry.verdict in ("better", "worse", "undecided")
    # The served adapters are seed 0's; seed 1's family loads on its own and differs.
    info = json.loads((whole / "seeds" / "1" / "adapters" / "helpful" / "training_info.json").read_text())
    assert info["seed"] == 1
    assert folder_digest(whole / "adapters" / "helpful") != folder_digest(whole / "seeds" / "1" / "adapters" / "helpful")
    model = PEOModel.from_pretrained(whole / "seeds" / "1")
    assert model.aspects == ["helpful", "harmless"]
    assert (whole / "seeds" / "1" / "baselines" / "morl").is_dir()

    # --drop-seed-adapters: the other seeds' adapters go, their records and fronts stay, the front is unchanged.
    before = (whole / "front.json").read_bytes()
    assert main(["recipe", "run", str(recipe), "--output", str(whole), "--resume", "--drop-seed-adapters"]) == 0
    assert not (whole / "seeds" / "1" / "adapters").exists() and not (whole / "seeds" / "1" / "baselines").exists()
    assert (whole / "seeds" / "1" / "front.json").is_file() and any((whole / "seeds" / "1" / "evaluations").iterdir())
    assert adapter_complete(whole / "adapters" / "helpful") and (whole / "front.json").read_bytes() == before


def test_the_other_seeds_and_the_timings_belong_to_the_bundle_layout() -> None:
    """A re-push replaces them like every file of the format (and deletes them when a rerun has fewer seeds)."""
    from peo_hub.bundle.manifest import in_bundle_layout

    assert in_bundle_layout("seeds/1/adapters/helpful/adapter_model.safetensors")
    assert in_bundle_layout("seeds/1/front.json") and in_bundle_layout("timings.json")
    assert not in_bundle_layout("notes/seeds.txt")


def test_a_damaged_file_of_another_seed_is_named_with_its_own_fix(tmp_path: Path) -> None:
    from peo_hub.evaluate.records import RecordStore
    from peo_hub.recipe.folder import RunFolder

    folder = RunFolder(tmp_path / "run", parse_recipe(_data(seeds=[0, 1]), "r.yaml"))
    folder.prepare(resume=False)
    assert folder.evaluations_dir(1) == tmp_path / "run" / "seeds" / "1" / "evaluations"
    assert folder.adapter_dir("helpful", 0) == tmp_path / "run" / "adapters" / "helpful"  # the first seed is served
    store = RecordStore(folder.evaluations_dir(1))
    store.write("soup", "x", {"method": "soup", "metrics": {}, "prompts": [], "recipe_hash": folder.fingerprint_hash})
    store.path("soup", "x").write_text("{}")  # damaged since peo-hub wrote it
    with pytest.raises(RecipeError, match=r"delete \S*/run/seeds/1/evaluations/soup-x.json and run again"):
        folder.prepare(resume=True)


def test_records_stamped_with_the_seed_list_are_kept_for_that_list_only(tmp_path: Path) -> None:
    """Folders of several seeds made while the seed list was part of the run's hash still resume."""
    from peo_hub.evaluate.records import RecordStore
    from peo_hub.recipe.folder import RunFolder

    recipe = parse_recipe(_data(seeds=[0, 1]), "r.yaml")
    folder = RunFolder(tmp_path / "run", recipe)
    folder.prepare(resume=False)
    old_stamp = fingerprint_hash({**recipe_fingerprint(recipe), "seeds": [0, 1]})  # how such a run stamped its files
    assert old_stamp != folder.fingerprint_hash
    store = RecordStore(folder.evaluations_dir(1))
    store.write("soup", "x", {"method": "soup", "metrics": {}, "prompts": [], "recipe_hash": old_stamp})
    RunFolder(tmp_path / "run", recipe).prepare(resume=True)  # kept
    # Under another seed list the old stamp names another recipe: refused, with the fix.
    other = parse_recipe(_data(seeds=[0, 2]), "r.yaml")
    with pytest.raises(RecipeError, match="soup-x.json was made by a different recipe"):
        RunFolder(tmp_path / "run", other).prepare(resume=True)
