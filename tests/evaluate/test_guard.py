"""peo_hub.core.measures: the degeneration measures and when they flag a point."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fakes import make_base
from peo_hub.evaluate.logprob import BaseLogprob
from peo_hub.core.measures import GuardThresholds, distinct_n, flag_reasons, summarise, text_measures

BASE = {"base_logprob": -1.0, "distinct_2": 0.9, "length": 20.0}


def test_distinct_n_known_values() -> None:
    assert distinct_n("a b c d".split(), 2) == 1.0
    assert distinct_n("then then then then".split(), 2) == pytest.approx(1 / 3)
    assert distinct_n("a b a b a".split(), 2) == pytest.approx(2 / 4)
    assert distinct_n(["a"], 2) == 1.0 and distinct_n([], 2) == 1.0


def test_each_threshold_flags_its_own_failure() -> None:
    t = GuardThresholds()
    assert flag_reasons(BASE, BASE, t) == []
    assert "base_logprob" in flag_reasons({**BASE, "base_logprob": -3.5}, BASE, t)[0]
    assert flag_reasons({**BASE, "base_logprob": -2.9}, BASE, t) == []  # within 2 nats
    assert "distinct_2" in flag_reasons({**BASE, "distinct_2": 0.3}, BASE, t)[0]
    assert "length" in flag_reasons({**BASE, "length": 2.0}, BASE, t)[0]
    off = GuardThresholds(max_logprob_drop=None, min_distinct_ratio=None, min_length_ratio=None)
    assert flag_reasons({"base_logprob": -9.0, "distinct_2": 0.0, "length": 0.0}, BASE, off) == []
    assert flag_reasons({"base_logprob": None}, BASE, t) == []  # nothing measured, nothing claimed


def test_summarise_averages_the_chosen_prompts_and_skips_empty_replies() -> None:
    measures = {"base_logprob": [[-1.0, math.nan], [-3.0, -3.0]], "length": [[4.0, 0.0], [2.0, 2.0]]}
    assert summarise(measures, [0]) == {"base_logprob": -1.0, "length": 2.0}
    assert summarise(measures, [0, 1]) == {"base_logprob": pytest.approx(-7 / 3), "length": 2.0}


def test_base_logprob_matches_a_direct_forward_pass(tmp_path: Path) -> None:
    model, tokenizer = make_base(tmp_path / "base")
    model.eval()
    prompt, reply = "how do i bake bread ?", "sure first mix flour"
    scorer = BaseLogprob(str(tmp_path / "base"), None, tokenizer, batch_size=2)
    values = scorer([prompt, "fix bike ?"], [[reply, ""], ["sorry can not help"]])
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(reply, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([p + r])).logits[0]
    expected = torch.log_softmax(logits, -1)[torch.arange(len(p) - 1, len(p) + len(r) - 1), torch.tensor(r)].mean()
    assert values[0][0] == pytest.approx(float(expected), abs=1e-5)  # padding in the batch changes nothing
    assert math.isnan(values[0][1]) and len(values[1]) == 1
    # A value does not depend on the rows that share its batch: the same to the last digit
    # one row at a time, two at a time, or all at once, with replies of very different lengths.
    prompts = [prompt, "fix bike ?", prompt]
    replies = [[reply, "sure " * 20, ""], ["sorry can not help", "mix"], ["then " * 40]]
    # (The values are rounded to 6 digits, which can hide the difference on a model this small,
    # so the widths every row is scored at are recorded too: they must not depend on the batch.)

    def scored(size: int | None) -> tuple[str, dict[tuple[int, ...], int]]:
        scorer = BaseLogprob(str(tmp_path / "base"), None, tokenizer, batch_size=size)
        widths: dict[tuple[int, ...], int] = {}
        forward = scorer.model.forward

        def spy(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: object) -> object:
            if attention_mask is not None:  # the replies' batches (a prompt alone has no padding)
                tail = attention_mask[:, -input_ids.shape[1]:]
                for row, mask in zip(input_ids.tolist(), tail.tolist()):
                    widths[tuple(t for t, m in zip(row, mask) if m)] = len(row)
            return forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        scorer.model.forward = spy  # type: ignore[method-assign]
        return json.dumps(scorer(prompts, replies)), widths

    alone = scored(1)
    assert len(set(alone[1].values())) > 1  # short rows are not padded to the longest
    assert scored(2) == alone and scored(None) == alone
    measures = text_measures(tokenizer, [[reply, "then then then then"]])
    assert measures["length"] == [[4.0, 4.0]] and measures["distinct_2"][0][1] == pytest.approx(1 / 3)


def test_each_distinct_reply_is_scored_once_and_remembered(tmp_path: Path) -> None:
    """A small model's samples repeat: a (prompt, reply) runs through the base once per scorer."""
    _, tokenizer = make_base(tmp_path / "base")
    scorer = BaseLogprob(str(tmp_path / "base"), None, tokenizer)
    scored_rows: list[tuple[int, ...]] = []
    forward = scorer.model.forward

    def spy(input_ids: torch.Tensor, **kwargs: object) -> object:
        if "cache" in kwargs:  # a batch of replies (the prompts' own pass has no cache yet)
            scored_rows.extend(tuple(row) for row in input_ids.tolist())
        return forward(input_ids=input_ids, **kwargs)

    scorer.model.forward = spy  # type: ignore[method-assign]
    prompts = ["how do i bake bread ?", "how do i fix a bike ?"]
    first = scorer(prompts, [["sure first mix flour", "sure first mix flour", "sorry"], ["sure first mix flour"]])
    assert len(scored_rows) == 3 and first[0][0] == first[0][1]  # (bread, sure..) twice: one row
    later = [["sorry", "sure first mix flour"], ["sure first mix flour", "mix then bake"]]
    second = scorer(prompts, later)
    assert len(scored_rows) == 4  # only (bike, "mix then bake") was new
    assert second == BaseLogprob(str(tmp_path / "base"), None, tokenizer)(prompts, later)  # the same digits as fresh
    assert second[0] == [first[0][2], first[0][0]] and second[1][0] == first[1][0]
