"""train.lora's PEFT fields and train.model's loading fields: what reaches PEFT and TRL, what is refused and why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from peo_hub.cli import main
from peo_hub.train.config import LoraSpec, ModelSpec
from peo_hub.train.dpo import dpo_config

REPO = Path(__file__).resolve().parents[2]


def test_lora_fields_reach_peft() -> None:
    spec = LoraSpec(r=8, alpha=16, target_modules=["q_proj", "down_proj"], use_rslora=True,
                    init_lora_weights="gaussian", layers_to_transform=[0],
                    layers_pattern="layers", rank_pattern={"down_proj": 16}, alpha_pattern={"down_proj": 32},
                    exclude_modules=["lm_head"])
    config = spec.to_peft()
    assert config.use_rslora is True and config.init_lora_weights == "gaussian"
    assert config.layers_to_transform == [0] and config.layers_pattern == "layers"
    assert config.rank_pattern == {"down_proj": 16} and config.alpha_pattern == {"down_proj": 32}
    assert config.exclude_modules == {"lm_head"} or config.exclude_modules == ["lm_head"]
    assert not config.use_dora and config.bias == "none"
    plain = LoraSpec().to_peft()
    assert plain.use_rslora is False and plain.init_lora_weights is True and plain.layers_to_transform is None


@pytest.mark.parametrize("field, value, needle", [
    ("use_dora", True, "DoRA rescales"),
    ("lora_bias", True, "bias vector"),
    ("modules_to_save", ["lm_head"], "replacement copies"),
    ("bias", "all", "bias: only 'none'"),
    ("init_lora_weights", "pissa", "rewrites them"),
    ("init_lora_weights", "olora", "rewrites them"),
    ("rank_pattern", {"q_proj": 0}, "positive number"),
    ("layers_to_transform", [0], "PEFT refuses these settings: `layers_to_transform` cannot be used when"),
])
def test_non_additive_lora_options_are_refused_in_one_line(field: str, value: object, needle: str,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = yaml.safe_load((REPO / "recipes" / "toy.yaml").read_text())
    recipe["train"]["lora"][field] = value
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["recipe", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "train.lora" in err and needle in err, err


def test_model_init_kwargs_reach_trl(tmp_path: Path) -> None:
    from peo_hub.train.config import DPOSpec

    args = dpo_config(DPOSpec(max_steps=1), str(tmp_path), 0, model=ModelSpec(dtype="bfloat16",
                                                                            attn_implementation="eager"),
                      revision="v1")
    assert args.model_init_kwargs == {"dtype": "bfloat16", "revision": "v1", "attn_implementation": "eager"}
    auto = dpo_config(DPOSpec(max_steps=1), str(tmp_path), 0).model_init_kwargs
    assert auto == {"dtype": "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
                    else "float32"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_qlora_without_cuda_is_refused_before_anything_is_loaded(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    recipe = yaml.safe_load((REPO / "recipes" / "toy.yaml").read_text())
    recipe["train"]["model"] = {"quantization": "4bit"}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["recipe", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.model.quantization: 4bit (QLoRA) needs a CUDA GPU" in err, err
    assert "set train.model.quantization: none" in err
    assert main(["recipe", "run", str(path), "--output", str(tmp_path / "run")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_model_fields_name_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = yaml.safe_load((REPO / "recipes" / "toy.yaml").read_text())
    recipe["train"]["model"] = {"dtype": "float8"}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["recipe", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.model.dtype" in err, err
    recipe["train"]["dpo"]["model_init_kwargs"] = {"dtype": "float16"}
    recipe["train"].pop("model")
    path.write_text(yaml.safe_dump(recipe))
    assert main(["recipe", "validate", str(path)]) == 2
    assert "use train.model" in capsys.readouterr().err


def test_new_fields_at_their_defaults_keep_the_recipe_hash() -> None:
    """A run folder recorded before train.model and the LoRA fields existed still resumes."""
    from peo_hub.recipe.folder import fingerprint_hash, recipe_fingerprint
    from peo_hub.recipe.load import load_recipe

    recipe = load_recipe(REPO / "recipes" / "toy.yaml")
    fingerprint = recipe_fingerprint(recipe)
    assert "model" not in fingerprint["train"] and "use_rslora" not in fingerprint["train"]["lora"]
    old = recipe.model_dump(mode="json", exclude={"hub", "name"})
    del old["train"]["model"], old["evaluate"]["vllm"]
    assert old.pop("seeds") is None  # unset seeds are left out of the hash too (tests/recipe/test_seeds.py)
    for name in ("use_rslora", "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern",
                 "alpha_pattern", "exclude_modules"):
        del old["train"]["lora"][name]
    assert fingerprint_hash(fingerprint) == fingerprint_hash(old)
    changed = recipe.model_copy(deep=True)
    changed.train.lora.use_rslora = True
    changed.train.model.dtype = "bfloat16"
    assert recipe_fingerprint(changed)["train"]["lora"]["use_rslora"] is True
    assert recipe_fingerprint(changed)["train"]["model"]["dtype"] == "bfloat16"
