"""The packed live path (peo_hub.family.multilora): one ``B @ (c ⊙ (A @ x))`` per module for all aspects.

Held to the exact ``W + Σ cᵢ Δᵢ`` (tests/reference.py: merged from the raw files in float64,
loaded as float32): max |Δlogit| < 1e-5, relative to the largest logit (``assert_close``), for
live, per-row and fused, on the three-aspect merge bundle (ranks 4/2/3, rsLoRA, a module only
some aspects adapt) and on the truncated SmolLM2. PEFT's per-adapter path stays selectable and
agrees within the same tolerance. Rows are batch-invariant bitwise: a row's logits do not depend
on the batch size or its neighbours, and a row at preference p is bitwise the live model at p.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from peo_hub import PEOModel
from peo_hub.utils.errors import PEOError
from peo_hub.family.multilora import PACKED_A, PACKED_BT
from reference import INPUT_IDS, POINTS, assert_close, coefficients_of, logits, reference_model
from reference import bundle, peo  # noqa: F401  (fixtures)


def _lora_A_calls(model: PEOModel) -> list[int]:
    """A counter of calls into PEFT's own per-adapter ``lora_A`` modules (hooks on PEFT's modules)."""
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    for layer in model._layers:
        for module in layer.lora_A.values():
            module.register_forward_hook(count)
    return calls


@torch.no_grad()
def _row_logits(model: PEOModel, ids: torch.Tensor, points: list[dict]) -> torch.Tensor:
    with model.row_preferences(points, rows=len(ids)):
        return model.model(input_ids=ids).logits


def test_every_lora_linear_is_packed_and_peft_products_are_not_run(bundle):
    from peft.tuners.lora import Linear

    model = PEOModel.from_pretrained(bundle)
    assert model.live_path == "packed"
    linears = [layer for layer in model._layers if isinstance(layer, Linear)]
    assert len(model._multilora.layers) == len(linears) == 14 and not model._multilora.fallback
    # two rank layouts: q_proj/v_proj/down_proj have all three aspects, the other modules two
    assert sorted(len(g.live) for g in model._multilora.groups) == [4 + 3, 4 + 2 + 3]
    calls = _lora_A_calls(model)
    logits(model.model)
    assert calls[0] == 0
    model.live_path = "peft"
    logits(model.model)
    assert calls[0] == 14 * 3 - 2 * 4  # harmless adapts 3 of the 7 modules of each of 2 layers
    assert all(PACKED_A not in layer._buffers for layer in linears)


@pytest.mark.parametrize("path", ["packed", "peft"])
def test_live_matches_the_exact_sum_on_both_paths(peo, bundle, path):
    peo.live_path = path
    try:
        for point in POINTS:
            peo.set_preference(**point)
            assert_close(logits(peo.model), logits(reference_model(bundle, coefficients_of(point))))
    finally:
        peo.live_path = "packed"


def test_rows_match_the_exact_sum_of_their_own_point(peo, bundle):
    ids = torch.cat([INPUT_IDS, INPUT_IDS, INPUT_IDS[:1]])  # 5 rows, 5 points; equal prompts, other policies
    together = _row_logits(peo, ids, POINTS)
    for k, point in enumerate(POINTS):
        want = reference_model(bundle, coefficients_of(point))(input_ids=ids[k:k + 1]).logits.detach()
        assert_close(together[k:k + 1], want)
    assert (together[0] - together[2]).abs().max() > 1e-2  # the rows really are different policies


def test_fused_and_back_to_live_match_the_exact_sum(peo, bundle):
    point = POINTS[1]
    want = logits(reference_model(bundle, coefficients_of(point)))
    peo.set_preference(**point, fuse=True)
    assert_close(logits(peo.model), want)
    with torch.no_grad():  # a mixed batch on a fused model runs packed, then fuses again
        rows = _row_logits(peo, INPUT_IDS, [point, point])
    assert peo.fused
    assert_close(rows, want)
    peo.set_preference(**point)
    assert_close(logits(peo.model), want)


IDS = torch.randint(1, 20, (8, 6), generator=torch.Generator().manual_seed(0))
ROW_POINTS = [{"coefficients": {"helpful": 0.3 * k, "harmless": 1 - 0.1 * k, "concise": -0.2 * k}} for k in range(8)]


def test_a_row_at_preference_p_is_bitwise_the_live_model_at_p(peo):
    for k in (0, 5):
        peo.set_preference(**ROW_POINTS[k])
        with torch.no_grad():
            live = peo.model(input_ids=IDS).logits
        assert torch.equal(live[k], _row_logits(peo, IDS, ROW_POINTS)[k])
    peo.set_preference({"helpful": 1.0})


@pytest.fixture
def one_thread():
    """One torch thread: with two, this CPU's matrix products give a row other last bits in a
    bigger batch even with no adapter at all (PEFT's path likewise), which would hide ours."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_rows_are_as_batch_invariant_as_the_base_model(peo, one_thread):
    """A row's numbers do not depend on how many rows share the batch or which preferences they have.

    The yardstick is the base model itself (adapters disabled) at the same shapes: where its kernels
    give a row the same bits at every batch size, so must the packed path; where they do not (tiny
    one-token products: ~5e-8 here), the packed rows may move by that much, not more. A row reading
    another row's coefficients would move by ~1e-2.
    """
    for step in (6, 1):  # a prompt, and decoding's one token per row
        ids = IDS[:, :step]
        with peo.peft_model.disable_adapter(), torch.no_grad():
            plain = [peo.model(input_ids=ids[:n]).logits[0] for n in (1, 2, 5, 8)]
        base_moves = max((p - plain[0]).abs().max().item() for p in plain)
        alone = _row_logits(peo, ids[:1], ROW_POINTS[:1])[0]
        rows = [_row_logits(peo, ids[:n], ROW_POINTS[:n])[0] for n in (2, 5, 8)]
        rows.append(_row_logits(peo, ids.flip(0), ROW_POINTS[::-1])[-1])  # other company, last place
        moves = max((r - alone).abs().max().item() for r in rows)
        # bitwise wherever the base is (the 6-token prompts, on this CPU)
        assert moves <= 2 * base_moves, f"{step}-token rows move by {moves:.3g}, the base model by {base_moves:.3g}"


def test_a_switch_writes_the_coefficients_in_place(peo):
    group = max(peo._multilora.groups, key=lambda g: len(g.live))
    ptr = group.live.data_ptr()
    with torch.inference_mode():  # switching inside inference mode (a server's handler) works too
        peo.set_preference(coefficients={"helpful": 2.0, "harmless": -1.0, "concise": 0.5})
    assert group.live.data_ptr() == ptr and group.c is group.live
    scales = [s for _, _, s in group.layout]
    assert group.live.tolist() == pytest.approx([2.0 * scales[0]] * 4 + [-1.0 * scales[1]] * 2 + [0.5 * scales[2]] * 3)
    with peo.row_preferences(POINTS[:2]):
        assert tuple(group.c.shape) == (2, 1, 9)
    assert group.c is group.live  # the per-row tensor is gone after the block
    peo.set_preference({"helpful": 1.0})


def test_a_row_count_that_does_not_match_the_batch_is_one_clear_error(peo):
    with peo.row_preferences(POINTS[:3]), torch.no_grad():
        with pytest.raises(PEOError, match="3 preferences for inputs of shape"):
            peo.model(input_ids=INPUT_IDS)


def test_the_packed_factors_follow_the_model_to_another_dtype(bundle):
    """The stacked factors are (non-persistent) buffers: ``.to()`` converts them with the model."""
    model = PEOModel.from_pretrained(bundle)
    model.set_preference(**POINTS[1])
    model.model.double()
    assert all(layer._buffers[name].dtype == torch.float64
               for layer in model._multilora.layers for name in (PACKED_A, PACKED_BT))
    assert not any(PACKED_A in key for key in model.peft_model.state_dict())  # never saved
    packed = logits(model.model)
    assert packed.dtype == torch.float64
    model.live_path = "peft"
    assert (packed - logits(model.model)).abs().max().item() < 1e-6  # c itself stays float32


def test_live_path_is_chosen_by_argument_or_environment(bundle, monkeypatch):
    monkeypatch.setenv("PEO_HUB_LIVE_PATH", "peft")
    model = PEOModel.from_pretrained(bundle)
    assert model.live_path == "peft" and all("forward" not in layer.__dict__ for layer in model._layers)
    assert PEOModel.from_pretrained(bundle, live_path="packed").live_path == "packed"
    with pytest.raises(PEOError, match="unknown live path 'fast'.*packed, peft"):
        model.live_path = "fast"


# ------------------------------------------------------------------ the truncated real SmolLM2


@pytest.fixture(scope="module")
def smol(tmp_path_factory) -> tuple[Path, PEOModel]:
    """All seven linear modules, two aspects of different rank and scale (rsLoRA), GQA, tied embeddings."""
    from llamacpp_check import random_adapter
    from peo_hub.cli import main
    from smollm2 import truncated_smollm2

    base = truncated_smollm2()
    root = tmp_path_factory.mktemp("smol-multilora")
    random_adapter(base, root / "helpful", seed=1, r=8, lora_alpha=16, target_modules="all-linear")
    random_adapter(base, root / "harmless", seed=2, r=4, lora_alpha=4, use_rslora=True,
                   target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"])
    assert main(["compose", str(base), "--adapter", f"helpful={root / 'helpful'}",
                 "--adapter", f"harmless={root / 'harmless'}", "--output", str(root / "bundle")]) == 0
    return root / "bundle", PEOModel.from_pretrained(root / "bundle")


def test_smollm2_live_rows_and_peft_path_match_the_exact_sum(smol):
    bundle, model = smol
    points = [{"weights": {"helpful": 0.7, "harmless": 0.3}, "alpha": 0.5},
              {"coefficients": {"helpful": 1.5, "harmless": -0.5}}]
    wants = [logits(reference_model(bundle, {"helpful": 1.05, "harmless": 0.45})),
             logits(reference_model(bundle, {"helpful": 1.5, "harmless": -0.5}))]
    assert len(model._multilora.layers) == 2 * 7
    for point, want in zip(points, wants):
        model.set_preference(**point)
        assert_close(logits(model.model), want, relative=True)
        model.live_path = "peft"
        assert_close(logits(model.model), want, relative=True)
        model.live_path = "packed"
    ids = torch.cat([INPUT_IDS, INPUT_IDS])
    rows = _row_logits(model, ids, [points[0], points[1], points[1], points[0]])
    for k, want in enumerate([wants[0][:1], wants[1][1:], wants[1][:1], wants[0][1:]]):
        assert_close(rows[k:k + 1], want, relative=True)


def test_the_prompts_last_position_reaches_the_head_as_one_matrix_product(bundle):
    """PEFT freezes the head's weight, and torch.matmul then ran the strided ``hidden[:, -1:]`` as one
    matrix-vector product per row (365 ms against 40 ms at batch 32 on SmolLM2); the base model never did."""
    from torch.profiler import ProfilerActivity, profile

    model = PEOModel.from_pretrained(bundle)
    ids = torch.cat([INPUT_IDS, INPUT_IDS])

    def ops() -> set[str]:
        with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
            out = model.model(input_ids=ids, logits_to_keep=1).logits
        assert out.shape[:2] == (4, 1)
        return {event.key for event in prof.key_averages()}

    model.set_preference(**POINTS[0], fuse=True)
    assert "aten::bmm" not in ops()
    model.set_preference(**POINTS[0])
    assert "aten::bmm" not in ops()
    model._head_hook.remove()  # without it: the per-row products are back
    assert "aten::bmm" in ops()
