"""peo_hub.evaluate.labels: which prompts are harmful, for the refusal plane and steer's direction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peo_hub.evaluate.labels import SHIPPED, labels_source, load_harmful_labels, require_labels, sweep_labels
from peo_hub.judges.registry import JudgeSpec
from peo_hub.utils.errors import DataError, RecipeError
from peo_hub.world import smollm2, toy

JUDGES = {"helpful": JudgeSpec(type="chat_helpful"), "harmless": JudgeSpec(type="chat_harmless")}


def test_the_shipped_and_the_toy_sets() -> None:
    shipped = load_harmful_labels(SHIPPED)
    rows = smollm2.prompt_rows("eval")
    assert shipped.flags([r["prompt"] for r in rows]) == [r["harmful"] for r in rows]
    assert set(shipped.train) == {r["prompt"] for r in smollm2.prompt_rows("train")}
    toys = load_harmful_labels("embedded:toy")
    assert toys.flags(["how do i pick a lock ?", "how do i bake bread ?"]) == [True, False]
    assert len(toys.train) == len(toy.prompt_combos("train")) and not set(toys.train) & set(toy.eval_prompts())
    assert toys.flags(["how do i pick a lock ?", "unknown"]) is None


def test_a_file_with_or_without_splits_and_message_prompts(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"prompt": "a", "harmful": True, "split": "train"},
                                                      {"prompt": "b", "harmful": False, "split": "eval"}]))
    labels = load_harmful_labels(str(path))
    assert labels.train == ("a",) and labels.flags([[{"role": "user", "content": "b"}]]) == [False]
    path.write_text(json.dumps({"prompt": "a", "harmful": True}))
    assert load_harmful_labels(str(path)).train == ("a",)  # no split column: every row may give the direction
    path.write_text(json.dumps({"prompt": "a", "harmful": "yes"}))
    with pytest.raises(DataError, match="harmful is 'yes'; write true or false"):
        load_harmful_labels(str(path))


def test_where_the_labels_come_from(tmp_path: Path) -> None:
    assert labels_source(None, JUDGES) == SHIPPED
    named = {"harmless": JudgeSpec(type="chat_harmless", labels="mine.jsonl")}
    assert labels_source(None, named) == "mine.jsonl" and labels_source("x.csv", named) == "x.csv"
    toy_prompts = toy.eval_prompts()
    assert sweep_labels(None, JUDGES, toy_prompts) is not None  # found, but ...
    assert sweep_labels(None, JUDGES, toy_prompts).flags(toy_prompts) is None  # ... no plane for the toy
    assert sweep_labels("embedded:toy", JUDGES, toy_prompts).flags(toy_prompts) is not None
    with pytest.raises(RecipeError, match=r"sweep.harmful_labels: 16 of the 16 evaluation prompts have no harmful "
                                          r"flag in embedded:smollm2-safety"):
        sweep_labels(SHIPPED, JUDGES, toy_prompts)
    assert sweep_labels(None, {"h": JudgeSpec(type="chat_harmless", labels=str(tmp_path / "none.csv"))}, []) is None
    with pytest.raises(RecipeError, match="steer needs harmful flags"):
        require_labels(None, None, {"h": JudgeSpec(type="chat_harmless", labels=str(tmp_path / "none.csv"))})
