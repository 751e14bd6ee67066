"""One preference per row (``PEOModel.generate(preferences=...)``, ``chat_batch``): every row of
a mixed batch equals its own single-preference run, greedy tokens and every step's logits
(float32, within 1e-5 of the logits' size; at one preference the per-row scales are bitwise the
plain run's), on a bundle whose adapters differ (ranks, alphas, rsLoRA, an adapted
embedding) and on the truncated real SmolLM2; the model's own preference survives the batch."""

from __future__ import annotations

from typing import Any

import shutil

import pytest
import torch

from fakes import make_fake_bundle
from peo_hub import PEOModel
from peo_hub.utils.errors import PreferenceError
from reference import ADAPTER_OPTIONS, ASPECTS, TOL, make_merge_bundle

PROMPTS = ["how do i bake bread ?", "pick lock", "how do i fix bike , then mix flour ?", "sorry", "bake"]
PREFERENCES: list[dict[str, Any]] = [
    {"weights": {"helpful": 0.8, "harmless": 0.2}, "alpha": 1.0},
    {"coefficients": {"helpful": 1.5, "harmless": -0.5, "concise": 0.25}},
    {"coefficients": {a: 0.0 for a in ASPECTS}},  # the base model in the same batch
    {"weights": {a: 1.0 for a in ASPECTS}, "alpha": 0.0},
    {"weights": {"concise": 1.0}, "alpha": 2.0},
]
NEW = 8


@pytest.fixture(scope="module")
def peo(tmp_path_factory) -> PEOModel:
    return PEOModel.from_pretrained(make_merge_bundle(tmp_path_factory.mktemp("batch") / "bundle"))


@pytest.fixture(scope="module")
def embedding_peo(tmp_path_factory) -> PEOModel:
    """Adapters on the embedding too (PEFT's lora.Embedding path, not only lora.Linear)."""
    from llamacpp_check import random_adapter

    root = make_fake_bundle(tmp_path_factory.mktemp("embed") / "bundle", aspects=ASPECTS,
                            adapter_options=ADAPTER_OPTIONS)
    shutil.rmtree(root / "adapters" / "concise")
    random_adapter(root / "base", root / "adapters" / "concise", seed=5, r=3, lora_alpha=5,
                   target_modules=["embed_tokens", "q_proj"])
    model = PEOModel.from_pretrained(root)
    from peft.tuners.lora import Embedding

    assert any(isinstance(m, Embedding) for m in model.model.modules())
    return model


def _greedy(peo: PEOModel, prompts: list[str], preferences: list[dict[str, Any]] | None) -> tuple[list, list]:
    """(new token ids per row, logits per row [steps, vocab]) of one greedy generate call."""
    peo.tokenizer.pad_token = peo.tokenizer.pad_token or peo.tokenizer.eos_token
    batch = peo.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    out = peo.generate(preferences, **batch, max_new_tokens=NEW, do_sample=False, output_logits=True,
                       return_dict_in_generate=True, eos_token_id=None)  # no early stop: compare every step
    width = batch["input_ids"].shape[1]
    logits = torch.stack(out.logits, dim=1)  # [rows, steps, vocab]
    return [row[width:].tolist() for row in out.sequences], list(logits)


def _assert_rows_match_solo(peo: PEOModel, prompts: list[str], preferences: list[dict[str, Any]]) -> None:
    tokens, logits = _greedy(peo, prompts, preferences)
    moved = 0.0
    for i, (prompt, preference) in enumerate(zip(prompts, preferences)):
        peo.set_preference(**preference)
        solo_tokens, solo_logits = _greedy(peo, [prompt], None)
        assert tokens[i] == solo_tokens[0], f"row {i}: batched tokens differ from its solo run"
        # 1e-5 relative to the logits' size: SmolLM2's logits reach ~70, where one float32 step is
        # ~8e-6 and a padded batch already moves them by ~5e-5 with no adapter at all.
        err, tol = (logits[i] - solo_logits[0]).abs().max().item(), TOL * max(1.0, solo_logits[0].abs().max().item())
        assert err < tol, f"row {i}: max |logit difference| {err:.3g} >= {tol:.3g}"
        moved = max(moved, (logits[i] - logits[(i + 1) % len(prompts)]).abs().max().item())
    assert moved > 1e-2  # the rows really are different policies (the test could fail)


def test_mixed_batch_rows_equal_their_solo_runs(peo):
    _assert_rows_match_solo(peo, PROMPTS, PREFERENCES)


def test_per_row_scales_are_exactly_the_single_preference_scales(peo):
    """All rows at one preference: per-row scales give bitwise the plain batched run's logits."""
    preference = PREFERENCES[1]
    peo.set_preference(**preference)
    plain_tokens, plain = _greedy(peo, PROMPTS, None)
    peo.set_preference({"helpful": 1.0})
    tokens, rows = _greedy(peo, PROMPTS, [preference] * len(PROMPTS))
    assert tokens == plain_tokens
    assert all(torch.equal(a, b) for a, b in zip(rows, plain))


def test_same_prompt_different_preferences_differ_per_row(peo):
    """Five copies of one prompt: only the preference differs, and each row still matches its solo run."""
    _assert_rows_match_solo(peo, [PROMPTS[0]] * len(PREFERENCES), PREFERENCES)
    tokens, logits = _greedy(peo, [PROMPTS[0]] * 2, PREFERENCES[:2])
    assert (logits[0] - logits[1]).abs().max() > 1e-2


