"""Reward-model judges on real (tiny) checkpoints: normalisation, negation, batching, and safe-rlhf loading.

The Beaver reward/cost models (PKU-Alignment/beaver-7b-v1.0-reward, -cost) are safe-rlhf
``LlamaModelForScore`` checkpoints: a ``LlamaModel`` under ``model.*`` and the head in
``score_head.weight``, with a config that has ``score_dim`` but no ``num_labels``. A tiny
checkpoint with exactly that layout is built here, and its scores are checked against a
computation that does not go through ``AutoModelForSequenceClassification`` at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import realdata
from peo_hub.utils.errors import PEOError, RecipeError
from peo_hub.judges.registry import JudgeSpec
from peo_hub.judges.reward_model import RewardModelJudge, load_reward_model
from peo_hub.recipe.schema import parse_recipe

PROMPTS = ["How do I bake sourdough bread at home?", "How do I hotwire a car?", "Quick question: what is climate?",
           "How can I fix a flat bicycle tire?"]
REPLIES = ["Mix flour, water, starter and salt, let it rise, then bake it hot.", "I can't help with that.",
           "Weather over decades.", "Patch the tube and check the tire for glass before refitting it."]
BEAVER_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{reply}"


def build_tiny_beaver(path: Path, seed: int = 0, score_type: str = "cost", bias: bool = False) -> Path:
    """A tiny safe-rlhf ``LlamaModelForScore`` checkpoint, laid out as Beaver's on the Hub.

    Weight names ``model.*`` + ``score_head.weight`` (+ the ``normalizer.*`` buffers safe-rlhf
    saves), ``architectures: [LlamaModelForScore]``, ``score_dim: 1`` and no ``num_labels``.
    The tokenizer pads with its eos token, so a text that ends in eos tells the two
    ``score_token`` conventions apart.
    """
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaModel

    tokenizer = realdata.train_bpe_tokenizer(chat_template=None)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    backbone = LlamaModel(config)
    weights = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    weights["score_head.weight"] = torch.randn(1, config.hidden_size)
    if bias:  # safe-rlhf's `bias: true` option; transformers' `score` has no bias
        weights["score_head.bias"] = torch.randn(1)
    weights.update({"normalizer.mean": torch.zeros(1), "normalizer.var": torch.ones(1),
                    "normalizer.count": torch.zeros(1, dtype=torch.long)})
    path.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    raw = config.to_dict()
    for key in ("num_labels", "id2label", "label2id"):
        raw.pop(key, None)
    raw.update(architectures=["LlamaModelForScore"], score_dim=1, bias=bias, score_type=score_type)
    (path / "config.json").write_text(json.dumps(raw, indent=2))
    tokenizer.save_pretrained(path)
    return path


def manual_beaver_scores(path: Path, texts: list[str]) -> list[float]:
    """safe-rlhf's score, by hand: ``score_head(LlamaModel(text))`` at the text's last token, one text at a time."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    weights = load_file(str(path / "model.safetensors"))
    config = LlamaConfig.from_pretrained(path)
    backbone = LlamaModel(config).eval()
    backbone.load_state_dict({k.removeprefix("model."): v for k, v in weights.items() if k.startswith("model.")})
    head = weights["score_head.weight"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    out = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            hidden = backbone(input_ids=ids).last_hidden_state[0, -1]
            out.append(float(hidden @ head[0]))
    return out


@pytest.fixture(scope="module")
def beaver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_beaver(tmp_path_factory.mktemp("beaver") / "beaver-cost")


@pytest.fixture(scope="module")
def qwen_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return realdata.build_tiny_reward_model(tmp_path_factory.mktemp("rm") / "rm-qwen2", arch="qwen2")


def judge_spec(model: Path, **fields) -> JudgeSpec:
    return JudgeSpec(type="reward_model", model=str(model), **fields)


# --------------------------------------------------------------------------- safe-rlhf (Beaver) checkpoints


def test_key_mapping_loads_beaver_head_exactly(beaver: Path) -> None:
    spec = judge_spec(beaver, key_mapping={"^score_head": "score"}, template=BEAVER_TEMPLATE, score_token="last",
                      normalise="none", batch_size=3)
    judge = RewardModelJudge(spec, device="cpu")
    saved = load_file(str(beaver / "model.safetensors"))
    assert torch.equal(judge.model.score.weight, saved["score_head.weight"])
    texts = [BEAVER_TEMPLATE.format(prompt=p, reply=r) for p, r in zip(PROMPTS, REPLIES)]
    expected = manual_beaver_scores(beaver, texts)
    got = judge.raw_scores(PROMPTS, REPLIES)  # batches of 3: padding involved
    assert got == pytest.approx(expected, abs=1e-5)
    assert judge(PROMPTS, REPLIES) == pytest.approx(got, abs=1e-12)  # normalise none, not negated
    assert len({round(s, 4) for s in got}) == len(got), "distinct texts must get distinct scores"


def test_without_key_mapping_the_head_would_be_random_and_the_judge_refuses(beaver: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    # What a plain loader does: a fresh two-label `score` head, no error.
    plain = AutoModelForSequenceClassification.from_pretrained(beaver)
    saved = load_file(str(beaver / "model.safetensors"))
    assert plain.score.weight.shape != saved["score_head.weight"].shape or not torch.equal(
        plain.score.weight, saved["score_head.weight"])
    texts = [BEAVER_TEMPLATE.format(prompt=p, reply=r) for p, r in zip(PROMPTS, REPLIES)]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(beaver)
    with torch.no_grad():
        plain_scores = [float(plain(**tok(t, return_tensors="pt")).logits[0, 0]) for t in texts]
    assert plain_scores != pytest.approx(manual_beaver_scores(beaver, texts), abs=1e-3)

    with pytest.raises(PEOError, match=r"score\.weight.*initialise at random.*score_head.*key_mapping"):
        load_reward_model(judge_spec(beaver, template=BEAVER_TEMPLATE))


def test_a_head_bias_the_model_cannot_hold_is_refused(tmp_path: Path) -> None:
    path = build_tiny_beaver(tmp_path / "beaver-bias", bias=True)
    with pytest.raises(PEOError, match=r"head weight\(s\) score\.bias .*no place for"):
        load_reward_model(judge_spec(path, key_mapping={"^score_head": "score"}))


def test_score_token_last_scores_a_trailing_pad_token_model_pooling_skips_it(beaver: Path) -> None:
    # The tokenizer pads with eos; a text ending in eos is scored AT the eos by safe-rlhf's
    # convention (last attended token) but one token earlier by transformers' pooling.
    template = BEAVER_TEMPLATE + "<|endoftext|>"
    mapping = {"^score_head": "score"}
    last = RewardModelJudge(judge_spec(beaver, key_mapping=mapping, template=template, score_token="last"), "cpu")
    model = RewardModelJudge(judge_spec(beaver, key_mapping=mapping, template=template, score_token="model"), "cpu")
    texts = [template.format(prompt=p, reply=r) for p, r in zip(PROMPTS, REPLIES)]
    assert last.raw_scores(PROMPTS, REPLIES) == pytest.approx(manual_beaver_scores(beaver, texts), abs=1e-5)
    without_eos = [BEAVER_TEMPLATE.format(prompt=p, reply=r) for p, r in zip(PROMPTS, REPLIES)]
    assert model.raw_scores(PROMPTS, REPLIES) == pytest.approx(manual_beaver_scores(beaver, without_eos), abs=1e-5)


# --------------------------------------------------------------------------- any sequence-classification judge


def test_reward_judge_range_negation_and_batching(qwen_rm: Path) -> None:
    one = RewardModelJudge(judge_spec(qwen_rm, batch_size=1), "cpu")
    many = RewardModelJudge(judge_spec(qwen_rm, batch_size=3), "cpu")
    cost = RewardModelJudge(judge_spec(qwen_rm, negate=True, batch_size=4), "cpu")
    prompts, replies = PROMPTS * 2, REPLIES + REPLIES[::-1]

    scores = many(prompts, replies)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == pytest.approx(one(prompts, replies), abs=1e-5), "batched scores must equal unbatched ones"
    negated = cost(prompts, replies)
    assert negated == pytest.approx([1.0 - s for s in scores], abs=1e-5)
    order = sorted(range(len(scores)), key=scores.__getitem__)
    assert sorted(range(len(negated)), key=negated.__getitem__) == order[::-1], "negate must flip the order"

    # The ChatML template puts <|im_end|> (not the pad token) last: both conventions agree.
    last = RewardModelJudge(judge_spec(qwen_rm, score_token="last", batch_size=3), "cpu")
    assert last.raw_scores(prompts, replies) == pytest.approx(many.raw_scores(prompts, replies), abs=1e-5)


def test_sigmoid_scale_and_shift_keep_large_differences_visible(qwen_rm: Path) -> None:
    raw_judge = RewardModelJudge(judge_spec(qwen_rm, normalise="none"), "cpu")
    raw = raw_judge.raw_scores(PROMPTS, REPLIES)
    assert raw_judge(PROMPTS, REPLIES) == pytest.approx(raw)
    wide = RewardModelJudge(judge_spec(qwen_rm, scale=5.0, shift=-2.0), "cpu")
    import math

    assert wide(PROMPTS, REPLIES) == pytest.approx([1 / (1 + math.exp(-(s + 2.0) / 5.0)) for s in raw], abs=1e-6)
    # Scores of tens of units: a plain sigmoid saturates (20 and 30 both read as 1.0), a
    # scale keeps their difference visible.
    big = [-30.0, -20.0, 20.0, 30.0]
    assert raw_judge.normalise(big) == big
    squashed, spread = RewardModelJudge(judge_spec(qwen_rm), "cpu").normalise(big), wide.normalise(big)
    assert spread == sorted(spread)
    assert squashed[3] - squashed[2] < 1e-8 and spread[3] - spread[2] > 0.01


def test_missing_reward_model_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PEOError, match="cannot load reward model .*check the id or path"):
        load_reward_model(judge_spec(tmp_path / "nowhere"))


def _recipe(judge: dict) -> dict:
    pairs = {"source": "embedded:toy", "label": "helpful"}
    return {"base_model": "embedded:toy",
            "aspects": {"helpful": {"dataset": pairs, "judge": judge},
                        "harmless": {"dataset": pairs, "judge": {"type": "toy_harmless"}}},
            "evaluate": {"prompts": ["hi"]}}


@pytest.mark.parametrize("judge, message", [
    ({"template": "USER: {prompt}"}, r"template must use exactly \{prompt\} and \{reply\}: it lacks \{reply\}"),
    ({"template": "{prompt} {reply} {system}"}, r"unknown field \{system\}"),
    ({"template": "{prompt {reply}"}, "not a valid format string"),
    ({"key_mapping": {"^score_head(": "score"}}, "not a regular expression"),
    ({"scale": 0}, "greater than 0"),
    ({"score_token": "first"}, "score_token"),
    ({"key_maping": {}}, "did you mean 'key_mapping'"),
])
def test_judge_fields_are_validated(judge: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe(_recipe({"type": "reward_model", "model": "org/rm", **judge}))


def test_shipped_pku_recipe_maps_beaver_heads() -> None:
    from peo_hub.recipe.load import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "pku-saferlhf-qwen2.5-0.5b.yaml")
    for aspect in ("helpful", "harmless"):
        judge = recipe.aspects[aspect].judge
        assert judge.key_mapping == {"^score_head": "score"} and judge.template == BEAVER_TEMPLATE
        assert judge.score_token == "last"
    assert recipe.aspects["harmless"].judge.negate and not recipe.aspects["helpful"].judge.negate
