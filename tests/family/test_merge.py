"""Exports of one point (peo_hub.family.merge via ``peo-hub merge``): the adapter, the mergekit model and
the mergekit YAML all equal ``base + Σ cᵢ Δᵢ``; outputs that are not ours are refused, untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM

from fakes import make_fake_bundle
from peo_hub import PEOModel
from peo_hub.utils.errors import BundleError
from reference import (POINTS, _one_line_error, assert_close, cli_error, coefficients_of, logits, point_args, reference_model, run_cli)
from reference import bundle, peo  # noqa: F401  (fixtures)


def test_exported_adapter_matches_reference(peo, bundle, tmp_path):
    from peft import PeftModel

    point = POINTS[1]  # raw coefficients, one negative
    peo.set_preference(**point)
    out = peo.export_adapter(tmp_path / "adapter")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 + 2 + 3 and config["lora_alpha"] == config["r"]
    assert not config["use_rslora"]
    meta = json.loads((out / "peo_merge.json").read_text())
    assert meta["coefficients"] == pytest.approx(coefficients_of(point))
    base = AutoModelForCausalLM.from_pretrained(bundle / "base")
    exported = PeftModel.from_pretrained(base, out).eval()
    assert_close(logits(exported), logits(reference_model(bundle, coefficients_of(point))))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_adapter_matches_reference(bundle, tmp_path):
    from peft import PeftModel

    point = POINTS[3]
    assert run_cli(bundle, *point_args(point), "--output", tmp_path / "a", "--as", "adapter") == 0
    exported = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(bundle / "base"),
                                         tmp_path / "a").eval()
    assert_close(logits(exported), logits(reference_model(bundle, coefficients_of(point))))
    # Re-running onto our own earlier output replaces it.
    assert run_cli(bundle, *point_args(POINTS[0]), "--output", tmp_path / "a", "--as", "adapter") == 0
    assert json.loads((tmp_path / "a" / "peo_merge.json").read_text())["alpha"] == 1.0


def test_cli_model_matches_reference(bundle, tmp_path):
    point = POINTS[1]
    out = tmp_path / "model"
    assert run_cli(bundle, *point_args(point), "--output", out, "--as", "model") == 0
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert_close(logits(merged), logits(reference_model(bundle, coefficients_of(point))))
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert "-0.5" in (out / "README.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # cache and temps gone


def test_mergekit_yaml_cli_accepts_yaml_and_matches(bundle, tmp_path):
    point = POINTS[0]
    assert run_cli(bundle, *point_args(point), "--output", tmp_path / "p.yaml", "--as", "yaml") == 0
    config = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert config["merge_method"] == "task_arithmetic"
    assert [m["parameters"]["weight"] for m in config["models"]] == pytest.approx([1.6, 0.4, 0.0])
    exe = Path(sys.executable).with_name("mergekit-yaml")
    exe = str(exe) if exe.exists() else shutil.which("mergekit-yaml")
    assert exe, "mergekit-yaml is not installed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([exe, str(tmp_path / "p.yaml"), str(tmp_path / "out"),
                           "--lora-merge-cache", str(tmp_path / "cache")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert_close(logits(merged), logits(reference_model(bundle, coefficients_of(point))))


def test_yaml_folder_output_and_odd_paths(bundle, tmp_path):
    """A folder output gets a named YAML; paths with '+' or '@' use mergekit's long form."""
    from mergekit.config import MergeConfiguration

    assert run_cli(bundle, "--weights", "helpful=1", "--output", tmp_path / "merges", "--as", "yaml") == 0
    (written,) = (tmp_path / "merges").glob("*.yaml")
    MergeConfiguration.model_validate(yaml.safe_load(written.read_text()))
    odd = tmp_path / "a+b@c" / "bundle"
    shutil.copytree(bundle, odd)
    assert run_cli(odd, "--weights", "helpful=1", "--output", tmp_path / "odd.yaml", "--as", "yaml") == 0
    parsed = MergeConfiguration.model_validate(yaml.safe_load((tmp_path / "odd.yaml").read_text()))
    first = parsed.models[0].model
    assert first.model.path == str(odd.resolve() / "base")
    assert first.lora.path == str(odd.resolve() / "adapters" / "helpful")


