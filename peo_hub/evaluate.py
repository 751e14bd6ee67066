"""Generation and judging: what a policy at one preference actually says, and how it scores.

A point's score on an aspect is the mean judge score of sampled replies to held-out
prompts, with a 95% percentile-bootstrap interval over replies. Judges map a
(prompt, reply) to [0, 1], higher is better: programmatic ones (the toy world's) or a
reward / cost model (``AutoModelForSequenceClassification``; cost models negated; foreign
checkpoints such as safe-rlhf's Beaver through ``key_mapping`` and a text ``template``).
Replies come from transformers' ``generate`` at the policy's live preference, or, with
``evaluate.engine: vllm``, from vLLM serving the point as one exported LoRA adapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch

from peo_hub.errors import PEOError
from peo_hub.recipe import EvaluateSpec, JudgeSpec


class Judge(Protocol):
    """Scores replies in [0, 1] (higher is better). ``prompts`` are the raw, unrendered prompts."""

    def __call__(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]: ...


@dataclass
class ProgrammaticJudge:
    """A pure Python scoring function ``(prompt, reply) -> float``."""

    name: str
    fn: Callable[[str, str], float]

    def __call__(self, prompts: Sequence[str], replies: Sequence[str]) -> list[float]:
        return [float(self.fn(p, r)) for p, r in zip(prompts, replies)]


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

    def __init__(self, spec: JudgeSpec, device: str | torch.device | None = None) -> None:
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
            from peo_hub.data import to_messages

            messages = [*to_messages(prompt), {"role": "assistant", "content": reply}]
            # The template already writes the special tokens (a bos, turn markers).
            return self.tokenizer.apply_chat_template(messages, tokenize=False), False
        return f"{prompt} {reply}", True

    def _score_batch(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One raw score per row: the model's pooled logit, or the head at the last attended token."""
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
            f"cannot load reward model {spec.model!r}: {str(exc).splitlines()[0]}; check the id or path "
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


def build_judge(spec: JudgeSpec) -> Judge:
    """The judge a recipe names."""
    if spec.type == "reward_model":
        return RewardModelJudge(spec)
    from peo_hub.world.toy import JUDGES

    return ProgrammaticJudge(spec.type, JUDGES[spec.type])


