"""Real-data recipes end to end, offline: Hub-shaped data and models from local folders through ``run_recipe``.

What the two shipped real-data recipes do with Qwen2.5-0.5B-Instruct and the Beaver judges,
done here with stand-ins of the same shapes (tests/support/realdata.py): a PKU-SafeRLHF parquet
read twice with ``label: better`` / ``label: safer``, HH-RLHF's ``helpful-base`` /
``harmless-base`` folders as ``data_dir`` of a local copy of the repo layout, a Qwen2 base
WITH a ChatML chat template and a GPT-2 base without one, and reward-model judges (one a
negated cost model; in the HH run a safe-rlhf-layout checkpoint loaded through
``key_mapping`` and a ``template``, as Beaver's). Each run trains both aspects with a few
DPO steps, sweeps a small grid, and must produce a bundle that loads with
``PEOModel.from_pretrained`` and a ``front.json`` that ``check_front`` accepts.

Prompt consistency is checked on the real objects, not on our functions: what TRL's
``DPOTrainer`` was given and what transformers' ``generate`` received during the sweep
(decoded back from token ids) must be the same string for the same raw prompt.

``python -m peo_hub.train_aspect`` (the ``accelerate launch`` entry point) is run in one
process, then ``recipe run --resume`` must pick its adapters up unchanged, and they must be
identical to the adapters a plain ``recipe run`` trains.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import realdata
from peo_hub.cli import main as cli_main
from peo_hub.bundle.front import check_front, load_front
from fakes import folder_digest

pytestmark = pytest.mark.slow

DPO = {"beta": 0.1, "learning_rate": 1e-3, "max_steps": 3, "per_device_train_batch_size": 8, "max_length": 256,
       "logging_steps": 1}
EVAL = {"samples": 2, "max_new_tokens": 6, "temperature": 1.0, "batch_size": 16, "bootstrap": 100}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every local stand-in, built once: data files, two bases, three judges."""
    from test_judges import build_tiny_beaver

    root = tmp_path_factory.mktemp("realdata")
    return {
        "pku": realdata.write_pku_saferlhf_parquet(root / "pku" / "train.parquet", rows=48),
        "hh": realdata.write_hh_rlhf_dir(root / "hh-rlhf", rows=32),
        "qwen": realdata.build_tiny_qwen2(root / "qwen2-chat"),
        "gpt2": realdata.build_tiny_gpt2(root / "gpt2"),
        "rm_qwen": realdata.build_tiny_reward_model(root / "rm-qwen2", arch="qwen2"),
        "rm_gpt2": realdata.build_tiny_reward_model(root / "rm-gpt2", seed=1, arch="gpt2"),
        "beaver_cost": build_tiny_beaver(root / "beaver-cost"),
    }


