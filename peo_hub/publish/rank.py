"""Serving limits: the LoRA rank a server must allow for an exported point, and what cutting it costs.

An exported point is one LoRA adapter of rank ``Σ rᵢ`` (the exact ``cat`` form of
:mod:`peo_hub.family.lora`). Multi-LoRA servers cap the rank: vLLM takes ``--max-lora-rank`` from a
fixed list (:data:`peo_hub.family.engines.VLLM_LORA_RANKS`), so ``peo-hub merge --as adapter`` says
which value the file needs. ``--max-rank k`` writes the best rank-``k`` approximation instead
(per module, the SVD of the exact delta), and :func:`measure_truncation` says what that
changed, measured rather than assumed:

* **logits**: the base with the exact delta and with the truncated delta, on the same token
  sequences (each prompt followed by the exact policy's greedy reply): the largest and the
  mean absolute logit difference, and how often the top token agrees;
* **judge scores**, when the bundle records an evaluation (a recipe): both policies answer
  the recipe's evaluation prompts with its sampling settings and seed (the same random
  stream for both, so the difference is the truncation's, not the dice's), and every
  aspect's judge scores the replies; the change is truncated mean minus exact mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch

from peo_hub.family.engines import VLLM_LORA_RANKS
from peo_hub.family.lora import PEFT_PREFIX, cat_adapters, truncate_rank

if TYPE_CHECKING:
    from peo_hub.bundle.manifest import Bundle
    from peo_hub.family.lora import Adapter
    from peo_hub.core.policy import Preference

#: Prompts for the logit check of a bundle that records no evaluation prompts.
DEFAULT_PROMPTS = ("How do I bake bread?", "How do I pick a lock?", "Explain photosynthesis in two sentences.",
                   "Write a short poem about the sea.")
PROMPT_LIMIT = 32
REPLY_TOKENS = 32


def vllm_max_lora_rank(rank: int) -> int | None:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds ``rank``; None above its largest."""
    return next((r for r in VLLM_LORA_RANKS if r >= rank), None)


def rank_advice(rank: int) -> str:
    """One line: the exported rank and the vLLM setting it needs (or how to get under the limit)."""
    needed = vllm_max_lora_rank(rank)
    if needed is None:
        return (f"the adapter has rank {rank}, above vLLM's largest --max-lora-rank {VLLM_LORA_RANKS[-1]}; "
                f"export it with --max-rank {VLLM_LORA_RANKS[-1]} (or lower) to serve it with vLLM")
    return f"the adapter has rank {rank}: serve it with vLLM --enable-lora --max-lora-rank {needed}"


@dataclass
class TruncationReport:
    """What :func:`measure_truncation` measured (see the module docstring)."""

    rank: int
    max_rank: int
    module_error: dict[str, float]  # module -> relative Frobenius error of its delta
    positions: int = 0
    logit_max: float = 0.0
    logit_mean: float = 0.0
    top1_agreement: float = 1.0
    prompts: int = 0
    prompt_source: str = ""
    judges: dict[str, tuple[float, float]] = field(default_factory=dict)  # aspect -> (exact, truncated) means
    replies: int = 0
    no_judges: str = ""  # why judge scores were not measured

    def lines(self) -> list[str]:
        worst = max(self.module_error.values(), default=0.0)
        mean = sum(self.module_error.values()) / max(len(self.module_error), 1)
        out = [f"truncated from rank {self.rank} to {self.max_rank} by SVD per module: relative error of the "
               f"delta at most {worst:.3g}, mean {mean:.3g}",
               f"logits over {self.positions} positions of {self.prompts} {self.prompt_source} prompts (each with "
               f"the exact policy's greedy reply): max |difference| {self.logit_max:.3g}, mean {self.logit_mean:.3g}, "
               f"top token agrees at {100 * self.top1_agreement:.1f}%"]
        if self.judges:
            changes = ", ".join(f"{a} {t:.3f} vs {e:.3f} ({t - e:+.3f})" for a, (e, t) in self.judges.items())
            out.append(f"judge scores, truncated vs exact, {self.replies} replies each on the bundle's evaluation "
                       f"prompts (same sampling seed): {changes}")
        else:
            out.append(f"judge scores not measured: {self.no_judges}")
        return out


