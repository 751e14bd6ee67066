"""Serving limits (peo_hub.publish.rank, ``peo-hub merge --as adapter [--max-rank K]``).

The exported point adapter has rank Σrᵢ; merge prints the vLLM ``--max-lora-rank`` it needs.
``--max-rank`` writes the best rank-K approximation of every module's delta (checked against an
SVD of the reference delta computed here), and the measured logit and judge-score change is
printed; cutting nothing must measure (almost) nothing, cutting to rank 1 must not.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from peo_hub.bundle.manifest import load_manifest, open_bundle, save_manifest
from peo_hub.cli import main
from peo_hub.family.lora import PEFT_PREFIX, load_bundle_adapters, truncate_rank
from peo_hub.core.policy import make_preference
from peo_hub.recipe.schema import evaluation_of
from peo_hub.publish.rank import measure_truncation, rank_advice, vllm_max_lora_rank
from reference import ASPECTS, make_merge_bundle, module_alpha

COEFFICIENTS = {"helpful": 1.2, "harmless": 0.6, "concise": -0.3}
EVALUATION = {"seed": 0, "aspects": {a: {"judge": {"type": "toy_helpful" if a != "harmless" else "toy_harmless"}}
                                     for a in ASPECTS},
              "sweep": {"weights": 2, "alpha": [0.0, 0.5]},
              "evaluate": {"prompts": ["how do i bake bread ?", "how do i pick lock ?"], "samples": 2,
                           "max_new_tokens": 6, "temperature": 1.0}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = make_merge_bundle(tmp_path_factory.mktemp("serving") / "bundle")
    manifest = load_manifest(root)
    manifest.recipe = EVALUATION  # what `peo-hub evaluate` records
    save_manifest(root, manifest)
    return root


def _reference_deltas(bundle: Path, coefficients: dict[str, float]) -> dict[str, torch.Tensor]:
    """Module -> Σ cᵢ sᵢ Bᵢ Aᵢ from the raw files (float64)."""
    deltas: dict[str, torch.Tensor] = {}
    for aspect, c in coefficients.items():
        folder = bundle / "adapters" / aspect
        config = json.loads((folder / "adapter_config.json").read_text())
        tensors = load_file(folder / "adapter_model.safetensors")
        for key, A in tensors.items():
            if key.endswith(".lora_A.weight"):
                module = key.removeprefix(PEFT_PREFIX).removesuffix(".lora_A.weight")
                r = A.shape[0]
                scale = module_alpha(config, module) / (math.sqrt(r) if config.get("use_rslora") else r)
                delta = c * scale * (tensors[key.replace("lora_A", "lora_B")].double() @ A.double())
                deltas[module] = deltas.get(module, 0) + delta
    return deltas


def _ranks(bundle: Path) -> int:
    """The exported rank: the largest per-module sum of the aspects' ranks, read from the files."""
    sums: dict[str, int] = {}
    for aspect in ASPECTS:
        for key, A in load_file(bundle / "adapters" / aspect / "adapter_model.safetensors").items():
            if key.endswith(".lora_A.weight"):
                sums[key] = sums.get(key, 0) + A.shape[0]
    return max(sums.values())


def test_vllm_rank_buckets() -> None:
    # vLLM's accepted --max-lora-rank values: 8, 16, 32, 64, 128, 256, 320, 512
    assert [vllm_max_lora_rank(r) for r in (1, 8, 9, 16, 17, 257, 320, 321, 512, 513)] == \
        [8, 8, 16, 16, 32, 320, 320, 512, 512, None]
    assert "--max-rank 512" in rank_advice(600) and "--max-lora-rank 16" in rank_advice(9)


