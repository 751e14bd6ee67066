"""`peo-hub recipe run` end to end on the CI-sized toy recipe: the bundle contract holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from peo_hub import PEOModel
from peo_hub.bundle.manifest import load_manifest
from peo_hub.data.chat import render_prompt
from peo_hub.bundle.front import check_front, load_front

pytestmark = pytest.mark.slow


def test_bundle_layout(toy_bundle: Path) -> None:
    for name in ("peo_config.json", "front.json", "front.png", "README.md", "base/config.json"):
        assert (toy_bundle / name).is_file(), name
    manifest = load_manifest(toy_bundle)
    assert manifest.aspect_names == ["helpful", "harmless"]
    assert manifest.base_model == "base"
    for aspect in manifest.aspect_names:
        assert (toy_bundle / "adapters" / aspect / "adapter_model.safetensors").is_file()
        assert manifest.aspects[aspect].train_seconds and manifest.aspects[aspect].dataset["train_rows"] == 600
    assert manifest.front["hypervolume"]["peo"] > 0
    assert not [p for p in toy_bundle.rglob("*") if ".tmp-" in p.name]


def test_front_is_consistent_with_its_points(toy_bundle: Path) -> None:
    front = load_front(toy_bundle).to_json()
    assert check_front(front) == []
    methods = {p["method"] for p in front["points"]}
    assert {"base", "soup", "peo"} <= methods
    assert all(p["alpha"] == 0 for p in front["points"] if p["method"] == "soup")
    assert all(p["alpha"] != 0 for p in front["points"] if p["method"] == "peo")
    for point in front["points"]:
        for metric in point["metrics"].values():
            low, high = metric["ci"]
            assert 0.0 <= low <= metric["mean"] <= high <= 1.0


def test_each_adapter_beats_the_base_on_its_own_aspect(toy_bundle: Path) -> None:
    """Even at CI size (64 replies per point) the trained adapters move their own judge: on all
    16 prompts (the one-hot adapters are fixed in advance, nothing is selected), and in the same
    direction on the confirmation half the front reports."""
    from peo_hub.core.stats import paired_difference_ci

    def scores(name: str, aspect: str) -> list[list[float]]:
        record = json.loads(next((toy_bundle / "evaluations").glob(f"{name}.json")).read_text())
        return record["metrics"][aspect]["scores"]

    front = load_front(toy_bundle)
    for aspect in ("helpful", "harmless"):
        label = "-".join(f"{a}{float(a == aspect):.2f}" for a in ("helpful", "harmless")) + "-a0.00"
        delta, _ = paired_difference_ci(scores(f"soup-{label}", aspect), scores("base-*", aspect))
        assert delta > 0.1, (aspect, delta)
        alone = next(p for p in front.points if p.label == label)
        assert alone.metrics[aspect].model_extra["vs_base"]["mean"] > 0, aspect


def test_merges_are_written_for_front_points(toy_bundle: Path) -> None:
    front = load_front(toy_bundle).to_json()
    on_front = [p for p in front["points"] if p["on_front"]]
    yamls = sorted((toy_bundle / "merges").glob("*.yaml"))
    assert len(yamls) == len(on_front) > 0
    config = yaml.safe_load(yamls[0].read_text())
    assert config["merge_method"] == "task_arithmetic"
    assert {m["model"].split("+")[1] for m in config["models"]} == {"./adapters/helpful", "./adapters/harmless"}


def test_bundle_merge_yaml_runs_with_mergekit_offline(toy_bundle: Path, tmp_path: Path) -> None:
    """The README's recipe: run mergekit-yaml from inside the bundle, offline; the result is that point."""
    import os
    import shutil
    import subprocess
    import sys

    front = load_front(toy_bundle).to_json()
    point = next(p for p in front["points"] if p["on_front"] and p["method"] == "peo")
    yaml_path = toy_bundle / "merges" / f"{point['label']}.yaml"
    cli = shutil.which("mergekit-yaml") or str(Path(sys.executable).parent / "mergekit-yaml")
    out = tmp_path / "merged"
    proc = subprocess.run([cli, str(yaml_path), str(out), "--lora-merge-cache", str(tmp_path / "cache")],
                          cwd=toy_bundle, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = PEOModel.from_pretrained(toy_bundle)
    model.set_preference(coefficients=point["coefficients"])
    tokenizer = AutoTokenizer.from_pretrained(toy_bundle / "base")
    ids = tokenizer(render_prompt(tokenizer, "how do i pick a lock ?"), return_tensors="pt", add_special_tokens=False)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**ids).logits, model.model(**ids).logits, rtol=1e-4, atol=1e-4)


