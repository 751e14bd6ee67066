"""Shared by the merge-engine tests (test_model, test_export, test_lora): a bundle whose adapters
differ (ranks 4/2/3, different lora_alpha, one with rsLoRA and only three target modules) and
``base + Σ cᵢ Δᵢ`` computed independently from the raw safetensors files, in float64.
"""

from __future__ import annotations
import json
import math
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM
from fakes import make_adapter, make_base, make_fake_bundle
from peo_hub.cli import main

if TYPE_CHECKING:
    from peo_hub import PEOModel


def _random_points(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    points = []
    for _ in range(n):
        weights = {a: rng.random() for a in ASPECTS}
        points.append({"weights": weights, "alpha": rng.uniform(0.0, 1.5)})
    return points


ASPECTS = ("helpful", "harmless", "concise")

ADAPTER_OPTIONS = {
    "helpful": {"r": 4, "lora_alpha": 8},
    "harmless": {"r": 2, "lora_alpha": 3, "use_rslora": True,
                 "target_modules": ["q_proj", "v_proj", "down_proj"]},
    "concise": {"r": 3, "lora_alpha": 5},
}

TOL = 1e-5

INPUT_IDS = torch.tensor([[1, 5, 6, 7, 8, 9, 10, 4, 12, 13], [1, 14, 15, 16, 17, 18, 19, 20, 4, 5]])

POINTS = [
    {"weights": {"helpful": 0.8, "harmless": 0.2}, "alpha": 1.0},
    {"coefficients": {"helpful": 1.5, "harmless": -0.5, "concise": 0.25}},
    {"weights": {a: 1.0 for a in ASPECTS}, "alpha": 0.0},
    *_random_points(2, seed=7),
]


def coefficients_of(point: dict) -> dict[str, float]:
    """c = (1 + alpha) * normalised w, or the raw coefficients: computed here, not by peo_hub."""
    if "coefficients" in point:
        return {a: point["coefficients"].get(a, 0.0) for a in ASPECTS}
    total = sum(point["weights"].values())
    return {a: (1 + point["alpha"]) * point["weights"].get(a, 0.0) / total for a in ASPECTS}


def module_alpha(config: dict, module: str) -> float:
    """lora_alpha of one module: an alpha_pattern key naming the module's last parts wins (simple suffix rule)."""
    for key, alpha in (config.get("alpha_pattern") or {}).items():
        if module == key or module.endswith("." + key):
            return alpha
    return config["lora_alpha"]


def reference_model(bundle: Path, coefficients: dict[str, float]) -> LlamaForCausalLM:
    """W + Σ cᵢ (alphaᵢ/rᵢ) Bᵢ Aᵢ from the raw files, in float64, loaded into a fresh base.

    Per module: r is the tensor's rank (so rank_pattern is honoured), alpha comes from
    alpha_pattern when a key names the module, and rsLoRA divides by √r instead of r.
    """
    state = {k: v.double() for k, v in load_file(bundle / "base" / "model.safetensors").items()}
    for aspect, c in coefficients.items():
        folder = bundle / "adapters" / aspect
        config = json.loads((folder / "adapter_config.json").read_text())
        tensors = load_file(folder / "adapter_model.safetensors")
        for key, A in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            B = tensors[key.replace(".lora_A.", ".lora_B.")]
            r = A.shape[0]  # the real rank of this module (rank_pattern shows in the tensor)
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            scale = module_alpha(config, module) / (math.sqrt(r) if config["use_rslora"] else r)
            state[module + ".weight"] += c * scale * (B.double() @ A.double())
    model = LlamaForCausalLM.from_pretrained(bundle / "base")
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)  # tied: one tensor
    return model.eval()


@torch.no_grad()
def logits(model) -> torch.Tensor:
    return model(input_ids=INPUT_IDS).logits


def assert_close(actual: torch.Tensor, expected: torch.Tensor, relative: bool = False) -> None:
    """Within ``TOL``; ``relative``: within ``TOL`` of the largest logit (a real model's logits reach ~30,
    where float32 alone rounds at ~2e-6 per operation)."""
    err = (actual - expected).abs().max().item()
    tol = TOL * max(1.0, expected.abs().max().item()) if relative else TOL
    assert err < tol, f"max |logit difference| {err:.3g} >= {tol:.3g}"


def run_cli(*args: str) -> int:
    return main(["merge", *map(str, args)])


def point_args(point: dict) -> list[str]:
    if "coefficients" in point:
        return ["--coefficients", ",".join(f"{a}={c}" for a, c in point["coefficients"].items())]
    return ["--weights", ",".join(f"{a}={w}" for a, w in point["weights"].items()),
            "--alpha", str(point["alpha"])]


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


def make_merge_bundle(root: Path) -> Path:
    return make_fake_bundle(root, aspects=ASPECTS, adapter_options=ADAPTER_OPTIONS)


def make_wrong_base_bundle(tmp_path: Path) -> Path:
    """A bundle whose 'harmless' adapter was trained on a wider base (hidden 48, not 32)."""
    root = make_fake_bundle(tmp_path / "wrong")
    make_base(tmp_path / "other", hidden=48)
    shutil.rmtree(root / "adapters" / "harmless")
    make_adapter(tmp_path / "other", root / "adapters" / "harmless", seed=9)
    return root


# Fixtures shared by test_model, test_lora and test_export (imported there by name).


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three-aspect merge bundle (rsLoRA and rank/alpha patterns included), built once per module."""
    return make_merge_bundle(tmp_path_factory.mktemp("merge") / "bundle")


@pytest.fixture(scope="module")
def peo(bundle: Path) -> "PEOModel":
    from peo_hub import PEOModel

    return PEOModel.from_pretrained(bundle)


@pytest.fixture()
def wrong_base_bundle(tmp_path: Path) -> Path:
    return make_wrong_base_bundle(tmp_path)
