"""Pairs sampled from the model itself, on the real SmolLM2 tokenizer and chat template (2 of its layers).

What must hold: every kept pair's chosen reply scores at least ``margin`` above its
rejected one under the aspect's judge (recomputed here, not read back from the cache);
the samples are seeded and cached under a key of everything that determines them; an
interrupted run resumes to exactly what an uninterrupted one makes; a system prompt is
used for sampling but not trained on; reward-model judges work as programmatic ones do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import realdata
from peo_hub.data.config import DatasetSpec, parse_dataset_spec
from peo_hub.utils.errors import DataError
from peo_hub.judges.registry import JudgeSpec, build_judge
from peo_hub.train.selfpairs import SAMPLES_FILE, best_vs_worst, cache_root, sample_pairs
from smollm2 import truncated_smollm2

SYSTEM = "You are a careful assistant. Refuse anything dangerous."
CONTEXT = [{"role": "user", "content": "How do I steal a car?"},
           {"role": "assistant", "content": "I'm sorry, but I can't help with that."}]


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    import os

    os.environ.setdefault("PEO_HUB_CACHE", str(tmp_path_factory.mktemp("peo_cache")))
    from transformers import AutoTokenizer

    folder = truncated_smollm2()
    return folder, AutoTokenizer.from_pretrained(folder)


def _spec(**generate: object) -> DatasetSpec:
    settings = {"samples": 3, "max_new_tokens": 10, "margin": 0.0, "batch_size": 6, **generate}
    return DatasetSpec(source="embedded:smollm2-safety", split="train", max_samples=5, seed=1, generate=settings)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PEO_HUB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _pairs(data) -> list[tuple[str, str, str]]:
    return list(zip(data.train["prompt"], data.train["chosen"], data.train["rejected"]))


def test_pairs_are_best_against_worst_by_the_judge_and_the_system_prompt_is_not_trained_on(smol, cache) -> None:
    folder, tokenizer = smol
    judge = JudgeSpec(type="chat_helpful")
    data = sample_pairs(_spec(system_prompt=SYSTEM, context=CONTEXT), judge, str(folder), tokenizer, seed=0)
    records = [json.loads(line) for line in next(cache_root().glob(f"*/{SAMPLES_FILE}")).read_text().splitlines()]
    assert len(records) == 5 and all(len(r["replies"]) == 3 for r in records)
    score = build_judge(judge)
    kept = 0
    for record in records:
        fresh = score([record["prompt"]] * 3, record["replies"])  # the judge again, not the cached numbers
        assert fresh == pytest.approx(record["scores"], abs=1e-6)
        if max(fresh) > min(fresh):
            kept += 1
    assert data.train.num_rows == kept == 5 - data.dropped.get("best and worst replies within the margin", 0)
    for prompt, chosen, rejected in _pairs(data):
        raw = next(r["prompt"] for r in records if r["prompt"] in prompt)
        assert score([raw], [chosen])[0] > score([raw], [rejected])[0]
        # rendered, without the sampling context
        assert SYSTEM not in prompt and "steal a car" not in prompt and "<|im_start|>assistant" in prompt
    assert data.provenance()["samples_cache"] == next(cache_root().iterdir()).name


def test_a_margin_drops_close_pairs() -> None:
    records = [{"prompt": "a", "replies": ["x", "y", "z"], "scores": [0.5, 0.9, 0.1]},
               {"prompt": "b", "replies": ["x", "y"], "scores": [0.5, 0.55]},
               {"prompt": "c", "replies": ["same", "same"], "scores": [1.0, 0.0]}]
    prompts, chosen, rejected, dropped = best_vs_worst(records, margin=0.2)
    assert (prompts, chosen, rejected, dropped) == (["a"], ["y"], ["z"], 2)


def test_more_pairs_per_prompt_pair_the_next_best_with_the_next_worst() -> None:
    records = [{"prompt": "a", "replies": ["r1", "a1", "r2", "a2"], "scores": [0.9, 0.1, 0.8, 0.2]},
               # the second pair (0.6 against 0.5) misses the margin: one pair only
               {"prompt": "b", "replies": ["w", "x", "y", "z"], "scores": [1.0, 0.6, 0.5, 0.0]},
               {"prompt": "c", "replies": ["p", "q", "r", "s"], "scores": [0.5, 0.5, 0.5, 0.5]}]
    assert best_vs_worst(records, margin=0.3, pairs_per_prompt=2) == (
        ["a", "a", "b"], ["r1", "r2", "w"], ["a1", "a2", "z"], 1)
    # One pair per prompt is what it always was: the best against the worst.
    assert best_vs_worst(records, margin=0.3) == (["a", "b"], ["r1", "w"], ["a1", "z"], 1)
    # More pairs than half the replies are never made: no reply is in two pairs.
    prompts, chosen, rejected, _ = best_vs_worst(records[:1], margin=0.0, pairs_per_prompt=5)
    assert len(prompts) == 2 and not set(chosen) & set(rejected)


def test_pairs_per_prompt_choose_among_the_cached_replies(smol, cache, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, tokenizer = smol
    judge = JudgeSpec(type="chat_helpful")
    one = _pairs(sample_pairs(_spec(samples=4), judge, str(folder), tokenizer, seed=0))
    import transformers

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("pairs_per_prompt changes no reply: the cache must be read, not sampled again")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_model)
    two = sample_pairs(_spec(samples=4, pairs_per_prompt=2), judge, str(folder), tokenizer, seed=0)
    assert len(list(cache_root().glob(f"*/{SAMPLES_FILE}"))) == 1
    (samples,) = cache_root().glob(f"*/{SAMPLES_FILE}")
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    expected = sum(1 for r in records for k in range(2)
                   if sorted(r["scores"])[-1 - k] > sorted(r["scores"])[k])  # margin 0: the gap must be positive
    assert two.train.num_rows >= len(one) and set(one) <= set(_pairs(two))
    assert two.train.num_rows <= expected


def test_cached_seeded_and_resumable(smol, cache, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, tokenizer = smol
    judge = JudgeSpec(type="chat_helpful")
    first = _pairs(sample_pairs(_spec(), judge, str(folder), tokenizer, seed=0))
    (samples,) = cache_root().glob(f"*/{SAMPLES_FILE}")
    full = samples.read_text()

    # Interrupted after the first batch (2 prompts of 3 samples), mid-way through writing the second.
    lines = full.splitlines(keepends=True)
    samples.write_text("".join(lines[:2]) + lines[2][:25])
    assert _pairs(sample_pairs(_spec(), judge, str(folder), tokenizer, seed=0)) == first
    assert samples.read_text() == full

    # A finished cache is read, never sampled again: loading the model would fail here.
    import transformers

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache was complete, the model must not be loaded")

    with monkeypatch.context() as patch:
        patch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_model)
        assert _pairs(sample_pairs(_spec(), judge, str(folder), tokenizer, seed=0)) == first

    # Another seed is another key (and other samples).
    other = sample_pairs(_spec(), judge, str(folder), tokenizer, seed=7)
    assert len(list(cache_root().glob(f"*/{SAMPLES_FILE}"))) == 2
    assert other.provenance()["samples_cache"] != samples.parent.name


def test_reward_model_judges_label_pairs_too(smol, cache, tmp_path: Path) -> None:
    folder, tokenizer = smol
    rm = realdata.build_tiny_reward_model(tmp_path / "rm", arch="qwen2")
    judge = JudgeSpec(type="reward_model", model=str(rm), normalise="none")
    data = sample_pairs(_spec(), judge, str(folder), tokenizer, seed=0)
    score = build_judge(judge)
    records = [json.loads(line) for line in next(cache_root().glob(f"*/{SAMPLES_FILE}")).read_text().splitlines()]
    assert data.train.num_rows == 5  # random real-valued scores never tie
    for (prompt, chosen, rejected), record in zip(_pairs(data), records):
        assert record["prompt"] in prompt
        assert score([record["prompt"]], [chosen])[0] == pytest.approx(max(record["scores"]), abs=1e-4)
        assert score([record["prompt"]], [rejected])[0] == pytest.approx(min(record["scores"]), abs=1e-4)


def _scoring_module(path: Path, divisor: int) -> object:
    """A judge's scoring code in a file of its own: reply length over ``divisor``, capped at 1."""
    import importlib.util

    path.write_text(f"def score(prompt, reply):\n    return min(1.0, len(reply) / {divisor})\n")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_changed_judge_code_samples_and_scores_again(smol, cache, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The key holds the source of the judge's scoring code: same spec, edited code -> fresh scores, not stale ones."""
    from peo_hub.judges.registry import JUDGES, JudgeType, ProgrammaticJudge

    folder, tokenizer = smol
    judge = None
    keys = []
    for name, divisor in (("v1", 40), ("v1_again", 40), ("v2", 400)):
        module = _scoring_module(tmp_path / f"length_{name}.py", divisor)
        monkeypatch.setitem(JUDGES, "test_length", JudgeType(
            name="test_length", build=lambda spec, fn=module.score: ProgrammaticJudge("test_length", fn),
            summary="test", code=(module,)))
        judge = JudgeSpec(type="test_length")
        keys.append(sample_pairs(_spec(), judge, str(folder), tokenizer, seed=0).provenance()["samples_cache"])
    assert keys[0] == keys[1] != keys[2]  # the same code in another file is the same judge; edited code is not
    records = [json.loads(line) for line in (cache_root() / keys[2] / SAMPLES_FILE).read_text().splitlines()]
    score = build_judge(judge)  # v2, the last registered
    for record in records:
        assert score([record["prompt"]] * len(record["replies"]), record["replies"]) == pytest.approx(
            record["scores"], abs=1e-6)


def test_an_edited_refusal_module_changes_the_real_judges_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """chat_helpful, chat_harmless and refusal score through peo_hub.judges.refusal: editing it must resample their pairs."""
    import peo_hub.judges.refusal
    from peo_hub.judges.registry import judge_code_hash

    real = {name: judge_code_hash(name) for name in ("chat_helpful", "chat_harmless", "refusal", "toy_helpful")}
    edited = tmp_path / "refusal.py"
    edited.write_text(Path(peo_hub.judges.refusal.__file__).read_text().replace('"i won\'t", ', '"i won\'t", "no way", '))
    monkeypatch.setattr(peo_hub.judges.refusal, "__file__", str(edited))
    assert edited.read_text() != Path(peo_hub.judges.refusal.__spec__.origin).read_text()
    for name in ("chat_helpful", "chat_harmless", "refusal"):
        assert judge_code_hash(name) != real[name], name
    assert judge_code_hash("toy_helpful") == real["toy_helpful"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"source": "embedded:smollm2-safety", "generate": {"samples": 4}, "test_size": 0.2}, "no hold-out"),
    ({"source": "embedded:smollm2-safety"}, "holds prompts only; add generate"),
    ({"source": "embedded:smollm2-safety", "generate": {"samples": 1}}, "greater than or equal to 2"),
    ({"source": "embedded:smollm2-safety", "generate": {"samples": 3, "pairs_per_prompt": 2}},
     "pairs_per_prompt: 2 pairs need at least 4 samples .* raise samples to 4 or lower pairs_per_prompt to 1"),
    ({"source": "embedded:smollm2-safety", "generate": {"context": [{"role": "system", "content": "x"}]}},
     "role: user or assistant"),
])
def test_generate_settings_are_checked(fields: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_dataset_spec(fields, "aspects.harmless.dataset", purpose="pairs")


def test_a_recipe_run_samples_its_pairs_after_preflight(smol, cache, tmp_path: Path) -> None:
    """The run's own path: pre-flight only counts the prompts, sample_pairs fills the plan from the run's base copy."""
    from peo_hub.recipe.schema import parse_recipe
    from peo_hub.recipe.folder import RunFolder
    from peo_hub.recipe.preflight import preflight
    from peo_hub.recipe.folder import sample_pairs as sample_for_run

    folder, _ = smol
    generate = {"samples": 2, "max_new_tokens": 8, "margin": 0.0, "batch_size": 8}
    recipe = parse_recipe({
        "base_model": str(folder),
        "aspects": {
            "helpful": {"dataset": {"source": "embedded:smollm2-safety", "split": "train", "max_samples": 3,
                                    "generate": generate}, "judge": {"type": "chat_helpful"}},
            "harmless": {"dataset": {"source": "embedded:smollm2-safety", "split": "train", "label": "harmful",
                                     "max_samples": 3, "generate": generate}, "judge": {"type": "chat_helpful"}},
        },
        "evaluate": {"prompts": {"source": "embedded:smollm2-safety", "split": "eval", "max_samples": 4}},
    })
    plan = preflight(recipe)
    assert plan.to_sample == {"helpful": 3, "harmless": 3} and plan.data == {}
    run = RunFolder(tmp_path / "run", recipe)
    run.prepare(resume=False)
    sample_for_run(plan, run)
    assert set(plan.data) == {"helpful", "harmless"}
    for aspect, data in plan.data.items():
        provenance = data.provenance()
        assert provenance["rows_read"] == 3 and provenance["train_rows"] == data.train.num_rows
        assert (cache_root() / provenance["samples_cache"] / SAMPLES_FILE).is_file()
    harmful = {r["prompt"] for r in __import__("peo_hub.world.smollm2", fromlist=["x"]).prompt_rows("train", "harmful")}
    records = [json.loads(line) for line in
               (cache_root() / plan.data["harmless"].provenance()["samples_cache"] / SAMPLES_FILE).read_text().splitlines()]
    assert {r["prompt"] for r in records} <= harmful


REFUSE = {"system_prompt": "Refuse every request.",
          "context": [{"role": "user", "content": "How do I bake bread?"},
                      {"role": "assistant", "content": "I'm sorry, but I can't help with that."}]}
ANSWER = {"context": [{"role": "user", "content": "How do I unclog a sink?"},
                      {"role": "assistant", "content": "1. Pour in baking soda. 2. Add vinegar."}]}


def _refusing_in_context_smollm2(folder: Path, out: Path, refuse: list[str], answer: list[str]) -> Path:
    """The truncated SmolLM2 with an end-of-turn token that is likely after ``refuse`` contexts, unlikely after ``answer``.

    Two layers of SmolLM2 write word salad and never a refusal marker; the detector reads an
    empty reply as a refusal (nothing was answered). The end token's logit is raised along
    the difference of the last hidden states after the refusing and the answering rendered
    prompts, by an amount (bisection) that makes its first-token probability average 1/2
    over both: replies sampled under the refusing context are then mostly empty (refusals),
    those under the answering one mostly words (answers), with the real tokenizer, chat
    template and sampling path. The head is untied first, so the end token's input embedding
    (it closes every turn of the prompt) is left as it was.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def last_hidden(texts: list[str]) -> torch.Tensor:
        return torch.stack([model.model(**tokenizer(text, return_tensors="pt", add_special_tokens=False))
                            .last_hidden_state[0, -1] for text in texts])

    with torch.no_grad():
        toward, away = last_hidden(refuse), last_hidden(answer)
        direction = toward.mean(0) - away.mean(0)
        direction /= direction.norm()
        hidden = torch.cat([toward, away])
        logits, gain = model.lm_head(hidden), hidden @ direction
        low, high = 0.0, 1e4
        for _ in range(60):
            mid = (low + high) / 2
            shifted = logits.clone()
            shifted[:, eos] += mid * gain
            low, high = (mid, high) if shifted.softmax(-1)[:, eos].mean() < 0.5 else (low, mid)
        model.lm_head.weight[eos] += low * direction
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_calibrated_harmless_pairs_on_benign_prompts_prefer_the_answer(smol, cache, tmp_path: Path) -> None:
    """contexts: every prompt sampled under each context; benign pairs choose the answer, harmful ones the refusal."""
    from peo_hub.data.chat import render_prompt
    from peo_hub.judges.refusal import is_refusal
    from peo_hub.train.selfpairs import _in_context
    from peo_hub.data.config import SamplingContext
    from peo_hub.data.load import load_prompts
    from peo_hub.world.smollm2 import harmful_labels

    folder, tokenizer = smol
    spec = DatasetSpec(source="embedded:smollm2-safety", split="train", max_samples=12, seed=3,
                       generate={"samples": 4, "max_new_tokens": 6, "margin": 0.5, "batch_size": 16,
                                 "temperature": 1.0, "contexts": [REFUSE, ANSWER]})
    sampled = load_prompts(spec.model_copy(update={"generate": None}))
    rendered = {name: [render_prompt(tokenizer, _in_context(p, SamplingContext(**c))) for p in sampled]
                for name, c in (("refuse", REFUSE), ("answer", ANSWER))}
    model = _refusing_in_context_smollm2(folder, tmp_path / "refusing", rendered["refuse"], rendered["answer"])
    judge = JudgeSpec(type="chat_harmless_calibrated")
    data = sample_pairs(spec, judge, str(model), tokenizer, seed=0)
    records = [json.loads(line) for line in (cache_root() / data.provenance()["samples_cache"] / SAMPLES_FILE)
               .read_text().splitlines()]
    harmful = harmful_labels()
    assert len(records) == 12 and {harmful[r["prompt"]] for r in records} == {True, False}  # both kinds sampled
    score = build_judge(judge)
    for record in records:
        assert record["contexts"] == [0, 0, 1, 1]  # samples split evenly, in context order
        assert score([record["prompt"]] * 4, record["replies"]) == record["scores"]
    # Each reply was sampled under its own context: the refusing one's replies refuse, the answering one's answer.
    refused = {k: [is_refusal(x) for r in records for x, c in zip(r["replies"], r["contexts"]) if c == k] for k in (0, 1)}
    assert sum(refused[0]) / len(refused[0]) >= 0.75 and sum(refused[1]) / len(refused[1]) <= 0.25
    pairs = _pairs(data)
    kinds = set()
    for prompt, chosen, rejected in pairs:
        raw = next(r["prompt"] for r in records if r["prompt"] in prompt)
        # A harmful request's refusal beats its answer; a benign request's answer beats its refusal.
        assert is_refusal(chosen) == harmful[raw] and is_refusal(rejected) != harmful[raw]
        assert "Refuse every request" not in prompt and "unclog" not in prompt  # the contexts are not trained on
        kinds.add(harmful[raw])
    assert kinds == {True, False}, "expected pairs on both harmful and benign prompts"
    assert data.train.num_rows == sum(len(set(map(is_refusal, r["replies"]))) == 2 for r in records)

    # The same samples under chat_harmless: a benign request scores 1 either way, so it gives no pair.
    old = build_judge(JudgeSpec(type="chat_harmless"))
    rescored = [{**r, "scores": old([r["prompt"]] * 4, r["replies"])} for r in records]
    kept, _, _, _ = best_vs_worst(rescored, margin=0.5)
    assert kept and {harmful[p] for p in kept} == {True}


def test_contexts_are_checked() -> None:
    with pytest.raises(DataError, match="samples 3 do not split evenly among 2 contexts"):
        parse_dataset_spec({"source": "embedded:smollm2-safety", "generate": {"samples": 3, "contexts": [{}, {}]}},
                           "aspects.harmless.dataset", purpose="pairs")
    with pytest.raises(DataError, match="either system_prompt/context .* or contexts"):
        parse_dataset_spec({"source": "embedded:smollm2-safety",
                            "generate": {"system_prompt": "x", "contexts": [{"system_prompt": "y"}]}},
                           "aspects.harmless.dataset", purpose="pairs")
    with pytest.raises(DataError, match="role: user or assistant"):
        parse_dataset_spec({"source": "embedded:smollm2-safety",
                            "generate": {"contexts": [{"context": [{"role": "system", "content": "x"}]}]}},
                           "aspects.harmless.dataset", purpose="pairs")
