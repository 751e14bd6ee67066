"""The merge engine: live, fused, exported adapter, mergekit model and mergekit CLI all equal
``base + Σ cᵢ Δᵢ`` computed independently here from the raw safetensors files.

The bundle's adapters deliberately differ: ranks 4/2/3, different lora_alpha, one with
rsLoRA and only three target modules, so every per-adapter scale and the zero-padding of
the exported adapter are exercised.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from fakes import make_adapter, make_base, make_fake_bundle
from peo_hub import PEOModel
from peo_hub.bundle import load_manifest, save_manifest
from peo_hub.cli import main
from peo_hub.errors import BundleError, PreferenceError

ASPECTS = ("helpful", "harmless", "concise")
ADAPTER_OPTIONS = {
    "helpful": {"r": 4, "lora_alpha": 8},
    "harmless": {"r": 2, "lora_alpha": 3, "use_rslora": True,
                 "target_modules": ["q_proj", "v_proj", "down_proj"]},
    "concise": {"r": 3, "lora_alpha": 5},
}
TOL = 1e-5
INPUT_IDS = torch.tensor([[1, 5, 6, 7, 8, 9, 10, 4, 12, 13], [1, 14, 15, 16, 17, 18, 19, 20, 4, 5]])


def _random_points(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    points = []
    for _ in range(n):
        weights = {a: rng.random() for a in ASPECTS}
        points.append({"weights": weights, "alpha": rng.uniform(0.0, 1.5)})
    return points


POINTS = [
    {"weights": {"helpful": 0.8, "harmless": 0.2}, "alpha": 1.0},
    {"coefficients": {"helpful": 1.5, "harmless": -0.5, "concise": 0.25}},
    {"weights": {a: 1.0 for a in ASPECTS}, "alpha": 0.0},
    *_random_points(2, seed=7),
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_fake_bundle(tmp_path_factory.mktemp("merge") / "bundle", aspects=ASPECTS,
                            adapter_options=ADAPTER_OPTIONS)


@pytest.fixture(scope="module")
def peo(bundle) -> PEOModel:
    return PEOModel.from_pretrained(bundle)


def coefficients_of(point: dict) -> dict[str, float]:
    """c = (1 + alpha) * normalised w, or the raw coefficients: computed here, not by peo_hub."""
    if "coefficients" in point:
        return {a: point["coefficients"].get(a, 0.0) for a in ASPECTS}
    total = sum(point["weights"].values())
    return {a: (1 + point["alpha"]) * point["weights"].get(a, 0.0) / total for a in ASPECTS}


def reference_model(bundle: Path, coefficients: dict[str, float]) -> LlamaForCausalLM:
    """W + Σ cᵢ (alphaᵢ/rᵢ) Bᵢ Aᵢ from the raw files, in float64, loaded into a fresh base."""
    state = {k: v.double() for k, v in load_file(bundle / "base" / "model.safetensors").items()}
    for aspect, c in coefficients.items():
        folder = bundle / "adapters" / aspect
        config = json.loads((folder / "adapter_config.json").read_text())
        tensors = load_file(folder / "adapter_model.safetensors")
        for key, A in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            B = tensors[key.replace(".lora_A.", ".lora_B.")]
            r = A.shape[0]
            scale = config["lora_alpha"] / (math.sqrt(r) if config["use_rslora"] else r)
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            state[module + ".weight"] += c * scale * (B.double() @ A.double())
    model = LlamaForCausalLM.from_pretrained(bundle / "base")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


@torch.no_grad()
def logits(model) -> torch.Tensor:
    return model(input_ids=INPUT_IDS).logits


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    err = (actual - expected).abs().max().item()
    assert err < TOL, f"max |logit difference| {err:.3g} >= {TOL}"


def run_cli(*args: str) -> int:
    return main(["merge", *map(str, args)])


def point_args(point: dict) -> list[str]:
    if "coefficients" in point:
        return ["--coefficients", ",".join(f"{a}={c}" for a, c in point["coefficients"].items())]
    return ["--weights", ",".join(f"{a}={w}" for a, w in point["weights"].items()),
            "--alpha", str(point["alpha"])]


# ---------------------------------------------------------------------- exactness


def test_reference_is_not_trivial(bundle):
    """Guard the guard: each aspect really moves the logits, so the comparisons can fail."""
    base = logits(reference_model(bundle, {a: 0.0 for a in ASPECTS}))
    for aspect in ASPECTS:
        moved = logits(reference_model(bundle, {a: float(a == aspect) for a in ASPECTS}))
        assert (moved - base).abs().max() > 1e-2


@pytest.mark.parametrize("point", POINTS, ids=lambda p: json.dumps(p)[:60])
def test_live_and_fused_match_reference(peo, bundle, point):
    expected = logits(reference_model(bundle, coefficients_of(point)))
    kwargs = {k: v for k, v in point.items()}
    pref = peo.set_preference(**kwargs)
    assert pref.coefficients == pytest.approx(coefficients_of(point), abs=1e-12)
    assert peo.coefficients == pytest.approx(coefficients_of(point), abs=1e-12)
    assert not peo.fused
    assert_close(logits(peo.model), expected)
    peo.set_preference(**kwargs, fuse=True)
    assert peo.fused
    assert_close(logits(peo.model), expected)
    peo.set_preference(**kwargs)  # back to live: unmerged again
    assert_close(logits(peo.model), expected)


def _base_weights(peo: PEOModel) -> dict[str, torch.Tensor]:
    return {n: p for n, p in peo.model.named_parameters() if "lora_" not in n}


def test_live_switch_copies_no_weights(peo):
    peo.set_preference({"helpful": 1.0})
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in _base_weights(peo).items()}
    for point in POINTS:
        peo.set_preference(**point)
    for name, param in _base_weights(peo).items():
        ptr, value = before[name]
        assert param.data_ptr() == ptr, name
        assert torch.equal(param, value), name


def test_many_switches_drift_only_by_rounding(peo, bundle):
    """Fuse/unfuse round trips may only add float32 rounding, bounded per operation.

    Each merge or unmerge of one adapter rounds every weight by at most half an ulp of the
    largest value it held while fused, so after ``k`` round trips over ``n`` adapters the
    drift is at most ``k * n * ulp(peak)``; a wrong unmerge (other scales, missed layer)
    would instead leave a whole delta behind, orders of magnitude more.
    """
    peo.set_preference({"helpful": 1.0})
    weights = _base_weights(peo)
    original = {n: p.detach().clone() for n, p in weights.items()}
    peak = {n: p.abs().max().item() for n, p in weights.items()}
    rng = random.Random(3)
    round_trips = 0
    for i in range(60):
        point = POINTS[rng.randrange(len(POINTS))]
        fuse = i % 2 == 0 or rng.random() < 0.3
        peo.set_preference(**point, fuse=fuse)
        if fuse:
            round_trips += 1
            for n, p in weights.items():
                peak[n] = max(peak[n], p.abs().max().item())
    final = POINTS[0]
    peo.set_preference(**final, fuse=True)
    assert_close(logits(peo.model), logits(reference_model(bundle, coefficients_of(final))))
    peo.set_preference(**final)  # live: weights must be back to the base's, up to rounding
    eps = torch.finfo(torch.float32).eps
    worst = 0.0
    for name, param in weights.items():
        drift = (param - original[name]).abs().max().item()
        bound = (round_trips + 1) * len(ASPECTS) * eps * peak[name]
        assert drift <= bound, f"{name} drifted by {drift:.3g} > rounding bound {bound:.3g}"
        worst = max(worst, drift / max(peak[name], 1e-30))
    assert worst < 1e-5


@pytest.mark.parametrize("dtype, exact", [("float32", True), ("bfloat16", None)])
def test_exact_unfuse_restores_weights_bitwise(bundle, dtype, exact):
    """With exact_unfuse (the default for half precision) many switches leave no drift at all."""
    peo = PEOModel.from_pretrained(bundle, torch_dtype=dtype, exact_unfuse=exact)
    assert peo.exact_unfuse
    weights = _base_weights(peo)
    original = {n: p.detach().clone() for n, p in weights.items()}
    for i in range(20):
        peo.set_preference(**POINTS[i % len(POINTS)], fuse=True)
        if i == 0:
            assert any(not torch.equal(p, original[n]) for n, p in weights.items())
    peo.set_preference(**POINTS[0])
    assert all(torch.equal(p, original[n]) for n, p in weights.items())
    assert not any(layer.merged for layer in peo._layers)


def test_invalid_preference_changes_nothing(peo):
    peo.set_preference({"helpful": 0.3, "harmless": 0.7}, alpha=0.5, fuse=True)
    before = peo.coefficients
    for bad in ({"weights": {"helpfull": 1.0}}, {"weights": {"helpful": -1.0, "harmless": 2.0}},
                {"weights": {"helpful": 0.0}}, {}, {"coefficients": {"helpful": 1.0}, "alpha": 0.5}):
        with pytest.raises(PreferenceError):
            peo.set_preference(**bad)
        assert peo.coefficients == before and peo.fused
    peo.set_preference({"helpful": 1.0})


def test_chat_stream_and_fused_agree(peo):
    peo.set_preference({"helpful": 0.8, "harmless": 0.2}, alpha=1.0)
    live = peo.chat("how do i bake bread ?", max_new_tokens=6)
    streamed = "".join(peo.stream_chat([{"role": "user", "content": "how do i bake bread ?"}],
                                       max_new_tokens=6))
    peo.set_preference({"helpful": 0.8, "harmless": 0.2}, alpha=1.0, fuse=True)
    fused = peo.chat("how do i bake bread ?", max_new_tokens=6)
    peo.set_preference({"helpful": 1.0})
    assert live and live == fused
    assert streamed.strip() == live


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


# ---------------------------------------------------------------------- guard rails


@pytest.fixture()
def wrong_base_bundle(tmp_path) -> Path:
    """A bundle whose 'harmless' adapter was trained on a wider base (hidden 48, not 32)."""
    root = make_fake_bundle(tmp_path / "wrong")
    make_base(tmp_path / "other", hidden=48)
    shutil.rmtree(root / "adapters" / "harmless")
    make_adapter(tmp_path / "other", root / "adapters" / "harmless", seed=9)
    return root


def cli_error(capsys, *args) -> int:
    """Run ``peo-hub merge`` with stderr captured from here on (fixtures may have printed)."""
    capsys.readouterr()
    return run_cli(*args)


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


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


@pytest.mark.parametrize("as_", ["adapter", "yaml", "model"])
def test_cli_refuses_adapter_from_another_base(wrong_base_bundle, tmp_path, capsys, as_):
    out = tmp_path / "o" / ("p.yaml" if as_ == "yaml" else "x")
    assert cli_error(capsys, wrong_base_bundle, "--weights", "helpful=1", "--output", out, "--as", as_) == 2
    _one_line_error(capsys, "harmless", "different base")
    assert not (tmp_path / "o").exists()


def test_peomodel_refuses_adapter_from_another_base(wrong_base_bundle):
    with pytest.raises(BundleError, match="different base"):
        PEOModel.from_pretrained(wrong_base_bundle)


def test_cli_refuses_adapter_declaring_another_hub_base(tmp_path, capsys):
    root = make_fake_bundle(tmp_path / "b")
    manifest = load_manifest(root)
    manifest.base_model = "org/base-a"  # a Hub base: only names can be compared offline
    save_manifest(root, manifest)
    config_file = root / "adapters" / "harmless" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = "org/base-b"
    config_file.write_text(json.dumps(config))
    assert cli_error(capsys, root, "--weights", "helpful=1", "--output", tmp_path / "p.yaml", "--as", "yaml") == 2
    _one_line_error(capsys, "org/base-b", "org/base-a")


def test_cli_refuses_dora_adapter(tmp_path, capsys):
    root = make_fake_bundle(tmp_path / "b", adapter_options={"harmless": {"use_dora": True}})
    assert cli_error(capsys, root, "--weights", "helpful=1", "--output", tmp_path / "x") == 2
    _one_line_error(capsys, "use_dora")


def test_coefficient_range_warnings(bundle, tmp_path, caplog):
    def warned(*args: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="peo_hub"):
            assert run_cli(bundle, *args, "--output", tmp_path / "p.yaml", "--as", "yaml") == 0
        return [r.getMessage() for r in caplog.records]

    assert warned("--weights", "helpful=1", "--alpha", "1") == []
    (far,) = warned("--coefficients", "helpful=3.5")
    assert "helpful=3.5" in far and "\n" not in far
    manifest = load_manifest(bundle)
    manifest.recipe = {"sweep": {"weights": 5, "alpha": [0, 0.5]}}
    save_manifest(bundle, manifest)
    try:
        (outside,) = warned("--weights", "helpful=1", "--alpha", "1")  # c = 2 > 1.5 evaluated
        assert "outside the evaluated range" in outside
        assert warned("--weights", "helpful=1", "--alpha", "0.5") == []
    finally:
        manifest.recipe = {}
        save_manifest(bundle, manifest)


def test_fused_forward_has_no_lora_wrappers(peo):
    """Fused generation runs the plain base modules; switching back restores live LoRA."""
    from peft.tuners.lora import LoraLayer

    def wrappers() -> int:
        return sum(isinstance(m, LoraLayer) for m in peo.model.modules())

    live = wrappers()
    assert live > 0
    peo.set_preference({"helpful": 0.7, "harmless": 0.3}, alpha=0.5, fuse=True)
    assert wrappers() == 0
    peo.set_preference({"helpful": 0.2, "harmless": 0.8}, alpha=0.5, fuse=True)
    assert wrappers() == 0
    peo.set_preference({"helpful": 0.2, "harmless": 0.8})
    assert wrappers() == live
