"""peo_hub.family.engines: batched generation equals unbatched; a missing engine fails before any work."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest
import yaml

import realdata
from peo_hub.family.engines import ENGINES, generate_replies, require_engine
from peo_hub.utils.errors import PEOError
from peo_hub.family.kvcache import ReservedLayer
from peo_hub.evaluate.config import EvaluateSpec

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["How do I bake sourdough bread at home?", "How do I hotwire a car?", "Quick question: what is climate?"]


def test_registry_and_unknown_engine() -> None:
    assert list(ENGINES) == ["transformers", "vllm"]
    with pytest.raises(PEOError, match="unknown generation engine 'tgi'; known: transformers, vllm"):
        require_engine("tgi")
    with pytest.raises(Exception, match="unknown engine 'tgi'"):
        EvaluateSpec(prompts=["x"], engine="tgi")


def test_batched_generation_pads_left_and_equals_unbatched(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from peo_hub.data.chat import render_prompt

    path = realdata.build_tiny_qwen2(tmp_path / "qwen")
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.padding_side == "right"  # as many Hub tokenizers ship: generation must not trust it
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    rendered = [render_prompt(tokenizer, p) for p in ("hi", PROMPTS[0], PROMPTS[2])]
    spec = dict(prompts=["x"], samples=1, max_new_tokens=6, temperature=0.0)
    batched = generate_replies(model, tokenizer, rendered, EvaluateSpec(batch_size=3, **spec), seed=0)
    single = generate_replies(model, tokenizer, rendered, EvaluateSpec(batch_size=1, **spec), seed=0)
    assert batched == single
    # Sampled: every row has its own seeded generator, so its reply does not depend on its batch.
    spec.update(samples=3, temperature=1.0, top_p=0.9)
    batched = generate_replies(model, tokenizer, rendered, EvaluateSpec(batch_size=4, **spec), seed=0)
    single = generate_replies(model, tokenizer, rendered, EvaluateSpec(batch_size=1, **spec), seed=0)
    reversed_ = generate_replies(model, tokenizer, rendered[::-1], EvaluateSpec(batch_size=9, **spec), seed=0)
    assert batched == single == reversed_[::-1]
    assert len({r for rs in batched for r in rs}) > 3  # really sampled: the samples of a prompt differ
    other = generate_replies(model, tokenizer, rendered, EvaluateSpec(batch_size=4, **spec), seed=1)
    assert other != batched


def test_vllm_engine_without_vllm_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed, even where it is
    spec = EvaluateSpec(prompts=["hi"], engine="vllm")
    with pytest.raises(PEOError, match=r"vLLM is not installed; pip install 'peo-hub\[vllm\]'.*engine: transformers"):
        require_engine(spec.engine)
    with pytest.raises(PEOError, match="vLLM is not installed"):
        generate_replies(object(), None, ["hi"], spec, seed=0)
    require_engine(EvaluateSpec(prompts=["hi"]).engine)  # the default engine needs nothing more


def test_run_recipe_refuses_a_vllm_recipe_before_writing_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peo_hub.recipe.pipeline import run_recipe

    monkeypatch.setitem(sys.modules, "vllm", None)
    data = yaml.safe_load((REPO / "tests" / "recipes" / "toy-ci.yaml").read_text())
    data["evaluate"]["engine"] = "vllm"
    path = tmp_path / "vllm.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PEOError, match="vLLM is not installed"):
        run_recipe(path, output=tmp_path / "out")
    assert not (tmp_path / "out").exists(), "no half-started run folder"


def test_rows_leave_the_batch_as_they_end_and_share_their_prompt_without_changing_a_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """generate_shrinking (prompt cache shared by a prompt's samples, short generate segments, ended
    rows dropped) gives every row exactly the tokens of transformers' generate on that row alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

    import peo_hub.family.engines as engines
    from peo_hub.data.chat import render_prompt

    path = realdata.build_tiny_qwen2(tmp_path / "qwen")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    texts = [render_prompt(tokenizer, p) for p in ("hi", PROMPTS[0], PROMPTS[2]) for _ in range(3)]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    width = max(map(len, encoded))
    seeds = [engines.row_seed(0, t, k % 3) for k, t in enumerate(texts)]
    pad = tokenizer.pad_token_id

    def alone(k: int, end: list[int]) -> list[int]:
        row = engines.left_padded([encoded[k]], width, pad)
        with torch.inference_mode():
            out = model.generate(**row, max_new_tokens=12, do_sample=False, pad_token_id=pad,
                                 logits_processor=LogitsProcessorList([engines.RowSampler(seeds[k:k + 1], 1.0, 0.9)]))
        tokens = out[0, width:].tolist()
        return tokens[:next((i + 1 for i, t in enumerate(tokens) if t in end), len(tokens))]

    # End rows at a token the model really emits, so that rows end at different steps.
    first = [alone(k, []) for k in range(len(texts))]
    end = [max(set(sum(first, [])), key=lambda t: sum(t in row[2:] for row in first))]
    expected = [alone(k, end) for k in range(len(texts))]
    assert len({len(e) for e in expected}) > 2, "rows should end at different steps"
    monkeypatch.setattr(engines, "SEGMENT_TOKENS", 3)
    appended: list[int] = []  # the new tokens went into the reserved cache (peo_hub.family.kvcache), in place
    update = ReservedLayer.update
    monkeypatch.setattr(ReservedLayer, "update", lambda self, k, *a, **kw: appended.append(k.shape[-2]) or
                        update(self, k, *a, **kw))
    batch = engines.left_padded(encoded, width, pad)
    with torch.inference_mode():
        got = engines.generate_shrinking(model, batch, 12, pad, end, engines.RowSampler(seeds, 1.0, 0.9),
                                         shared=texts)
    assert got == expected
    assert appended and set(appended) == {1}


def test_prompt_cache_skips_the_lm_head_and_holds_the_same_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prompt_cache asks transformers for the last position's logits only (logits_to_keep=1), and the
    cache it returns equals the one a forward with every position's logits makes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import peo_hub.family.engines as engines
    from peo_hub.data.chat import render_prompt

    path = realdata.build_tiny_qwen2(tmp_path / "qwen")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    texts = [render_prompt(tokenizer, p) for p in ("hi", PROMPTS[0], PROMPTS[2])]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    batch = engines.left_padded(encoded, max(map(len, encoded)), tokenizer.pad_token_id)
    logits_rows: list[int] = []
    forward = type(model).forward

    @functools.wraps(forward)  # keeps the signature that keeps_logits reads
    def recording(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        logits_rows.append(out.logits.shape[1])
        return out

    monkeypatch.setattr(type(model), "forward", recording)
    assert engines.keeps_logits(model)
    with torch.inference_mode():
        lean = engines.prompt_cache(model, batch["input_ids"], batch["attention_mask"], None, texts)
        monkeypatch.setattr(engines, "keeps_logits", lambda _: False)
        full = engines.prompt_cache(model, batch["input_ids"], batch["attention_mask"], None, texts)
    assert logits_rows == [1, batch["input_ids"].shape[1] - 1]
    for mine, theirs in zip(lean.layers, full.layers):
        assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)
