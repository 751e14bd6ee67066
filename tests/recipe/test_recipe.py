"""Recipe validation: the good recipes pass, every kind of bad input is one clear line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from peo_hub.cli import main
from peo_hub.utils.errors import RecipeError
from peo_hub.recipe.load import load_recipe
from peo_hub.recipe.schema import parse_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yaml")) + [REPO / "tests" / "recipes" / "toy-ci.yaml"]


def toy() -> dict:
    return yaml.safe_load((REPO / "recipes" / "toy.yaml").read_text())


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_validate(path: Path, capsys: pytest.CaptureFixture[str], peo_cache: Path) -> None:
    # Recipes on Hub models and data need the network for the full pre-flight; offline only
    # their fields are checked (the same pre-flight runs on the offline replicas in test_realdata_e2e).
    offline_only = "qwen" in path.name
    assert main(["recipe", "validate", str(path), *(["--schema-only"] if offline_only else [])]) == 0
    assert "ok:" in capsys.readouterr().out


def test_toy_recipe_fields() -> None:
    recipe = load_recipe(REPO / "recipes" / "toy.yaml")
    assert list(recipe.aspects) == ["helpful", "harmless"]
    assert recipe.name == "toy"
    assert recipe.train.dpo.loss_type == ["sigmoid", "sft"]
    assert recipe.train.dpo.model_extra == {"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 10}


def _edit(change) -> dict:
    data = toy()
    change(data)
    return data


BAD = {
    "typo at top level": (lambda d: d.update(sweeps={}), "unknown field 'sweeps'", "did you mean 'sweep'"),
    "typo in dpo": (lambda d: d["train"]["dpo"].update(lerning_rate=1.0), "lerning_rate", "did you mean 'learning_rate'"),
    "typo in lora": (lambda d: d["train"]["lora"].update(rank=4), "unknown field 'train.lora.rank'", "remove or rename"),
    "wrong type": (lambda d: d["sweep"].update(weights="five"), "sweep.weights", "integer"),
    "missing base": (lambda d: d.pop("base_model"), "missing required field 'base_model'", "add it"),
    "one aspect": (lambda d: d["aspects"].pop("harmless"), "two or more aspects", "aspects"),
    "bad judge": (lambda d: d["aspects"]["helpful"]["judge"].update(type="toy_helpfull"), "unknown judge type", "did you mean 'toy_helpful'"),
    "reward model without model": (lambda d: d["aspects"]["helpful"].update(judge={"type": "reward_model"}), "needs model", "reward_model"),
    "bad alpha": (lambda d: d["sweep"].update(alpha=[-2]), "sweep.alpha", ">= -1"),
    "bad aspect name": (lambda d: d["aspects"].update({"a/b": d["aspects"]["helpful"]}), "aspect name", "folder"),
    "bad dataset field": (lambda d: d["aspects"]["helpful"]["dataset"].update(sauce="x"), "sauce", "did you mean 'source'"),
    "loss weights mismatch": (lambda d: d["train"]["dpo"].update(loss_weights=[1.0]), "loss_weights", "one weight per"),
    "selection takes every prompt": (lambda d: d["evaluate"].update(selection_fraction=1.0),
                                     "evaluate.selection_fraction", "less than 1"),
    "alpha search": (lambda d: d["sweep"].update(search={"bounds": [0, 2]}), "sweep.search", "sweep.alpha"),
    "guard typo": (lambda d: d["evaluate"].update(guard={"max_logprob_dorp": 1}), "max_logprob_dorp",
                   "did you mean 'max_logprob_drop'"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_recipes_name_field_and_fix(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    change, *needles = BAD[name]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_edit(change)))
    assert main(["recipe", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize(
    "content, needle",
    [
        ("", "is empty"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("base_model: [unclosed\n", "not valid YAML at line"),
        (b"\xff\xfe\x00bad", "cannot read recipe"),
    ],
    ids=["empty", "list", "syntax", "binary"],
)
def test_unreadable_recipes(content: str | bytes, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RecipeError, match=needle):
        load_recipe(path)


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="is a folder"):
        load_recipe(tmp_path)


def test_cli_error_has_no_traceback(tmp_path: Path) -> None:
    """Through the installed entry point: exit code 2, one line, no traceback."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_edit(lambda d: d.update(sweeps={}))))
    proc = subprocess.run([sys.executable, "-m", "peo_hub.cli", "recipe", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "unknown field 'sweeps'" in proc.stderr


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    data = toy()
    data.pop("name")
    assert parse_recipe(data, tmp_path / "my-run.yaml").name == "my-run"


# Inputs that once passed `recipe validate` and broke `recipe run` only after training or writes.
LATE = {
    "inf beta": (lambda d: d["train"]["dpo"].update(beta=float("inf")), "train.dpo.beta", "finite"),
    "inf learning rate": (lambda d: d["train"]["dpo"].update(learning_rate=float("inf")), "learning_rate", "finite"),
    "inf lora alpha": (lambda d: d["train"]["lora"].update(alpha=float("inf")), "train.lora.alpha", "finite"),
    "nan loss weight": (lambda d: d["train"]["dpo"].update(loss_weights=[1.0, float("nan")]), "loss_weights", "finite"),
    "nan alpha": (lambda d: d["sweep"].update(alpha=[0, float("nan")]), "sweep.alpha", "finite"),
    "inf alpha": (lambda d: d["sweep"].update(alpha=[float("inf")]), "sweep.alpha", "finite"),
    "seed pass-through": (lambda d: d["train"]["dpo"].update(seed=3), "'seed' is set by peo-hub", "top-level seed"),
    "output_dir pass-through": (lambda d: d["train"]["dpo"].update(output_dir="x"), "'output_dir' is set by peo-hub",
                                "remove it"),
    "bogus loss": (lambda d: d["train"]["dpo"].update(loss_type=["sigmoidd"]), "unknown DPO loss 'sigmoidd'",
                   "did you mean 'sigmoid'"),
    "max_length 0": (lambda d: d["train"]["dpo"].update(max_length=0), "train.dpo.max_length", "greater than 0"),
    "negative seed": (lambda d: d.update(seed=-1), "field 'seed'", "greater than or equal to 0"),
    "bad repo id": (lambda d: d.setdefault("hub", {}).update(repo_id="not a repo!"), "hub.repo_id", "namespace/name"),
    "bad license": (lambda d: d.setdefault("hub", {}).update(license="Apache 2.0"), "hub.license",
                    "not a Hub license id"),
    "huge grid": (lambda d: d["sweep"].update(weights=10**9), "sweep.weights", "less than or equal"),
    "grid too large for aspects": (lambda d: d["aspects"].update(
        {f"a{i}": d["aspects"]["helpful"] for i in range(4)}) or d["sweep"].update(weights=40), "sweep",
        "keep the grid at most"),
    "path in name": (lambda d: d.update(name="../../x"), "field 'name'", "runs/<name>"),
    "bad prompts spec": (lambda d: d["evaluate"].update(prompts={"source": "x.jsonl", "colums": {}}),
                         "evaluate.prompts.colums", "did you mean 'columns'"),
}


@pytest.mark.parametrize("name", list(LATE))
def test_what_used_to_fail_late_fails_in_validate(name: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    change, *needles = LATE[name]
    data = _edit(change)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).replace(".nan", ".nan"))
    assert main(["recipe", "validate", str(path), "--schema-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert "function-after" not in err and "DatasetSpec" not in err  # no pydantic internals


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = (REPO / "recipes" / "toy.yaml").read_text() + "\nseed: 3\n"
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=r"key 'seed' appears twice \(lines \d+ and \d+\); keep one of them"):
        load_recipe(path)


def test_dpo_losses_match_trl() -> None:
    """The list the schema checks against is TRL's own (its DPOConfig documents every loss)."""
    import inspect

    from trl import DPOConfig

    from peo_hub.train.config import DPO_LOSS_TYPES

    doc = inspect.getsource(DPOConfig)
    documented = doc[doc.index("loss_type (`list[str]`"):doc.index("loss_weights (")]
    assert sorted(DPO_LOSS_TYPES) == sorted(set(__import__("re").findall(r"`'([a-z_]+)'`", documented)))


def test_set_overrides_apply_on_top_of_the_file_as_yaml_values() -> None:
    from peo_hub.recipe.load import apply_overrides

    path = REPO / "recipes" / "toy.yaml"
    recipe = load_recipe(path, ["train.dpo.max_steps=20", "sweep.alpha=[0, 0.5]", "hub.repo_id=alice/peo-toy",
                                "hub.license=mit", "train.dpo.bf16=false", "evaluate.temperature=0.7",
                                "name=toy-short"])
    assert recipe.train.dpo.max_steps == 20 and recipe.sweep.alpha == [0, 0.5]
    assert recipe.hub.repo_id == "alice/peo-toy" and recipe.hub.license == "mit"  # a section the file lacks
    assert recipe.train.dpo.bf16 is False and recipe.evaluate.temperature == 0.7 and recipe.name == "toy-short"
    assert load_recipe(path, ["sweep.alpha=[0]", "sweep.alpha=[1]"]).sweep.alpha == [1]  # in order: the last wins
    data = toy()
    before = yaml.safe_dump(data)
    apply_overrides(data, ["train.dpo.max_steps=1"])
    assert yaml.safe_dump(data) == before  # the file's data is not changed in place
    # the file's fields that are not overridden stay as written
    assert load_recipe(path, ["seed=3"]).train == load_recipe(path).train
