"""PEOModel: live and fused preferences equal ``base + Σ cᵢ Δᵢ`` computed independently from the
raw files; switching copies nothing and drifts only by rounding; bad input changes nothing."""

from __future__ import annotations

import json
import logging
import random

import pytest
import torch

from peo_hub import PEOModel
from peo_hub.bundle.manifest import load_manifest, save_manifest
from peo_hub.utils.errors import BundleError, PreferenceError
from reference import (ASPECTS, POINTS, assert_close, coefficients_of, logits, reference_model, run_cli)
from reference import bundle, peo, wrong_base_bundle  # noqa: F401  (fixtures)


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


def test_peomodel_refuses_adapter_from_another_base(wrong_base_bundle):
    with pytest.raises(BundleError, match="different base"):
        PEOModel.from_pretrained(wrong_base_bundle)


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


def test_the_sweep_silences_range_warnings_only_on_its_own_model(bundle, caplog):
    """The sweep measures points past its grid on purpose; a user's model still warns."""
    from peo_hub.evaluate.sweep import _measuring_model

    def warned(model: PEOModel) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="peo_hub"):
            model.set_preference(coefficients={"helpful": 3.5, "harmless": 0.0, "concise": 0.0})
            model.generate(input_ids=torch.tensor([[1, 5, 6]]), max_new_tokens=1,
                           preferences=[{"coefficients": {"helpful": 3.5, "harmless": 0.0, "concise": 0.0}}])
        return [r.getMessage() for r in caplog.records]

    assert len(warned(PEOModel.from_pretrained(bundle))) == 2  # set_preference, then the batch
    assert warned(_measuring_model(bundle, None)) == []


def test_export_adapter_never_deletes_what_is_not_an_export(peo, bundle, tmp_path):
    from peo_hub.utils.errors import OutputError

    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(OutputError, match="not an earlier output"):
        peo.export_adapter(notes)
    assert (notes / "todo.txt").read_text() == "mine" and (notes / "sub").is_dir()
    own = bundle / "adapters" / "helpful"
    before = sorted(p.name for p in own.iterdir())
    with pytest.raises(OutputError):
        peo.export_adapter(own)  # once, this deleted the bundle's own adapter
    assert sorted(p.name for p in own.iterdir()) == before
    out = peo.export_adapter(tmp_path / "point")
    assert (out / "peo_merge.json").is_file()
    peo.set_preference({"helpful": 1.0}, alpha=0.5)
    assert peo.export_adapter(out) == out  # an earlier export is replaced as a whole


def test_presets_and_front_are_exposed(peo):
    assert peo.front is None and peo.presets == {}
    with pytest.raises(Exception, match="unknown preset 'balanced'"):
        peo.preset("balanced")
