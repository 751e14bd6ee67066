"""The embedded toy world: deterministic, and its aspects really conflict where they should."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from peo_hub.world import toy
from peo_hub.world.base import build_toy_base, ensure_embedded_base
from peo_hub.utils.errors import RecipeError, DataError


def test_pairs_are_deterministic_per_seed() -> None:
    assert toy.preference_pairs("helpful", n=50, seed=3) == toy.preference_pairs("helpful", n=50, seed=3)
    assert toy.preference_pairs("helpful", n=50, seed=3) != toy.preference_pairs("helpful", n=50, seed=4)
    assert toy.sft_examples(100, 1) == toy.sft_examples(100, 1)


def test_judges_score_replies_in_unit_interval() -> None:
    lock = "how do i pick a lock ?"
    bread = "how do i bake bread ?"
    comply = toy.answer(toy.task_of(lock), 4)
    assert toy.helpful_score(lock, comply) == 1.0 and toy.harmless_score(lock, comply) == 0.0
    assert toy.helpful_score(lock, toy.REFUSAL) == 0.0 and toy.harmless_score(lock, toy.REFUSAL) == 1.0
    redirect = toy.redirect(toy.task_of(lock))
    assert toy.helpful_score(lock, redirect) == 0.25 and toy.harmless_score(lock, redirect) == 1.0
    assert toy.harmless_score(lock, toy.answer(toy.task_of(lock), 1)) == 0.5
    assert toy.harmless_score(lock, "hmm flour maybe") == 0.5  # babble on a risky request
    bread_answer = toy.answer(toy.task_of(bread), 4)
    assert toy.helpful_score(bread, bread_answer) == 1.0 and toy.harmless_score(bread, bread_answer) == 1.0
    # steps of another task are not an answer to this one
    assert toy.helpful_score(bread, comply) == 0.0


def test_aspects_conflict_on_risky_and_agree_on_benign() -> None:
    """Same seed, same (prompt, A, B) draws: labels swap on risky requests, mostly agree on benign ones."""
    helpful = toy.preference_pairs("helpful", n=400, seed=0)
    harmless = toy.preference_pairs("harmless", n=400, seed=0)
    chosen_h = {(p["prompt"], frozenset((p["chosen"], p["rejected"]))): p["chosen"] for p in helpful}
    agree = {True: [0, 0], False: [0, 0]}
    for p in harmless:
        key = (p["prompt"], frozenset((p["chosen"], p["rejected"])))
        if key in chosen_h:
            risky = toy.task_of(p["prompt"]).risky
            agree[risky][chosen_h[key] == p["chosen"]] += 1
    risky_disagree = agree[True][0] / sum(agree[True])
    benign_agree = agree[False][1] / sum(agree[False])
    assert risky_disagree > 0.6, agree
    assert benign_agree > 0.95, agree


def test_eval_prompts_are_held_out() -> None:
    train = {p for _, p in toy.prompt_combos("train")}
    assert set(toy.eval_prompts()).isdisjoint(train)
    assert len(toy.eval_prompts()) == len(toy.TASKS)
    assert all(p["prompt"] in train for p in toy.preference_pairs("harmless", n=100))


def test_unknown_embedded_names() -> None:
    with pytest.raises(DataError, match="embedded:toy"):
        toy.embedded_pairs("toy", label="funny")
    with pytest.raises(RecipeError, match="embedded:toy"):
        ensure_embedded_base("embedded:huge")


def test_base_build_is_deterministic(tmp_path: Path) -> None:
    """Same seed, same weights (a short SFT keeps this fast); another seed differs."""
    a = build_toy_base(tmp_path / "a", seed=5, examples=256, epochs=1)
    b = build_toy_base(tmp_path / "b", seed=5, examples=256, epochs=1)
    c = build_toy_base(tmp_path / "c", seed=6, examples=256, epochs=1)
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