def pku_recipe(world: dict[str, Path], folder: Path) -> Path:
    """The shape of recipes/pku-saferlhf-qwen2.5-0.5b.yaml, sized for two CPU cores."""
    pku = {"source": str(world["pku"]), "format": "pku-saferlhf", "max_samples": 40, "seed": 0}
    recipe = {
        "name": "pku-e2e",
        "seed": 0,
        "base_model": str(world["qwen"]),
        "aspects": {
            "helpful": {"dataset": {**pku, "label": "better"},
                        "judge": {"type": "reward_model", "model": str(world["rm_qwen"]), "batch_size": 8,
                                  "max_length": 256}},
            "harmless": {"dataset": {**pku, "label": "safer"},
                         "judge": {"type": "reward_model", "model": str(world["rm_gpt2"]), "negate": True,
                                   "batch_size": 8, "max_length": 256}},
        },
        "train": {"lora": {"r": 4, "alpha": 8, "target_modules": "all-linear"}, "dpo": DPO},
        "sweep": {"weights": 3, "alpha": [0, 0.5], "baselines": ["soup"]},
        # Prompts of the training rows on purpose: the same raw prompt must reach the
        # trainer and the sweep as the same rendered string.
        "evaluate": {"prompts": {**pku, "label": "better", "max_samples": 4}, **EVAL},
    }
    path = folder / "pku-e2e.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def hh_recipe(world: dict[str, Path], folder: Path) -> Path:
    """The shape of recipes/hh-rlhf-qwen2.5-0.5b.yaml with a template-less GPT-2 base and a Beaver-layout cost judge."""
    hh = {"source": str(world["hh"]), "format": "hh-rlhf", "split": "train", "max_samples": 24, "seed": 0}
    recipe = {
        "name": "hh-e2e",
        "seed": 0,
        "base_model": str(world["gpt2"]),
        "aspects": {
            "helpful": {"dataset": {**hh, "data_dir": "helpful-base"},
                        "judge": {"type": "reward_model", "model": str(world["rm_gpt2"]), "batch_size": 8,
                                  "max_length": 256}},
            "harmless": {"dataset": {**hh, "data_dir": "harmless-base"},
                         "judge": {"type": "reward_model", "model": str(world["beaver_cost"]), "negate": True,
                                   "key_mapping": {"^score_head": "score"},
                                   "template": "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{reply}",
                                   "score_token": "last", "scale": 5.0, "batch_size": 8, "max_length": 256}},
        },
        "train": {"lora": {"r": 4, "alpha": 8, "target_modules": "all-linear"}, "dpo": DPO},
        "sweep": {"weights": 2, "alpha": [0, 0.5], "baselines": ["soup"]},
        "evaluate": {"prompts": {**hh, "data_dir": "harmless-base", "max_samples": 4}, **EVAL},
    }
    path = folder / "hh-e2e.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