def test_mergekit_config_paths_relative_to_bundle(peo, bundle):
    config = peo.to_mergekit_config(relative_to=bundle)
    assert config["base_model"] == "./base"
    assert config["models"][0]["model"] == "./base+./adapters/helpful"


@pytest.mark.parametrize("args, needle", [
    (["--weights", "helpfull=1"], "helpfull"),
    (["--weights", "helpful=-1,harmless=2"], "negative"),
    (["--weights", "helpful=0,harmless=0"], "zero"),
    (["--weights", "helpful=oops"], "number"),
    ([], "no preference given"),
    (["--coefficients", "helpful=1", "--alpha", "0.5"], "alpha"),
    (["--weights", "helpful=1", "--coefficients", "helpful=1"], "not both"),
])
@pytest.mark.parametrize("as_", ["adapter", "model", "yaml"])
def test_cli_user_errors_exit_2_and_write_nothing(bundle, tmp_path, capsys, args, needle, as_):
    out = tmp_path / "out" / ("p.yaml" if as_ == "yaml" else "x")
    assert cli_error(capsys, bundle, *args, "--output", out, "--as", as_) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "out").exists()


def test_cli_missing_bundle(tmp_path, capsys):
    assert cli_error(capsys, tmp_path / "nope", "--weights", "helpful=1", "--output", tmp_path / "o") == 2
    _one_line_error(capsys, "nope")
    assert not (tmp_path / "o").exists()