def test_truncation_is_the_best_rank_k_approximation() -> None:
    torch.manual_seed(0)
    A, B = torch.randn(7, 12), torch.randn(9, 7)
    state = {f"{PEFT_PREFIX}m.lora_A.weight": A, f"{PEFT_PREFIX}m.lora_B.weight": B,
             f"{PEFT_PREFIX}e.lora_embedding_A": A, f"{PEFT_PREFIX}e.lora_embedding_B": B}
    cut, rank, errors = truncate_rank(state, 3)
    u, s, vh = torch.linalg.svd((B @ A).double())
    best = (u[:, :3] * s[:3]) @ vh[:3]
    assert rank == 3 and cut[f"{PEFT_PREFIX}m.lora_A.weight"].shape == (3, 12)
    for a_key, b_key in (("m.lora_A.weight", "m.lora_B.weight"), ("e.lora_embedding_A", "e.lora_embedding_B")):
        product = cut[PEFT_PREFIX + b_key].double() @ cut[PEFT_PREFIX + a_key].double()
        assert torch.allclose(product, best, atol=1e-4)
    assert errors["m"] == pytest.approx(float(s[3:].norm() / s.norm()), rel=1e-6)
    kept, same_rank, none = truncate_rank(state, 7)  # nothing to cut: the exact factors are kept
    assert same_rank == 7 and none["m"] == 0.0 and torch.equal(kept[f"{PEFT_PREFIX}m.lora_A.weight"], A)


def test_merge_prints_the_max_lora_rank_vllm_needs(bundle, tmp_path, capsys) -> None:
    arg = ",".join(f"{a}={c}" for a, c in COEFFICIENTS.items())
    capsys.readouterr()
    assert main(["merge", str(bundle), "--coefficients", arg, "--output", str(tmp_path / "p")]) == 0
    rank = _ranks(bundle)
    assert json.loads((tmp_path / "p" / "adapter_config.json").read_text())["r"] == rank
    expected = min(r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank)
    assert f"rank {rank}: serve it with vLLM --enable-lora --max-lora-rank {expected}" in capsys.readouterr().out


def test_max_rank_writes_the_svd_truncation_and_reports_what_it_cost(bundle, tmp_path, capsys) -> None:
    arg = ",".join(f"{a}={c}" for a, c in COEFFICIENTS.items())
    capsys.readouterr()
    assert main(["merge", str(bundle), "--coefficients", arg, "--output", str(tmp_path / "p"), "--max-rank", "3"]) == 0
    out = capsys.readouterr().out
    state = load_file(tmp_path / "p" / "adapter_model.safetensors")
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 3
    for module, delta in _reference_deltas(bundle, COEFFICIENTS).items():
        u, s, vh = torch.linalg.svd(delta)
        best = (u[:, :3] * s[:3]) @ vh[:3]
        got = state[f"{PEFT_PREFIX}{module}.lora_B.weight"].double() @ state[f"{PEFT_PREFIX}{module}.lora_A.weight"].double()
        assert torch.allclose(got, best, atol=1e-5), module
    meta = json.loads((tmp_path / "p" / "peo_merge.json").read_text())
    assert meta["truncated_from_rank"] == _ranks(bundle) and meta["relative_error"]["max"] > 0
    assert "--max-lora-rank 8" in out and "truncated from rank" in out and "logits over" in out
    assert "judge scores, truncated vs exact" in out and "helpful" in out and "concise" in out
    assert "SVD" in (tmp_path / "p" / "README.md").read_text()


def test_the_measurement_sees_nothing_when_nothing_is_cut_and_something_at_rank_1(bundle) -> None:
    opened = open_bundle(bundle)
    adapters = load_bundle_adapters(opened)
    preference = make_preference(opened.aspects, coefficients=COEFFICIENTS)
    evaluation = evaluation_of(opened.manifest.recipe)
    full = measure_truncation(opened, adapters, preference, max_rank=_ranks(bundle), evaluation=evaluation)
    assert full.logit_max < 1e-4 and full.top1_agreement == 1.0
    assert all(exact == cut for exact, cut in full.judges.values()) and full.replies == 4  # same seed, same replies
    one = measure_truncation(opened, adapters, preference, max_rank=1, evaluation=evaluation)
    assert one.logit_max > 1e-3 and one.positions == full.positions and max(one.module_error.values()) > 0.1


@pytest.mark.parametrize("args, needle", [
    (["--as", "yaml", "--max-rank", "4"], "use it with --as adapter"),
    (["--max-rank", "0"], "at least 1"),
])
def test_max_rank_mistakes_are_one_line(bundle, tmp_path, capsys, args, needle) -> None:
    capsys.readouterr()
    output = tmp_path / ("p.yaml" if "yaml" in args else "p")
    assert main(["merge", str(bundle), "--weights", "helpful=1", "--output", str(output), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err, err
    assert not output.exists()