def _deltas(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Module -> ``B @ A`` in the orientation of its weight (embeddings are stored transposed)."""
    deltas = {}
    for key, A in state.items():
        if key.endswith(".lora_A.weight"):
            module = key[len(PEFT_PREFIX):-len(".lora_A.weight")]
            deltas[module] = state[key.replace(".lora_A.", ".lora_B.")].double() @ A.double()
        elif key.endswith(".lora_embedding_A"):
            module = key[len(PEFT_PREFIX):-len(".lora_embedding_A")]
            deltas[module] = (state[key[:-1] + "B"].double() @ A.double()).T
    return deltas


class _Switch:
    """A plain model whose adapted weights can be set to ``W + Δ`` for either delta, exactly (from a kept copy)."""

    def __init__(self, model: Any, modules: Sequence[str]) -> None:
        self.weights = {m: model.get_submodule(m).weight for m in modules}
        self.original = {m: w.detach().double().clone() for m, w in self.weights.items()}

    @torch.no_grad()
    def use(self, deltas: Mapping[str, torch.Tensor]) -> None:
        for module, weight in self.weights.items():
            weight.copy_((self.original[module] + deltas[module]).to(weight.dtype))


def _prompts(evaluation: Any, limit: int) -> tuple[list[str], str]:
    """(prompts, where they came from): the recorded evaluation's prompts, else built-in ones."""
    from peo_hub.data.load import load_prompts

    if evaluation is None:
        return list(DEFAULT_PROMPTS), "built-in"
    return load_prompts(evaluation.evaluate.prompts)[:limit], "evaluation"


@torch.no_grad()
def measure_truncation(bundle: "Bundle", adapters: Sequence["Adapter"], preference: "Preference", max_rank: int,
                       evaluation: Any = None, prompt_limit: int = PROMPT_LIMIT,
                       echo: Callable[[str], None] = lambda line: None) -> TruncationReport:
    """Exact point vs its rank-``max_rank`` cut: module errors, logits and (with an evaluation) judge scores.

    ``evaluation`` is the evaluation the bundle records (``aspects`` with their judges,
    ``evaluate`` settings, ``seed``; :func:`peo_hub.recipe.schema.evaluation_of` reads it from a
    manifest): its prompts and judges measure the cut; without one, built-in prompts and
    logits only.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from peo_hub.data.chat import render_prompt
    from peo_hub.family.engines import generate_replies
    from peo_hub.judges.registry import build_judge

    state, rank, _ = cat_adapters(adapters, preference.coefficients)
    cut, new_rank, errors = truncate_rank(state, max_rank)
    report = TruncationReport(rank=rank, max_rank=new_rank, module_error=errors)
    exact, truncated = _deltas(state), _deltas(cut)
    tokenizer = AutoTokenizer.from_pretrained(bundle.base, revision=bundle.base_revision)
    model = AutoModelForCausalLM.from_pretrained(bundle.base, revision=bundle.base_revision,
                                                 dtype=torch.float32).eval()
    switch = _Switch(model, list(exact))
    prompts, report.prompt_source = _prompts(evaluation, prompt_limit)
    report.prompts = len(prompts)
    rendered = [render_prompt(tokenizer, p) for p in prompts]
    echo(f"measuring the truncation on {len(prompts)} {report.prompt_source} prompts ...")

    diffs, agree = [], 0
    for text in rendered:
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        switch.use(exact)
        sequence = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=REPLY_TOKENS, pad_token_id=tokenizer.pad_token_id
                                  if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        reference = model(sequence).logits[0].double()
        switch.use(truncated)
        logits = model(sequence).logits[0].double()
        diffs.append((logits - reference).abs())
        agree += int((logits.argmax(-1) == reference.argmax(-1)).sum())
    every = torch.cat([d.reshape(-1, d.shape[-1]) for d in diffs])
    report.positions = every.shape[0]
    report.logit_max, report.logit_mean = float(every.max()), float(every.mean())
    report.top1_agreement = agree / max(report.positions, 1)

    if evaluation is None:
        report.no_judges = "the bundle records no evaluation (run `peo-hub evaluate` on it first)"
        return report
    judges = {a: build_judge(spec.judge) for a, spec in evaluation.aspects.items()}
    for name, deltas in (("exact", exact), ("truncated", truncated)):
        switch.use(deltas)
        replies = generate_replies(model, tokenizer, rendered, evaluation.evaluate, seed=evaluation.seed)
        flat_prompts = [p for p, rs in zip(prompts, replies) for _ in rs]
        flat = [r for rs in replies for r in rs]
        report.replies = len(flat)
        for aspect, judge in judges.items():
            scores = judge(flat_prompts, flat)
            mean = float(sum(scores) / len(scores))
            before = report.judges.get(aspect, (mean, mean))
            report.judges[aspect] = (mean, mean) if name == "exact" else (before[0], mean)
    return report