def test_cli_refuses_foreign_nonempty_output(bundle, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert cli_error(capsys, bundle, "--weights", "helpful=1", "--output", out) == 2
    _one_line_error(capsys, "not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_yaml_output_never_overwrites_a_file_it_did_not_write(bundle, tmp_path, capsys):
    recipe = tmp_path / "my-recipe.yaml"
    recipe.write_text("name: mine\n")
    assert cli_error(capsys, bundle, "--weights", "helpful=1", "--output", recipe, "--as", "yaml") == 2
    _one_line_error(capsys, "my-recipe.yaml already exists")
    assert recipe.read_text() == "name: mine\n"
    ours = tmp_path / "point.yaml"
    assert run_cli(bundle, "--weights", "helpful=1", "--output", ours, "--as", "yaml") == 0
    assert run_cli(bundle, "--weights", "harmless=1", "--output", ours, "--as", "yaml") == 0  # ours: replaced
    assert "harmless: c=1" in ours.read_text()


@pytest.mark.parametrize("as_", ["adapter", "yaml", "model"])
def test_unwritable_outputs_are_one_line(bundle, tmp_path, capsys, as_):
    (tmp_path / "file").write_text("x")
    for output, needle in [(tmp_path / "file" / "out", "is a file, not a folder"),
                           (Path("/proc/peo-hub/out"), "not writable"),
                           (tmp_path / ("n" * 300), "longer than 255 bytes")]:
        assert cli_error(capsys, bundle, "--weights", "helpful=1", "--output", output, "--as", as_) == 2
        _one_line_error(capsys, needle)


def test_a_truncated_adapter_is_one_line_in_merge(tmp_path, capsys):
    root = make_fake_bundle(tmp_path / "b")
    weights = root / "adapters" / "helpful" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    assert cli_error(capsys, root, "--weights", "helpful=1", "--output", tmp_path / "x") == 2
    _one_line_error(capsys, "truncated or corrupt")
    with pytest.raises(BundleError, match="truncated or corrupt"):
        PEOModel.from_pretrained(root)


# ------------------------------------------------------------ a real architecture with tied embeddings


@pytest.fixture(scope="module")
def smol_bundle(tmp_path_factory) -> Path:
    """Two PEFT adapters composed over the truncated SmolLM2 (tied embeddings, GQA, the real vocabulary)."""
    from llamacpp_check import random_adapter
    from smollm2 import truncated_smollm2

    base = truncated_smollm2()
    root = tmp_path_factory.mktemp("smol-export")
    random_adapter(base, root / "helpful", seed=1, r=8, lora_alpha=16, target_modules="all-linear")
    random_adapter(base, root / "harmless", seed=2, r=4, lora_alpha=4, use_rslora=True,
                   target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"])
    out = root / "bundle"
    assert run_cli_compose(base, root, out) == 0
    return out


def run_cli_compose(base: Path, root: Path, out: Path) -> int:
    from peo_hub.cli import main

    return main(["compose", str(base), "--adapter", f"helpful={root / 'helpful'}",
                 "--adapter", f"harmless={root / 'harmless'}", "--output", str(out)])


def test_live_fused_adapter_model_and_mergekit_agree_on_smollm2(smol_bundle, tmp_path):
    """DESIGN.md's exactness contract on a real architecture whose lm_head is the embedding matrix."""
    from peft import PeftModel

    point = {"weights": {"helpful": 0.7, "harmless": 0.3}, "alpha": 0.5}
    want = logits(reference_model(smol_bundle, {"helpful": 1.05, "harmless": 0.45}))  # c = (1 + alpha) w
    model = PEOModel.from_pretrained(smol_bundle)
    model.set_preference(**point)
    assert_close(logits(model.model), want, relative=True)  # live
    model.set_preference(**point, fuse=True)
    assert_close(logits(model.model), want, relative=True)  # fused
    adapter = model.export_adapter(tmp_path / "adapter")
    exported = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smol_bundle / "base"), adapter).eval()
    assert_close(logits(exported), want, relative=True)
    assert run_cli(smol_bundle, *point_args(point), "--output", tmp_path / "model", "--as", "model") == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model").eval()
    assert merged.config.tie_word_embeddings and merged.lm_head.weight is merged.model.embed_tokens.weight
    assert_close(logits(merged), want, relative=True)
    assert run_cli(smol_bundle, *point_args(point), "--output", tmp_path / "p.yaml", "--as", "yaml") == 0
    exe = Path(sys.executable).with_name("mergekit-yaml")
    done = subprocess.run([str(exe), str(tmp_path / "p.yaml"), str(tmp_path / "mk"), "--lora-merge-cache",
                           str(tmp_path / "cache")], env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_close(logits(AutoModelForCausalLM.from_pretrained(tmp_path / "mk").eval()), want, relative=True)


@pytest.mark.parametrize("as_", ["adapter", "model"])
def test_rewriting_a_merge_output_keeps_the_users_files_and_refuses_edits(bundle, tmp_path, capsys, as_):
    """Issue: `merge --output DIR` onto an earlier output deleted a user's notes.txt. Now only the
    files the merge wrote are replaced; one of them edited since is refused unless --overwrite."""
    import hashlib

    out = tmp_path / "point"
    assert run_cli(bundle, *point_args(POINTS[0]), "--output", out, "--as", as_) == 0
    (out / "notes.txt").write_text("my notes\n")
    assert run_cli(bundle, *point_args(POINTS[3]), "--output", out, "--as", as_) == 0
    assert (out / "notes.txt").read_text() == "my notes\n"
    (out / "README.md").write_text("my own card\n")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    assert cli_error(capsys, bundle, *point_args(POINTS[0]), "--output", out, "--as", as_) != 0
    message = _one_line_error(capsys, "README.md", "--overwrite")
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    assert run_cli(bundle, *point_args(POINTS[0]), "--output", out, "--as", as_, "--overwrite") == 0
    assert (out / "README.md").read_text() != "my own card\n" and (out / "notes.txt").read_text() == "my notes\n"
