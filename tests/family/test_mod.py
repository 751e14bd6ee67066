"""peo_hub.family.mod: MOD's decoding-time mixture, on a random tiny bundle (two real LoRA aspects).

One-hot weights give the aspect policy's own greedy replies; a mix gives the tokens of a
mixture computed by hand (one full forward per aspect and step, no cache, no batching); a
reply does not depend on its batch, and a sampled reply follows its row seed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fakes import make_fake_bundle
from peo_hub import PEOModel
from peo_hub.family.engines import generate_rows
from peo_hub.family.mod import MixLogProbs, expand, mod_rows
from peo_hub.utils.errors import PreferenceError

PROMPTS = ["how do i bake bread ?", "pick lock", "how do i fix bike , then mix flour ?"]
NEW = 7


@pytest.fixture(scope="module")
def peo(tmp_path_factory: pytest.TempPathFactory) -> PEOModel:
    model = PEOModel.from_pretrained(make_fake_bundle(tmp_path_factory.mktemp("mod") / "bundle"))
    model.range_warnings = False
    model.tokenizer.pad_token = model.tokenizer.pad_token or model.tokenizer.eos_token
    return model


def _spec(batch_size: int = 64, temperature: float = 0.0, samples: int = 1) -> SimpleNamespace:
    return SimpleNamespace(samples=samples, max_new_tokens=NEW, temperature=temperature, top_p=1.0,
                           batch_size=batch_size)


def _mod(peo: PEOModel, weights: dict[str, float], spec: SimpleNamespace, prompts: list[str] = PROMPTS,
         samples: list[int] | None = None) -> list[str]:
    samples = samples or [0] * len(prompts)
    return [r for _, chunk in mod_rows(peo, peo.tokenizer, prompts, samples, [weights] * len(prompts), spec, seed=3)
            for r in chunk]


def test_one_hot_weights_are_the_aspect_policy_itself(peo: PEOModel) -> None:
    for aspect in peo.aspects:
        coefficients = {a: float(a == aspect) for a in peo.aspects}
        own = [r for _, chunk in generate_rows(peo, peo.tokenizer, PROMPTS, [0] * 3, _spec(), seed=3,
                                               preferences=[{"coefficients": coefficients}] * 3) for r in chunk]
        assert _mod(peo, coefficients, _spec()) == own
    assert len(expand(peo.aspects, {"helpful": 1.0, "harmless": 0.0})) == 1  # a corner costs one forward


def _by_hand(peo: PEOModel, prompt: str, weights: dict[str, float]) -> str:
    """Greedy decoding from Σ w_i log softmax(logits_i), each aspect's logits from a full forward."""
    ids = peo.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    eos = peo.tokenizer.eos_token_id
    new: list[int] = []
    with torch.no_grad():
        for _ in range(NEW):
            mixed = 0
            for aspect, weight in weights.items():
                peo.set_preference(coefficients={a: float(a == aspect) for a in peo.aspects})
                logits = peo.model(input_ids=ids).logits[0, -1].double()
                mixed = mixed + weight * torch.log_softmax(logits, dim=-1)
            token = int(torch.argmax(mixed))
            new.append(token)
            if token == eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return peo.tokenizer.decode(new, skip_special_tokens=True).strip()


def test_a_mix_is_the_hand_computed_mixture_whatever_the_batch(peo: PEOModel) -> None:
    weights = {"helpful": 0.35, "harmless": 0.65}
    expected = [_by_hand(peo, p, weights) for p in PROMPTS]
    assert _mod(peo, weights, _spec()) == expected
    assert _mod(peo, weights, _spec(batch_size=1)) == expected  # a batch never splits a row's copies
    assert _mod(peo, weights, _spec(batch_size=3)) == expected  # copies of different rows side by side
    corners = [_mod(peo, {a: float(a == b) for a in peo.aspects}, _spec()) for b in peo.aspects]
    assert all(expected != corner for corner in corners)  # the mixture is neither policy


def test_sampled_replies_follow_their_row_seed(peo: PEOModel) -> None:
    weights = {"helpful": 0.5, "harmless": 0.5}
    prompts = [PROMPTS[0]] * 4
    one = _mod(peo, weights, _spec(temperature=1.0), prompts, samples=[0, 1, 2, 3])
    again = _mod(peo, weights, _spec(temperature=1.0, batch_size=2), prompts[::-1], samples=[3, 2, 1, 0])
    assert one == again[::-1]
    assert len(set(one)) > 1  # really sampled


def test_mixing_processor_and_weights_are_checked() -> None:
    mix = MixLogProbs([0, 0, 1], [0.25, 0.75, 1.0])
    scores = torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [1.0, 1.0, 3.0]])
    out = mix(None, scores)
    logp = torch.log_softmax(scores, dim=-1)
    assert torch.allclose(out[0], 0.25 * logp[0] + 0.75 * logp[1]) and torch.equal(out[0], out[1])
    assert torch.allclose(out[2], logp[2])
    mix.keep([2])
    assert torch.allclose(mix(None, scores[2:]), logp[2:])
    with pytest.raises(PreferenceError, match="unknown aspect 'kind'"):
        expand(["helpful", "harmless"], {"kind": 1.0})
    with pytest.raises(PreferenceError, match="not all zero"):
        expand(["helpful", "harmless"], {"helpful": 0.0})
