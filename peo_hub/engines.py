"""Generation engines: how a policy's replies to the evaluation prompts are produced. A registry.

An engine is a function ``(model, tokenizer, rendered_prompts, sampling, seed) -> replies``
(``sampling.samples`` replies per prompt). ``transformers`` runs ``generate`` on the policy
at its live preference and works everywhere; ``vllm`` serves each point as one exported LoRA
adapter (optional, GPU only). Adding an engine is one :func:`register_engine` call; the
recipe's ``evaluate.engine`` is checked against :data:`ENGINES`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from peo_hub.errors import PEOError


class Sampling(Protocol):
    """What an engine reads of the recipe's ``evaluate`` section."""

    samples: int
    max_new_tokens: int
    temperature: float
    top_p: float
    batch_size: int


Generate = Callable[[Any, Any, Sequence[str], Sampling, int], "list[list[str]]"]


@dataclass(frozen=True)
class Engine:
    name: str
    generate: Generate
    summary: str
    check: Callable[[], None] = lambda: None  # raises PEOError when the engine cannot run here


ENGINES: dict[str, Engine] = {}


def register_engine(name: str, summary: str, check: Callable[[], None] = lambda: None
                    ) -> Callable[[Generate], Generate]:
    def add(generate: Generate) -> Generate:
        ENGINES[name] = Engine(name=name, generate=generate, summary=summary, check=check)
        return generate
    return add


def require_engine(name: str) -> None:
    """Fail early (before hours of training) when a generation engine is unknown or missing."""
    if name not in ENGINES:
        raise PEOError(f"unknown generation engine {name!r}; known: {', '.join(ENGINES)}")
    ENGINES[name].check()


def generate_replies(model: Any, tokenizer: Any, rendered_prompts: Sequence[str], spec: Any,
                     seed: int) -> list[list[str]]:
    """``spec.samples`` replies per rendered prompt from the engine ``spec.engine`` names."""
    return ENGINES[getattr(spec, "engine", "transformers")].generate(model, tokenizer, rendered_prompts, spec, seed)


def row_seed(seed: int, prompt: str, sample: int) -> int:
    """The sampling seed of one reply: a hash of (recipe seed, rendered prompt, sample number).

    It names the row, not its place in a batch, so a reply is the same whatever it is batched
    with (other prompts, other points), and every point sees the same random numbers for the
    same prompt and sample (common random numbers across the sweep).
    """
    digest = hashlib.sha256(f"{seed}\0{sample}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class RowSampler:  # duck-typed transformers LogitsProcessor (imported lazily)
    """A transformers logits processor that samples every row with its own ``torch.Generator``.

    transformers' ``do_sample`` draws all rows from one global random stream, so a row's
    reply would depend on its neighbours in the batch. Here each row's next token is drawn
    by inverse-CDF from its own CPU generator (one uniform per row and step), after
    transformers' own temperature and top-p warpers; the processor then returns scores that
    are ``-inf`` everywhere but the drawn token, for ``generate`` to pick greedily.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        self.generators = [_generator(s) for s in seeds]
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)]
                                           + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else []))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if scores.shape[0] != len(self.generators):
            raise PEOError(f"{scores.shape[0]} rows to sample but {len(self.generators)} row seeds")
        probs = torch.softmax(self.warpers(input_ids, scores).float(), dim=-1)
        uniform = torch.cat([torch.rand(1, generator=g) for g in self.generators]).to(probs.device)
        cdf = probs.cumsum(dim=-1)
        token = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(1), right=True)
        token = token.clamp_(max=scores.shape[-1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token, 0.0)


def _generator(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)


def generate_rows(model: Any, tokenizer: Any, texts: Sequence[str], samples: Sequence[int], spec: "Sampling",
                  seed: int, preferences: Sequence[Any] | None = None) -> Iterator[tuple[int, list[str]]]:
    """Replies to rows (rendered prompt, sample number), ``spec.batch_size`` rows per ``generate``.

    Yields ``(end, replies)`` after each batch: the rows before ``end`` are done. With
    ``preferences`` (one per row; ``model`` is a :class:`~peo_hub.model.PEOModel`) each row is
    generated at its own policy in the same batch, so many points of a sweep share a
    forward pass. Greedy rows are deterministic; sampled rows use :class:`RowSampler` with
    :func:`row_seed`, so a row's reply does not depend on the batch it is in. Prompts are
    padded on the left whatever the tokenizer's own padding side (right padding would make
    every shorter prompt continue after pad tokens).
    """
    import torch
    from transformers import LogitsProcessorList

    if tokenizer.pad_token is None:  # GPT-2-style tokenizers have none; batching needs one
        tokenizer.pad_token = tokenizer.eos_token
    greedy = spec.temperature == 0
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else getattr(model, "device", "cpu")
    for start in range(0, len(texts), spec.batch_size):
        stop = min(start + spec.batch_size, len(texts))
        batch = tokenizer(list(texts[start:stop]), return_tensors="pt", padding=True, padding_side="left",
                          add_special_tokens=False).to(device)
        kwargs: dict[str, Any] = {"max_new_tokens": spec.max_new_tokens, "do_sample": False}
        if not greedy:
            seeds = [row_seed(seed, texts[i], samples[i]) for i in range(start, stop)]
            kwargs["logits_processor"] = LogitsProcessorList([RowSampler(seeds, spec.temperature, spec.top_p)])
        if preferences is not None:
            kwargs["preferences"] = list(preferences[start:stop])
        with torch.inference_mode():
            output = model.generate(**batch, pad_token_id=tokenizer.pad_token_id, **kwargs)
        new = output[:, batch["input_ids"].shape[1]:]
        yield stop, [r.strip() for r in tokenizer.batch_decode(new, skip_special_tokens=True)]


def transformers_generate(model: Any, tokenizer: Any, rendered_prompts: Sequence[str], spec: "Sampling",
                          seed: int) -> list[list[str]]:
    """``spec.samples`` sampled replies for each rendered prompt, in batches (:func:`generate_rows`).

    ``model`` is anything with a transformers ``generate`` (a ``PEOModel`` at its current
    preference, or a plain model). With the vLLM engine the same replies come from vLLM
    instead (:func:`vllm_generate`).
    """
    texts = [p for p in rendered_prompts for _ in range(spec.samples)]
    samples = [k for _ in rendered_prompts for k in range(spec.samples)]
    replies = [r for _, chunk in generate_rows(model, tokenizer, texts, samples, spec, seed) for r in chunk]
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

    if hasattr(model, "export_adapter") and hasattr(model, "coefficients"):  # a PEOModel
        base = model.bundle.base
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


def vllm_generate(model: Any, tokenizer: Any, rendered_prompts: Sequence[str], spec: "Sampling",
                  seed: int) -> list[list[str]]:
    """:func:`transformers_generate` through vLLM (untested on CPU; see the note above).

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


register_engine("transformers", "transformers generate at the live preference; runs anywhere")(transformers_generate)
register_engine("vllm", "vLLM serving each point as one exported LoRA adapter (pip install 'peo-hub[vllm]'; GPU)",
                check=lambda: _import_vllm() and None)(vllm_generate)