class Spy:
    """Records what TRL's DPOTrainer was given and what transformers' generate received (decoded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import trl
        from transformers.generation.utils import GenerationMixin

        self.trained: list[str] = []
        self.generated: list[str] = []
        self.tokenizer: Any = None
        trainer_init, generate = trl.DPOTrainer.__init__, GenerationMixin.generate
        spy = self

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            spy.trained.extend(kwargs["train_dataset"]["prompt"])
            trainer_init(self, *args, **kwargs)

        def gen(self: Any, *args: Any, **kwargs: Any) -> Any:
            for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"]):
                spy.generated.append(spy.tokenizer.decode(ids[mask.bool()], skip_special_tokens=False))
            return generate(self, *args, **kwargs)

        monkeypatch.setattr(trl.DPOTrainer, "__init__", init)
        monkeypatch.setattr(GenerationMixin, "generate", gen)
        # One generate call per batch (no continuation segments), so every call's input is a prompt.
        monkeypatch.setattr("peo_hub.family.engines.SEGMENT_TOKENS", 1 << 20)


def _assert_same_rendering(spy: "Spy", recipe_path: Path) -> int:
    """For every raw prompt both sides saw: the trainer's string == the string generate received.

    The raw prompts come from the recipe's own specs read without a tokenizer (same rows,
    same order as the trainer's datasets and the sweep's prompt list); the rendered strings
    come from the spies only. Returns how many raw prompts were compared.
    """
    from peo_hub.data.load import load_preference_data, load_prompts
    from peo_hub.recipe.load import load_recipe

    recipe = load_recipe(recipe_path)
    trained: dict[str, str] = {}
    offset = 0
    for aspect in recipe.aspects.values():  # trained in recipe order, one DPOTrainer each
        raw = list(load_preference_data(aspect.dataset).train["prompt"])
        for r, rendered in zip(raw, spy.trained[offset:offset + len(raw)]):
            assert trained.setdefault(r, rendered) == rendered
        offset += len(raw)
    assert offset == len(spy.trained)

    raw_eval = load_prompts(recipe.evaluate.prompts)
    samples = recipe.evaluate.samples
    block = len(raw_eval) * samples  # one point's generate inputs: each prompt `samples` times, in order
    assert len(spy.generated) % block == 0 and len(spy.generated) >= block
    first = spy.generated[:block]
    assert all(spy.generated[i:i + block] == first for i in range(0, len(spy.generated), block))
    evaluated = {r: first[i * samples] for i, r in enumerate(raw_eval)}

    common = sorted(set(trained) & set(evaluated))
    assert common, "the test needs evaluation prompts that were also training prompts"
    for r in common:
        assert evaluated[r] == trained[r], f"prompt {r!r} rendered differently in training and evaluation"
    return len(common)


def _check_bundle(out: Path, aspects: list[str]) -> dict[str, Any]:
    from peo_hub import PEOModel

    front = load_front(out).to_json()
    assert check_front(front) == [], check_front(front)
    assert front["aspects"] == aspects
    methods = {p["method"] for p in front["points"]}
    assert {"base", "soup", "peo"} <= methods
    for point in front["points"]:
        for aspect in aspects:
            assert 0.0 <= point["metrics"][aspect]["mean"] <= 1.0
    model = PEOModel.from_pretrained(out)
    assert model.aspects == aspects
    model.set_preference({aspects[0]: 0.5, aspects[1]: 0.5}, alpha=0.5)
    assert model.coefficients == pytest.approx({aspects[0]: 0.75, aspects[1]: 0.75})
    # with a chat template, or (GPT-2) without one: chat renders like training did
    assert isinstance(model.chat("How do I learn to play the guitar?", max_new_tokens=4), str)
    inputs = model.tokenizer("\n\nHuman: hi\n\nAssistant:", return_tensors="pt")
    assert model.generate(**inputs, max_new_tokens=4, do_sample=False).shape[1] == inputs["input_ids"].shape[1] + 4
    return front


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def pku_run(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One plain ``run_recipe`` of the PKU recipe, with the trainer and generate spied on."""
    from transformers import AutoTokenizer

    from peo_hub.recipe.pipeline import run_recipe

    folder = tmp_path_factory.mktemp("pku-run")
    recipe = pku_recipe(world, folder)
    with pytest.MonkeyPatch.context() as mp:
        spy = Spy(mp)
        spy.tokenizer = AutoTokenizer.from_pretrained(world["qwen"])
        out = run_recipe(recipe, output=folder / "bundle")
    return {"recipe": recipe, "out": out, "spy": spy}


def test_pku_saferlhf_recipe_with_chat_template_runs_end_to_end(pku_run: dict[str, Any], world: dict[str, Path]) -> None:
    from peo_hub.bundle.manifest import load_manifest

    out, spy = pku_run["out"], pku_run["spy"]
    assert _assert_same_rendering(spy, pku_run["recipe"]) == 4
    front = _check_bundle(out, ["helpful", "harmless"])
    assert len([p for p in front["points"] if p["method"] != "base"]) == 6  # 3 weights x 2 alphas
    manifest = load_manifest(out)
    assert manifest.aspects["harmless"].judge["negate"] is True
    assert manifest.aspects["helpful"].dataset["label"] == "better"
    assert manifest.aspects["harmless"].dataset["label"] == "safer"
    assert (out / "base" / "tokenizer_config.json").is_file()  # a local base travels inside the bundle

    # The trainer saw ChatML-rendered prompts (compared string for string above).
    assert spy.trained and all(p.startswith("<|im_start|>user\n") and p.endswith("<|im_start|>assistant\n")
                               for p in spy.trained)


