"""vLLM as the sweep's GPU engine: many LoRA points in one ``generate`` call, on one engine per base.

Why it looks like this. vLLM's point is serving many LoRA adapters in one continuous batch,
so a sweep round (every family point still to evaluate) goes to vLLM as **one**
``LLM.generate`` call:

* each point is written once as one exact PEFT adapter (:func:`peo_hub.family.merge.export_adapter`:
  ``B = [c₁s₁B₁ … cₙsₙBₙ]``, ``A = [A₁; …; Aₙ]``, rank ``Σ rᵢ``), and each of its rows carries a
  ``LoRARequest`` naming that folder under an id no other adapter ever gets (the base point
  carries none);
* one ``vllm.LLM(enable_lora=True, max_loras=K, max_lora_rank=R)`` per base model (and rank
  bucket), kept for the whole run; ``K`` (how many adapters share a step) and
  ``gpu_memory_utilization`` are recipe settings (``evaluate.vllm``);
* every row (prompt × sample) is its own request with ``SamplingParams(seed=row_seed(...))``,
  the same seed the transformers engine gives that row (:func:`peo_hub.family.engines.row_seed`),
  so a reply does not depend on what it is batched with, and every point sees the same
  random numbers for the same prompt and sample (common random numbers). vLLM's sampler is
  not transformers', so sampled replies are equal across engines only in distribution;
  greedy replies are equal up to float rounding;
* the degeneration guard's base log-probs come from the same engine, from ``prompt_logprobs``
  over prompt + reply with no LoRA (:class:`VllmBaseLogprob`), instead of a second copy of
  the base in transformers; the judges then score all replies in their own batched pass.

vLLM needs Linux and a CUDA GPU: :func:`require_vllm` refuses, in one line, a machine without
either. The plumbing is tested on CPU against a stand-in ``vllm`` module with vLLM's call
signatures (``tests/support/fake_vllm.py``); ``benchmarks/gpu_smoke.sh`` runs the real thing.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

from peo_hub.utils.errors import PEOError

VLLM_INSTALL = "pip install 'peo-hub[vllm]'"
#: The ``max_lora_rank`` values vLLM accepts (``vllm.config.lora.MaxLoRARanks``; 1 too, which no export needs).
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class VllmSettings:
    """``evaluate.vllm`` as the engine reads it (the recipe's section has the same fields)."""

    gpu_memory_utilization: float = 0.5
    max_loras: int = 8
    max_model_len: int | None = None
    enforce_eager: bool = False
    dtype: str = "auto"


def import_vllm() -> Any:
    """The ``vllm`` module, or one line naming the install command."""
    try:
        import vllm
    except ImportError:
        raise PEOError(f"evaluate.engine is vllm but vLLM is not installed; {VLLM_INSTALL} (Linux with a CUDA GPU), "
                       "or set evaluate.engine: transformers") from None
    return vllm


def require_vllm() -> None:
    """Refuse, before any training, a machine where the vLLM engine cannot run (no vLLM, no CUDA GPU)."""
    import torch

    import_vllm()
    if not torch.cuda.is_available():
        raise PEOError("evaluate.engine is vllm but this machine has no CUDA GPU that torch can use (vLLM runs on "
                       "CUDA GPUs); set evaluate.engine: transformers")


def rank_bucket(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds ``rank``."""
    bucket = next((r for r in VLLM_LORA_RANKS if r >= rank), None)
    if bucket is None:
        raise PEOError(f"an exported point has LoRA rank {rank}, above vLLM's largest max_lora_rank "
                       f"{VLLM_LORA_RANKS[-1]}; use fewer aspects or a lower train.lora.r, or evaluate.engine: "
                       "transformers")
    return bucket


def adapter_rank(folder: str | os.PathLike[str]) -> int:
    """``r`` of a saved PEFT adapter (an export has one rank for every module)."""
    with open(os.path.join(folder, "adapter_config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    return max([int(config["r"]), *map(int, (config.get("rank_pattern") or {}).values())])


def settings_of(spec: Any) -> VllmSettings:
    """The engine settings from a recipe's ``evaluate`` section (defaults where it has none)."""
    section = getattr(spec, "vllm", None)
    if section is None:
        return VllmSettings()
    return VllmSettings(**{k: getattr(section, k) for k in VllmSettings.__dataclass_fields__ if hasattr(section, k)})


class VllmEngine:
    """One ``vllm.LLM`` over one base model, serving any number of exported LoRA points."""

    _engines: dict[tuple[str, str | None, int], "VllmEngine"] = {}

    def __init__(self, base: str, revision: str | None, max_lora_rank: int, settings: VllmSettings,
                 seed: int) -> None:
        vllm = import_vllm()
        self.base, self.revision, self.max_lora_rank, self.settings = base, revision, max_lora_rank, settings
        extra = {} if settings.max_model_len is None else {"max_model_len": settings.max_model_len}
        self.llm = vllm.LLM(model=base, tokenizer=base, revision=revision, tokenizer_revision=revision,
                            dtype=settings.dtype, seed=seed, enable_lora=True, max_loras=settings.max_loras,
                            max_lora_rank=max_lora_rank, gpu_memory_utilization=settings.gpu_memory_utilization,
                            enforce_eager=settings.enforce_eager, **extra)
        self._next_id = 1

    @classmethod
    def for_base(cls, base: str, revision: str | None, rank: int, settings: VllmSettings, seed: int) -> "VllmEngine":
        """The run's engine for ``base`` (made on first use, kept: a sweep loads its base once)."""
        bucket = rank_bucket(max(rank, 1))
        key = (str(base), revision, bucket)
        if key not in cls._engines:
            cls._engines[key] = cls(str(base), revision, bucket, settings, seed)
        return cls._engines[key]

    @classmethod
    def release(cls) -> None:
        """Drop every kept engine (and its GPU memory once collected)."""
        cls._engines.clear()

    def lora(self, folder: str | os.PathLike[str]) -> Any:
        """A ``LoRARequest`` for an adapter folder, under an id no other adapter of this engine had.

        vLLM caches adapters by id, so an id is never reused for another folder's weights.
        """
        from vllm.lora.request import LoRARequest

        lora_id = self._next_id
        self._next_id += 1
        return LoRARequest(f"peo-{lora_id}", lora_id, str(folder))

    def generate(self, prompt_ids: Sequence[Sequence[int]], loras: Sequence[Any], seeds: Sequence[int | None],
                 spec: Any) -> list[str]:
        """One reply per row, all rows in one ``generate`` call: row i is ``prompt_ids[i]`` under ``loras[i]``."""
        vllm = import_vllm()
        params = [vllm.SamplingParams(n=1, temperature=spec.temperature, top_p=spec.top_p,
                                      max_tokens=spec.max_new_tokens, seed=seed) for seed in seeds]
        outputs = self.llm.generate([{"prompt_token_ids": list(ids)} for ids in prompt_ids], params,
                                    lora_request=list(loras), use_tqdm=False)
        return [output.outputs[0].text.strip() for output in outputs]

    def mean_logprobs(self, rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
        """Mean log-probability of each ``reply`` token after its ``prompt`` under the bare base (``prompt_logprobs``)."""
        vllm = import_vllm()
        todo = [(k, list(p) + list(r), len(p)) for k, (p, r) in enumerate(rows) if r]
        values = [math.nan] * len(rows)  # an empty reply has no token to score
        if not todo:
            return values
        params = vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, prompt_logprobs=0)
        outputs = self.llm.generate([{"prompt_token_ids": ids} for _, ids, _ in todo], params, use_tqdm=False)
        for (k, ids, start), output in zip(todo, outputs):
            per_token = [output.prompt_logprobs[j][ids[j]].logprob for j in range(start, len(ids))]
            values[k] = round(float(sum(per_token) / len(per_token)), 6)
        return values


class VllmBaseLogprob:
    """The guard's base log-probs (:class:`peo_hub.evaluate.logprob.BaseLogprob`'s interface) from vLLM.

    Prompt and reply are tokenized apart and joined, as the transformers version does, and each
    (prompt, reply) is scored once per sweep.
    """

    def __init__(self, engine: VllmEngine, tokenizer: Any) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        self._known: dict[tuple[str, str], float] = {}

    def __call__(self, rendered_prompts: Sequence[str], replies: Sequence[Sequence[str]]) -> list[list[float]]:
        pairs = [(p, r) for p, group in zip(rendered_prompts, replies) for r in group]
        todo = [pair for pair in dict.fromkeys(pairs) if pair not in self._known]
        if todo:
            prompts = self.tokenizer([p for p, _ in todo], add_special_tokens=False)["input_ids"]
            answers = self.tokenizer([r for _, r in todo], add_special_tokens=False)["input_ids"]
            for pair, value in zip(todo, self.engine.mean_logprobs(list(zip(prompts, answers)))):
                self._known[pair] = value
        values = iter(self._known[pair] for pair in pairs)
        return [[next(values) for _ in group] for group in replies]


def generate_points(engine_for: Any, tokenizer: Any, texts: Sequence[str], seeds: Sequence[int | None],
                    adapters: Sequence[str | None], spec: Any) -> list[list[str]]:
    """Replies of many policies (one adapter folder each; ``None`` = the bare base) in one ``generate`` call.

    ``texts`` and ``seeds`` are one policy's rows (rendered prompt, sampling seed; see
    :func:`peo_hub.family.engines.point_rows`), the same for every policy. ``engine_for(rank)``
    gives the engine (made once per base and rank bucket). Returns each policy's replies, row by row.
    """
    rank = max([adapter_rank(a) for a in adapters if a is not None] or [1])
    engine: VllmEngine = engine_for(rank)
    unique = list(dict.fromkeys(texts))
    encoded = dict(zip(unique, tokenizer(unique, add_special_tokens=False)["input_ids"]))
    requests = [None if a is None else engine.lora(a) for a in adapters]
    rows = [(encoded[t], request, s) for request in requests for t, s in zip(texts, seeds)]
    replies = engine.generate([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], spec)
    return [replies[k * len(texts):(k + 1) * len(texts)] for k in range(len(adapters))]