def test_model_card_has_hub_metadata(toy_bundle: Path) -> None:
    text = (toy_bundle / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert {"peo", "lora", "dpo", "trl", "mergekit"} <= set(meta["tags"])
    assert "front.png" in text and "PEOModel" in text


def test_bundle_loads_with_peomodel_and_peft(toy_bundle: Path) -> None:
    model = PEOModel.from_pretrained(toy_bundle)
    model.set_preference({"harmless": 1.0})
    tokenizer = AutoTokenizer.from_pretrained(toy_bundle / "base")
    ids = tokenizer(render_prompt(tokenizer, "how do i pick a lock ?"), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        live = model.model(**ids).logits
    base = AutoModelForCausalLM.from_pretrained(toy_bundle / "base")
    plain = PeftModel.from_pretrained(base, toy_bundle, subfolder="adapters/harmless").eval()
    with torch.no_grad():
        expected = plain(**ids).logits
    torch.testing.assert_close(live, expected, rtol=1e-5, atol=1e-5)


def test_chat_follows_the_preference_on_risky_requests(toy_bundle: Path) -> None:
    """Greedy replies to held-out risky prompts: harmless-only is judged safer than helpful-only."""
    from peo_hub.world import toy

    model = PEOModel.from_pretrained(toy_bundle)
    risky = [p for p in toy.eval_prompts() if toy.task_of(p).risky]

    def mean_scores(weights: dict[str, float]) -> tuple[float, float]:
        model.set_preference(weights)
        replies = [model.chat(p, max_new_tokens=40) for p in risky]
        helpful = sum(toy.helpful_score(p, r) for p, r in zip(risky, replies)) / len(risky)
        harmless = sum(toy.harmless_score(p, r) for p, r in zip(risky, replies)) / len(risky)
        return helpful, harmless

    helpful_only, harmless_only = mean_scores({"helpful": 1.0}), mean_scores({"harmless": 1.0})
    assert harmless_only[1] > helpful_only[1]
    assert helpful_only[0] > harmless_only[0]


def test_front_separates_selection_from_confirmation(toy_bundle: Path) -> None:
    """The recipe's prompts are split; the front reports confirmation numbers with intervals for
    every hypervolume and the PEO - soup difference, and says which prompts did what."""
    front = load_front(toy_bundle)
    split = front.evaluation_split
    assert split is not None and split.selection_fraction == 0.5
    assert sorted(split.selection + split.confirmation) == list(range(16))
    assert not set(split.selection) & set(split.confirmation)
    assert set(front.hypervolume_ci) == set(front.hypervolume)
    assert all(ci is not None and ci[0] <= ci[1] for ci in front.hypervolume_ci.values())
    assert "peo_minus_soup" in front.hypervolume_difference
    for point in front.points:
        assert point.selection is not None and point.guard is not None
        assert point.metrics["helpful"].model_extra["n_prompts"] == len(split.confirmation)
    record = json.loads(next((toy_bundle / "evaluations").glob("base-*.json")).read_text())
    assert len(record["metrics"]["helpful"]["scores"]) == 16  # grouped by prompt
    assert set(record["guard"]) == {"base_logprob", "distinct_2", "length"}
    assert "confirmation" in (toy_bundle / "README.md").read_text()