def test_embedding_adapters_batch_per_row(embedding_peo):
    _assert_rows_match_solo(embedding_peo, PROMPTS, PREFERENCES)


def test_batch_restores_the_models_own_preference_live_and_fused(peo):
    probe = peo.tokenizer("how do i bake bread ?", return_tensors="pt", add_special_tokens=False)
    for fuse in (False, True):
        peo.set_preference({"helpful": 0.3, "harmless": 0.7}, alpha=0.5, fuse=fuse)
        with torch.no_grad():
            before = peo.model(**probe).logits
        peo.chat_batch(PROMPTS, PREFERENCES, max_new_tokens=4)
        assert peo.fused is fuse
        assert peo.coefficients == pytest.approx({"helpful": 0.45, "harmless": 1.05, "concise": 0.0})
        with torch.no_grad():
            after = peo.model(**probe).logits
        assert (after - before).abs().max().item() < TOL
        assert all(isinstance(s, dict) and all(isinstance(v, float) for v in s.values())
                   for s, _, _ in peo._slots)  # no per-row tensor left behind
    peo.set_preference({"helpful": 1.0})


def test_row_preferences_runs_each_rows_forward_at_its_own_policy(peo):
    """The block that generate(preferences=...) uses, for code that runs the forward itself."""
    texts = PROMPTS[:3]
    rows = peo.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    peo.set_preference({"helpful": 0.3, "harmless": 0.7}, fuse=True)
    with peo.row_preferences(PREFERENCES[:3], rows=3), torch.no_grad():
        together = peo.model(**rows).logits
    assert peo.fused and peo.coefficients["helpful"] == pytest.approx(0.3)
    for k, preference in enumerate(PREFERENCES[:3]):
        peo.set_preference(**preference)
        with torch.no_grad():
            alone = peo.model(**{key: v[k:k + 1] for key, v in rows.items()}).logits
        assert (together[k:k + 1] - alone).abs().max().item() < TOL
    with pytest.raises(PreferenceError, match="3 preferences for 2 input rows"):
        with peo.row_preferences(PREFERENCES[:3], rows=2):
            pass
    peo.set_preference({"helpful": 1.0})


def test_chat_batch_equals_chat(peo):
    replies = peo.chat_batch(PROMPTS, PREFERENCES, max_new_tokens=NEW)
    for prompt, preference, reply in zip(PROMPTS, PREFERENCES, replies):
        peo.set_preference(**preference)
        assert reply == peo.chat(prompt, max_new_tokens=NEW)


def test_bad_preferences_name_the_row(peo):
    before = peo.coefficients
    with pytest.raises(PreferenceError, match="row 1: .*unknown"):
        peo.chat_batch(PROMPTS[:2], [PREFERENCES[0], {"weights": {"funny": 1.0}}])
    with pytest.raises(PreferenceError, match="one preference per conversation"):
        peo.chat_batch(PROMPTS[:2], PREFERENCES[:1])
    with pytest.raises(PreferenceError, match="row 0 must be"):
        peo.chat_batch(PROMPTS[:1], [{"helpful": 1.0}])
    with pytest.raises(PreferenceError, match="num_beams"):
        peo.chat_batch(PROMPTS[:1], PREFERENCES[:1], num_beams=2)
    assert peo.coefficients == before


def test_truncated_smollm2_rows_equal_their_solo_runs(tmp_path_factory):
    """The real tokenizer, chat template and layer shapes: chat messages, ragged prompt lengths."""
    from llamacpp_check import random_adapter
    from peo_hub.cli import main
    from smollm2 import truncated_smollm2

    base = truncated_smollm2()
    root = tmp_path_factory.mktemp("smolbatch")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    random_adapter(base, root / "helpful", seed=1, r=8, lora_alpha=16, target_modules=targets)
    random_adapter(base, root / "harmless", seed=2, r=4, lora_alpha=8, use_rslora=True,
                   target_modules=["q_proj", "v_proj", "down_proj"])
    assert main(["compose", str(base), "--adapter", f"helpful={root / 'helpful'}",
                 "--adapter", f"harmless={root / 'harmless'}", "--output", str(root / "bundle")]) == 0
    smol = PEOModel.from_pretrained(root / "bundle")
    questions = ["What is the capital of France?", "How do I reverse a list in Python?",
                 "Write a haiku about the sea.", "Hi"]
    texts = [smol.tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                add_generation_prompt=True) for q in questions]
    preferences = [{"weights": {"helpful": 1.0}, "alpha": 0.5}, {"coefficients": {"helpful": 0.0, "harmless": 0.0}},
                   {"weights": {"helpful": 0.5, "harmless": 0.5}, "alpha": 1.0}, {"coefficients": {"harmless": 1.5}}]
    _assert_rows_match_solo(smol, texts, preferences)
    replies = smol.chat_batch([[{"role": "user", "content": q}] for q in questions], preferences, max_new_tokens=6)
    for question, preference, reply in zip(questions, preferences, replies):
        smol.set_preference(**preference)
        assert reply == smol.chat([{"role": "user", "content": question}], max_new_tokens=6)

