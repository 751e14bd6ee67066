"""``type: reward_model``: a sequence-classification reward or cost model as an aspect's judge.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from peo_hub.data.chat import to_messages
from peo_hub.judges.registry import JudgeSpec, register_judge
from peo_hub.utils.errors import PEOError, first_line

if TYPE_CHECKING:
    import torch


class RewardModelJudge:
    """A sequence-classification reward (or cost) model as a judge.

    The scored text is, in order of precedence: the spec's ``template`` filled with the
    raw prompt and reply (Beaver: ``BEGINNING OF CONVERSATION: USER: {prompt}
    ASSISTANT:{reply}``), the judge's own chat template when it has one (so ArmoRM-style
    models see the format they were trained on), else ``prompt + " " + reply``. Raw scores
    are negated for cost models and squashed with ``sigmoid((s - shift) / scale)`` so every
    aspect lives in [0, 1] with higher = better.

    Loading refuses a checkpoint whose weights leave any parameter of the model missing:
    transformers would initialise it at random and the "scores" would be noise (what
    happens to safe-rlhf checkpoints without ``key_mapping``).
    """

    def __init__(self, spec: JudgeSpec, device: "str | torch.device | None" = None) -> None:
        import torch

        assert spec.model is not None
        self.spec = spec
        self.tokenizer, self.model = load_reward_model(spec)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        self.model.eval().to(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def _text(self, prompt: str, reply: str) -> tuple[str, bool]:
        """(the text to score, whether the tokenizer should add its special tokens)."""
        if self.spec.template is not None:
            return self.spec.template.format(prompt=prompt, reply=reply), True
        if getattr(self.tokenizer, "chat_template", None):
            messages = [*to_messages(prompt), {"role": "assistant", "content": reply}]
            # The template already writes the special tokens (a bos, turn markers).
            return self.tokenizer.apply_chat_template(messages, tokenize=False), False
        return f"{prompt} {reply}", True

    def _score_batch(self, batch: Mapping[str, "torch.Tensor"]) -> "torch.Tensor":
        """One raw score per row: the model's pooled logit, or the head at the last attended token."""
        import torch

        if self.spec.score_token == "model":
            return self.model(**batch).logits[:, 0]
        head = getattr(self.model, "score", None)
        backbone = getattr(self.model, getattr(self.model, "base_model_prefix", ""), None)
        if not isinstance(head, torch.nn.Module) or not isinstance(backbone, torch.nn.Module):
            raise PEOError(
                f"judge {self.spec.model!r}: score_token: last needs a decoder reward model with a per-token "
                f"`score` head (Llama, Qwen2, GPT-2, ...), not {type(self.model).__name__}; use score_token: model"
            )
        hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = head(hidden)  # (batch, tokens, labels)
        mask = batch["attention_mask"]
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (positions * mask).argmax(-1)  # the last attended token, whatever the padding side
        return logits[torch.arange(logits.shape[0], device=logits.device), last, 0]

    def raw_scores(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]:
        """The model's scores before negation and normalisation, ``batch_size`` texts at a time."""
        import torch

        texts = [self._text(p, r) for p, r in zip(prompts, replies)]
        scores: list[float] = []
        size = self.spec.batch_size
        for start in range(0, len(texts), size):
            chunk = texts[start:start + size]
            specials = chunk[0][1]  # the same for every text of one judge
            batch = self.tokenizer([t for t, _ in chunk], return_tensors="pt", padding=True, truncation=True,
                                   max_length=self.spec.max_length, add_special_tokens=specials).to(self.model.device)
            with torch.inference_mode():
                scores.extend(self._score_batch(batch).float().cpu().tolist())
        return scores

    def normalise(self, raw: Sequence[float]) -> list[float]:
        """Raw scores -> judge scores: negated for cost models, then the spec's normalisation."""
        sign = -1.0 if self.spec.negate else 1.0
        signed = [sign * s for s in raw]
        if self.spec.normalise == "sigmoid":
            return [_sigmoid((s - self.spec.shift) / self.spec.scale) for s in signed]
        return signed

    def __call__(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]:
        return self.normalise(self.raw_scores(prompts, replies))


def _sigmoid(x: float) -> float:
    """Overflow-free logistic function (raw reward scores can be large)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def load_reward_model(spec: JudgeSpec) -> tuple[Any, Any]:
    """(tokenizer, model) for a reward-model judge, or one :class:`PEOError` line saying what to fix.

    ``key_mapping`` renames checkpoint weights on the way in. A safe-rlhf config names its
    head size ``score_dim`` (and has no ``num_labels``, so transformers would build a
    two-label head); that size is passed on. Any weight the checkpoint does not provide is
    an error, since transformers would fill it with random numbers and only log a table.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    assert spec.model is not None
    kwargs: dict[str, Any] = {"revision": spec.revision}
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.model, revision=spec.revision)
        config = AutoConfig.from_pretrained(spec.model, revision=spec.revision)
        if getattr(config, "score_dim", None):
            kwargs["num_labels"] = int(config.score_dim)
        if spec.key_mapping:
            kwargs["key_mapping"] = dict(spec.key_mapping)
        model, info = AutoModelForSequenceClassification.from_pretrained(spec.model, output_loading_info=True, **kwargs)
    except OSError as exc:
        raise PEOError(
            f"cannot load reward model {spec.model!r}: {first_line(exc)}; check the id or path "
            "(offline runs need it in the local cache)"
        ) from None
    except RuntimeError as exc:
        if "mismatch" not in str(exc):
            raise
        raise PEOError(
            f"reward model {spec.model!r}: a checkpoint weight has another shape than the model transformers builds "
            f"from its config (e.g. a head of another size); check key_mapping {spec.key_mapping} and the config's "
            "num_labels"
        ) from None
    head = [k for k in sorted(info.get("unexpected_keys") or ()) if k.split(".", 1)[0] in ("score", "classifier")]
    if head:  # e.g. a head bias the transformers class does not have: scores would silently shift
        raise PEOError(
            f"reward model {spec.model!r}: the checkpoint has head weight(s) {', '.join(head)} that "
            f"{type(model).__name__} has no place for, so its scores would not be the checkpoint's; "
            "use a checkpoint whose head matches the transformers class"
        )
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        # The checkpoint's own name for a missing weight most likely ends the same way (".weight").
        leaves = {key.rsplit(".", 1)[-1] for key in missing}
        unexpected = sorted(info.get("unexpected_keys") or (), key=lambda k: (k.rsplit(".", 1)[-1] not in leaves, k))
        hint = (f"; the checkpoint has unmatched weights ({', '.join(unexpected[:3])}): map them with judge "
                "key_mapping, e.g. {'^score_head': 'score'} for safe-rlhf (Beaver) checkpoints") if unexpected else (
                "; check that this is a sequence-classification (reward) checkpoint")
        raise PEOError(
            f"reward model {spec.model!r} lacks {len(missing)} weight(s) of {type(model).__name__} "
            f"({', '.join(missing[:3])}), which transformers would initialise at random{hint}"
        )
    return tokenizer, model


register_judge("reward_model", "a sequence-classification reward or cost model (model: Hub id or path)",
               needs_model=True, code=(RewardModelJudge, load_reward_model, _sigmoid))(lambda spec: RewardModelJudge(spec))