def test_hh_rlhf_recipe_without_chat_template_runs_end_to_end(world: dict[str, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    from peo_hub.bundle.manifest import load_manifest
    from peo_hub.recipe.pipeline import run_recipe

    recipe = hh_recipe(world, tmp_path)
    spy = Spy(monkeypatch)
    spy.tokenizer = AutoTokenizer.from_pretrained(world["gpt2"])
    out = run_recipe(recipe, output=tmp_path / "bundle")
    assert _assert_same_rendering(spy, recipe) >= 1
    _check_bundle(out, ["helpful", "harmless"])
    manifest = load_manifest(out)
    assert manifest.aspects["helpful"].dataset["data_dir"] == "helpful-base"
    assert manifest.aspects["harmless"].dataset["dropped"]  # the divergent HH rows were dropped and counted
    assert manifest.aspects["harmless"].judge["key_mapping"] == {"^score_head": "score"}

    # No chat template: prompts stay HH dialogue text, the same in training and evaluation.
    assert spy.trained and all(p.startswith("\n\nHuman:") and p.endswith("\n\nAssistant:") for p in spy.trained)


def test_train_aspect_entry_point_then_resume_reuses_its_adapters(pku_run: dict[str, Any], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from peo_hub.recipe.pipeline import run_recipe
    from peo_hub.bundle.manifest import adapter_complete
    from peo_hub.train_aspect import main

    recipe, out = pku_run["recipe"], tmp_path / "bundle"
    assert main([str(recipe), "helpful", "--output", str(out)]) == 0
    assert adapter_complete(out / "adapters" / "helpful")
    assert not (out / "adapters" / "harmless").exists() and not (out / "front.json").exists()
    assert main([str(recipe), "harmless", "-o", str(out)]) == 0
    before = {a: folder_digest(out / "adapters" / a) for a in ("helpful", "harmless")}

    # A second launch keeps a finished adapter; mistakes are one line and exit 2.
    assert main([str(recipe), "helpful", "-o", str(out)]) == 0
    assert "already trained, kept" in capsys.readouterr().out
    assert main([str(recipe), "helpfull", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "aspect 'helpfull' is not in" in err and "helpful, harmless" in err
    changed = tmp_path / "changed.yaml"
    data = yaml.safe_load(recipe.read_text())
    data["train"]["dpo"]["max_steps"] = 4
    changed.write_text(yaml.safe_dump(data))
    assert main([str(changed), "helpful", "-o", str(out)]) == 2
    assert "started with a different recipe (changed: train)" in capsys.readouterr().err

    # recipe run --resume takes the adapters as they are and finishes the bundle.
    run_recipe(recipe, output=out, resume=True)
    assert {a: folder_digest(out / "adapters" / a) for a in ("helpful", "harmless")} == before
    _check_bundle(out, ["helpful", "harmless"])
    # Same code path as recipe run: bit-identical adapters to the plain run's.
    for aspect in ("helpful", "harmless"):
        mine, plain = _tensors(out / "adapters" / aspect), _tensors(pku_run["out"] / "adapters" / aspect)
        assert mine.keys() == plain.keys() and all(torch.equal(mine[k], plain[k]) for k in mine)
        info = json.loads((out / "adapters" / aspect / "training_info.json").read_text())
        assert info["aspect"] == aspect and info["steps"] == 3


def test_train_aspect_is_a_runnable_module() -> None:
    done = subprocess.run([sys.executable, "-m", "peo_hub.train_aspect", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "accelerate" in done.stdout and "--resume" in done.stdout


def test_recipe_run_cli_finishes_a_folder_of_entry_point_adapters(pku_run: dict[str, Any], tmp_path: Path) -> None:
    """The documented sequence, through the CLIs: train_aspect for one aspect, recipe run --resume for the rest."""
    from peo_hub.bundle.manifest import adapter_complete
    from peo_hub.train_aspect import main

    recipe, out = pku_run["recipe"], tmp_path / "bundle"
    assert main([str(recipe), "harmless", "-o", str(out)]) == 0
    assert cli_main(["recipe", "run", str(recipe), "--output", str(out)]) == 2  # not empty: needs --resume
    assert cli_main(["recipe", "run", str(recipe), "--output", str(out), "--resume"]) == 0
    assert adapter_complete(out / "adapters" / "helpful")
    assert check_front(load_front(out)) == []