def bootstrap_ci(scores: Sequence[float], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def generate_replies(model: Any, tokenizer: Any, rendered_prompts: Sequence[str], spec: EvaluateSpec,
                     seed: int) -> list[list[str]]:
    """``spec.samples`` sampled replies for each rendered prompt, in batches.

    ``model`` is anything with a transformers ``generate`` (a ``PEOModel`` at its current
    preference, or a plain model). Seeded, so two points see the same random stream.
    Prompts are padded on the left whatever the tokenizer's own padding side (right
    padding would make every shorter prompt continue after pad tokens). With
    ``spec.engine == "vllm"`` the same replies come from vLLM instead (see
    :func:`vllm_generate_replies`).
    """
    if spec.engine == "vllm":
        return vllm_generate_replies(model, tokenizer, rendered_prompts, spec, seed)
    torch.manual_seed(seed)
    if tokenizer.pad_token is None:  # GPT-2-style tokenizers have none; batching needs one
        tokenizer.pad_token = tokenizer.eos_token
    expanded = [p for p in rendered_prompts for _ in range(spec.samples)]
    replies: list[str] = []
    greedy = spec.temperature == 0
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else getattr(model, "device", "cpu")
    for start in range(0, len(expanded), spec.batch_size):
        batch = tokenizer(expanded[start:start + spec.batch_size], return_tensors="pt", padding=True,
                          padding_side="left", add_special_tokens=False).to(device)
        kwargs: dict[str, Any] = {"max_new_tokens": spec.max_new_tokens, "do_sample": not greedy}
        if not greedy:
            kwargs.update(temperature=spec.temperature, top_p=spec.top_p, top_k=0)
        with torch.inference_mode():
            output = model.generate(**batch, pad_token_id=tokenizer.pad_token_id, **kwargs)
        replies.extend(tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    replies = [r.strip() for r in replies]
    return [replies[i * spec.samples:(i + 1) * spec.samples] for i in range(len(rendered_prompts))]


# --------------------------------------------------------------------------- vLLM (optional)
#
# UNTESTED ON CPU: vLLM needs Linux and a CUDA GPU, and none was available to this code's
# tests; only the "not installed" error path below is unit-tested. The design is the
# smallest one that keeps PEO's exactness: each point is exported as ONE standard LoRA
# adapter (PEOModel.export_adapter: B = [c1 B1 ... cn Bn], A = [A1; ...; An], rank sum(r_i)),
# which vLLM applies through its multi-LoRA support on one engine per base model.

VLLM_INSTALL = "pip install 'peo-hub[vllm]'"
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts
VLLM_GPU_MEMORY = 0.5  # leave room for the transformers copy of the policy and the judges
_VLLM_ENGINES: dict[tuple[str, int], Any] = {}
_VLLM_LORA_IDS = iter(range(1, 1 << 30))


def require_engine(spec: EvaluateSpec) -> None:
    """Fail early (before hours of training) when the recipe's generation engine is missing."""
    if spec.engine == "vllm":
        _import_vllm()


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise PEOError(
            f"evaluate.engine is vllm but vLLM is not installed; {VLLM_INSTALL} (Linux with a CUDA GPU), "
            "or set evaluate.engine: transformers"
        ) from None
    return vllm


def _vllm_adapter(model: Any, scratch: str) -> tuple[str, str | None, int]:
    """(base model path, adapter folder or None for the bare base, adapter rank) for a policy."""
    import json
    import os

    from peo_hub.bundle import resolve_base

    if hasattr(model, "export_adapter") and hasattr(model, "coefficients"):  # a PEOModel
        base = resolve_base(model.bundle_dir, model.manifest)
        if all(c == 0.0 for c in model.coefficients.values()):
            return base, None, 0
        folder = str(model.export_adapter(os.path.join(scratch, "point")))
    else:  # a PeftModel (the MORL baseline): its single adapter as it is
        base = model.get_base_model().name_or_path
        folder = os.path.join(scratch, "point")
        model.save_pretrained(folder)
    with open(os.path.join(folder, "adapter_config.json"), encoding="utf-8") as handle:
        rank = int(json.load(handle)["r"])
    return base, folder, rank


def vllm_generate_replies(model: Any, tokenizer: Any, rendered_prompts: Sequence[str], spec: EvaluateSpec,
                          seed: int) -> list[list[str]]:
    """:func:`generate_replies` through vLLM (untested on CPU; see the note above).

    The policy's current preference is exported to a temporary LoRA adapter and sent
    with a ``LoRARequest``; the engine (one per base and rank bucket) is kept across
    points, so a sweep loads the base once. Prompts go in as token ids, tokenized exactly
    as the transformers path does (no extra special tokens).
    """
    import tempfile

    vllm = _import_vllm()
    from vllm.lora.request import LoRARequest

    with tempfile.TemporaryDirectory(prefix="peo-vllm-") as scratch:
        base, adapter, rank = _vllm_adapter(model, scratch)
        bucket = next((r for r in VLLM_LORA_RANKS if r >= rank), None)
        if bucket is None:
            raise PEOError(f"the exported adapter has rank {rank}, above vLLM's largest max_lora_rank "
                           f"{VLLM_LORA_RANKS[-1]}; use fewer aspects or a lower train.lora.r, or engine: transformers")
        key = (str(base), bucket)
        if key not in _VLLM_ENGINES:
            _VLLM_ENGINES[key] = vllm.LLM(model=str(base), enable_lora=True, max_lora_rank=bucket, max_loras=1,
                                          seed=seed, gpu_memory_utilization=VLLM_GPU_MEMORY)
        engine = _VLLM_ENGINES[key]
        params = vllm.SamplingParams(n=spec.samples, temperature=spec.temperature, top_p=spec.top_p,
                                     max_tokens=spec.max_new_tokens, seed=seed)
        prompts = [{"prompt_token_ids": tokenizer(p, add_special_tokens=False)["input_ids"]} for p in rendered_prompts]
        request = None if adapter is None else LoRARequest(f"peo-point-{rank}", next(_VLLM_LORA_IDS), adapter)
        outputs = engine.generate(prompts, params, lora_request=request, use_tqdm=False)
    return [[choice.text.strip() for choice in output.outputs] for output in outputs]


def score_replies(raw_prompts: Sequence[str], replies: Sequence[Sequence[str]], judges: Mapping[str, Judge],
                  resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per aspect: mean, 95% CI and every score (kept so a front can be re-analysed)."""
    flat_prompts = [p for p, rs in zip(raw_prompts, replies) for _ in rs]
    flat_replies = [r for rs in replies for r in rs]
    metrics: dict[str, dict[str, Any]] = {}
    for aspect, judge in judges.items():
        scores = judge(flat_prompts, flat_replies)
        metrics[aspect] = {
            "mean": float(np.mean(scores)),
            "ci": list(bootstrap_ci(scores, resamples, seed)),
            "n": len(scores),
            "scores": [round(s, 6) for s in scores],
        }
    return metrics
