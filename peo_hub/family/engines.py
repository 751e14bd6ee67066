"""Generation engines: how a policy's replies to the evaluation prompts are produced. A registry.

An engine is a function ``(model, tokenizer, rendered_prompts, sampling, seed) -> replies``
(``sampling.samples`` replies per prompt). ``transformers`` runs ``generate`` on the policy
at its live preference and works everywhere; ``vllm`` serves each point as one exported LoRA
adapter (optional, GPU only; the sweep sends it whole rounds of points, :mod:`peo_hub.family.vllm_engine`). Adding an engine is one :func:`register_engine` call; the
recipe's ``evaluate.engine`` is checked against :data:`ENGINES`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator, Protocol, Sequence

from peo_hub.family import vllm_engine
from peo_hub.utils.errors import PEOError


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


def point_rows(rendered: Sequence[str], samples: int, seed: int, greedy: bool) -> tuple[list[str], list[int | None]]:
    """One policy's rows (each rendered prompt ``samples`` times) and their seeds (``None``: greedy, no dice)."""
    texts = [t for t in rendered for _ in range(samples)]
    seeds = [None if greedy else row_seed(seed, t, k) for t in rendered for k in range(samples)]
    return texts, seeds


def group_rows(replies: Sequence[str], samples: int) -> list[list[str]]:
    """A policy's replies, row by row, grouped per prompt (``samples`` each)."""
    return [list(replies[i:i + samples]) for i in range(0, len(replies), samples)]


class RowSampler:  # duck-typed transformers LogitsProcessor (imported lazily)
    """A transformers logits processor that samples every row with its own ``torch.Generator``.

    transformers' ``do_sample`` draws all rows from one global random stream, so a row's
    reply would depend on its neighbours in the batch. Here each row's next token is drawn
    by inverse-CDF from its own CPU generator (one uniform per row and step), after
    transformers' own temperature and top-p warpers; the processor then returns scores that
    are ``-inf`` everywhere but the drawn token, for ``generate`` to pick greedily.

    The uniforms are drawn ``steps`` at a time per row (a generator's stream is the same
    whether read one number or a block at a time), so a step costs no per-row Python work.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, steps: int = 64) -> None:
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        self.generators = [_generator(s) for s in seeds]
        self.steps = max(1, steps)
        self.uniforms: Any = None  # (rows, steps) block of draws, refilled when used up
        self.step = 0
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)]
                                           + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else []))

    def _uniform(self) -> Any:
        """This step's uniform for every row, from each row's own stream."""
        import torch

        if self.uniforms is None or self.step == self.uniforms.shape[1]:
            self.uniforms = torch.stack([torch.rand(self.steps, generator=g) for g in self.generators])
            self.step = 0
        self.step += 1
        return self.uniforms[:, self.step - 1]

    def keep(self, rows: Any) -> None:
        """Only ``rows`` (indices into the current rows) go on: the others have ended."""
        index = [int(i) for i in rows]
        self.generators = [self.generators[i] for i in index]
        if self.uniforms is not None:
            self.uniforms = self.uniforms[index]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if scores.shape[0] != len(self.generators):
            raise PEOError(f"{scores.shape[0]} rows to sample but {len(self.generators)} row seeds")
        probs = torch.softmax(self.warpers(input_ids, scores).float(), dim=-1)
        uniform = self._uniform().to(probs.device)
        cdf = probs.cumsum(dim=-1)
        token = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(1), right=True)
        token = token.clamp_(max=scores.shape[-1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token, 0.0)


def _generator(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)


def generate_rows(model: Any, tokenizer: Any, texts: Sequence[str], samples: Sequence[int], spec: "Sampling",
                  seed: int, preferences: Sequence[Any] | None = None,
                  seed_texts: Sequence[str] | None = None) -> Iterator[tuple[int, list[str]]]:
    """Replies to rows (rendered prompt, sample number), ``spec.batch_size`` rows per ``generate``.

    Yields ``(end, replies)`` after each batch: the rows before ``end`` are done. With
    ``preferences`` (one per row; ``model`` is a :class:`~peo_hub.family.model.PEOModel`) each row is
    generated at its own policy in the same batch, so many points of a sweep share a
    forward pass. Greedy rows are deterministic; sampled rows use :class:`RowSampler` with
    :func:`row_seed` of the row's text, or of ``seed_texts[i]`` when given (a baseline that
    changes the prompt, e.g. adds a system prompt, keeps the evaluation prompt's random numbers).

    Every row is padded on the left to the longest prompt of the whole call, not of its
    batch: a padded row's numbers depend on how much padding it gets (attention sums over
    the padded positions in a different order), so padding that followed the batch made a
    reply depend on its neighbours and on ``batch_size``. With one width per call a reply is
    the same at any batch size and in any company. (Left, whatever the tokenizer's own
    side: right padding would make every shorter prompt continue after pad tokens.)
    """
    import torch

    if tokenizer.pad_token is None:  # GPT-2-style tokenizers have none; batching needs one
        tokenizer.pad_token = tokenizer.eos_token
    greedy = spec.temperature == 0
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else getattr(model, "device", "cpu")
    unique = list(dict.fromkeys(texts))
    encoded = dict(zip(unique, tokenizer(unique, add_special_tokens=False)["input_ids"]))
    width = max((len(ids) for ids in encoded.values()), default=0)
    eos = _eos_ids(model, tokenizer)
    for start in range(0, len(texts), spec.batch_size):
        stop = min(start + spec.batch_size, len(texts))
        batch = left_padded([encoded[t] for t in texts[start:stop]], width, tokenizer.pad_token_id, device)
        sampler = None
        if not greedy:
            names = texts if seed_texts is None else seed_texts
            seeds = [row_seed(seed, names[i], samples[i]) for i in range(start, stop)]
            sampler = RowSampler(seeds, spec.temperature, spec.top_p, steps=spec.max_new_tokens)
        rows = None if preferences is None else list(preferences[start:stop])
        # Rows with the same prompt and policy (a prompt's samples) share one prompt cache.
        shared = [(texts[i], None if rows is None else repr(rows[i - start])) for i in range(start, stop)]
        with torch.inference_mode():
            new = generate_shrinking(model, batch, spec.max_new_tokens, tokenizer.pad_token_id, eos, sampler, rows,
                                     shared)
        yield stop, [r.strip() for r in tokenizer.batch_decode(new, skip_special_tokens=True)]


#: New tokens per ``generate`` call in :func:`generate_shrinking`: between calls, the rows
#: that have ended leave the batch.
SEGMENT_TOKENS = 4


def generate_shrinking(model: Any, batch: dict[str, Any], max_new_tokens: int, pad_id: int, eos: Sequence[int],
                       sampler: RowSampler | None = None, preferences: Sequence[Any] | None = None,
                       shared: Sequence[Hashable] | None = None, processors: Sequence[Any] = ()) -> list[list[int]]:
    """Each row's new tokens (up to and including its end token), rows leaving as they end.

    Three kinds of idle work that ``generate`` does on a big batch of sampled replies are
    skipped, without changing any row's numbers:

    * **the prompt, once per distinct prompt**: rows with equal ``shared`` keys (a
      prompt's samples at one policy) get one KV cache of the prompt, computed for one of
      them and copied (:func:`prompt_cache`);
    * **copying the cache**: the cache has room for a segment, and each new token is
      written into it (:mod:`peo_hub.family.kvcache`) instead of concatenated to a copy;
    * **rows that have ended**: ``generate`` runs a batch until its longest row ends, and
      the toy's replies average half the length cap. Here ``generate`` runs
      :data:`SEGMENT_TOKENS` tokens at a time, continuing from its own KV cache; between
      segments the rows that ended leave the batch, the cache, the sampler and the per-row
      preferences.

    A row's computation is the same whatever rows share its batch (the same positions,
    mask and cache; the matrix products do not depend on how many rows they hold), so its
    tokens are too.

    ``processors`` are logits processors run before the sampler (e.g. MOD's mixing of
    several rows' log-probabilities, :mod:`peo_hub.family.mod`); like the sampler, each is
    told which rows go on (``keep``) when ended rows leave the batch.
    """
    import torch
    from transformers import LogitsProcessorList

    ids, mask = batch["input_ids"], batch["attention_mask"]
    alive = list(range(ids.shape[0]))
    produced: list[list[int]] = [[] for _ in alive]
    end = torch.tensor(sorted(set(eos)), dtype=ids.dtype, device=ids.device)
    cache = prompt_cache(model, ids, mask, preferences, shared if shared is not None else alive,
                         room=SEGMENT_TOKENS)  # a segment's tokens are written in place, not concatenated
    chain = [*processors, *([] if sampler is None else [sampler])]  # MOD's mixing first, then the draw
    left = max_new_tokens
    while left > 0:
        step = min(SEGMENT_TOKENS, left)
        kwargs: dict[str, Any] = {"max_new_tokens": step, "do_sample": False, "pad_token_id": pad_id,
                                  "return_dict_in_generate": True}
        if cache is not None:
            kwargs["cache"] = cache
        if chain:
            kwargs["logits_processor"] = LogitsProcessorList(chain)
        if preferences is not None:
            kwargs["preferences"] = [preferences[i] for i in alive]
        output = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new = output.sequences[:, ids.shape[1]:]
        ended = torch.isin(new, end).any(dim=1) if len(end) else torch.zeros(len(alive), dtype=torch.bool)
        for k, row in enumerate(alive):
            tokens = new[k].tolist()
            cut = next((i + 1 for i, t in enumerate(tokens) if t in eos), len(tokens))
            produced[row].extend(tokens[:cut])
        left -= new.shape[1]
        keep = (~ended).nonzero().flatten()
        if new.shape[1] < step or len(keep) == 0:
            break  # every row has ended
        cache = output.cache
        if len(keep) < len(alive):
            cache.batch_select_indices(keep)
            for processor in chain:
                processor.keep(keep)
        alive = [alive[k] for k in keep.tolist()]
        ids = output.sequences[keep]
        mask = torch.cat([mask[keep], mask.new_ones((len(keep), new.shape[1]))], dim=1)
    return produced


def prompt_cache(model: Any, ids: Any, mask: Any, preferences: Sequence[Any] | None,
                 shared: Sequence[Hashable], room: int = 0) -> Any:
    """The KV cache of every row's prompt but its last token, computed once per distinct ``shared`` key.

    The last token is left for ``generate``, which needs one token to start from. Every
    row's prompt goes this way, shared or not, so that a row's numbers do not depend on
    whether its batch happens to hold another sample of its prompt. ``None`` (no cache)
    for one-token prompts. With ``room``, the cache appends that many tokens in place
    (:func:`peo_hub.family.kvcache.reserve`); the distinct prompts' cache is then copied to the
    rows straight into buffers with that room.
    """
    import torch

    from peo_hub.family.kvcache import reserve

    if ids.shape[1] < 2:
        return None
    first: dict[Hashable, int] = {}
    unique = [first.setdefault(key, k) for k, key in enumerate(shared)]
    distinct = sorted(set(unique))
    index = torch.tensor([distinct.index(u) for u in unique], device=ids.device)
    prefix_mask = mask[distinct, :-1]
    positions = (prefix_mask.long().cumsum(-1) - 1).masked_fill_(prefix_mask == 0, 1)  # as ``generate`` numbers them
    inputs = {"input_ids": ids[distinct, :-1], "attention_mask": prefix_mask, "position_ids": positions,
              "use_cache": True}
    forward = model.model if hasattr(model, "row_preferences") else model  # a PEOModel: its transformers model
    if keeps_logits(forward):
        inputs["logits_to_keep"] = 1  # only the cache is wanted: skip the LM head on every prompt position
    if preferences is not None:
        with model.row_preferences([preferences[k] for k in distinct]):
            cache = forward(**inputs).cache
    else:
        cache = forward(**inputs).cache
    if room:
        reserve(cache, room)
    cache.batch_select_indices(index)
    return cache


def keeps_logits(model: Any) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep`` (transformers' causal LMs do).

    A prompt cache needs no logits, and on a small model the LM head is a large share of the
    work (SmolLM2-135M: 28M of its 135M weights, run on every prompt token); the decoder
    layers, and so the cache, are computed the same either way.
    """
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The token ids that end a reply: the generation config's, else the tokenizer's."""
    config = getattr(model, "generation_config", None)
    if config is None and hasattr(model, "model"):
        config = getattr(model.model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]


def left_padded(rows: Sequence[Sequence[int]], width: int, pad_id: int, device: Any = "cpu") -> dict[str, Any]:
    """``input_ids`` and ``attention_mask`` of token rows padded on the left to ``width``."""
    import torch

    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        if row:
            ids[k, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[k, width - len(row):] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


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


# --------------------------------------------------------------------------- vLLM (optional, GPU)
#
# A single policy through vLLM (a MORL baseline, or any caller of generate_replies). The
# sweep sends whole rounds of family points to vLLM at once instead (peo_hub.family.vllm_engine).

VLLM_INSTALL = vllm_engine.VLLM_INSTALL
VLLM_LORA_RANKS = vllm_engine.VLLM_LORA_RANKS


def _policy_adapter(model: Any, scratch: str) -> tuple[str, str | None, str | None]:
    """(base model, its revision, adapter folder or None for the bare base) of a policy."""
    import os

    if hasattr(model, "export_adapter") and hasattr(model, "coefficients"):  # a PEOModel
        bundle = model.bundle
        if all(c == 0.0 for c in model.coefficients.values()):
            return bundle.base, bundle.base_revision, None
        return bundle.base, bundle.base_revision, str(model.export_adapter(os.path.join(scratch, "point")))
    folder = os.path.join(scratch, "point")  # a PeftModel (the MORL baseline): its single adapter as it is
    model.save_pretrained(folder)
    base = model.get_base_model()
    return base.name_or_path, getattr(model.peft_config["default"], "revision", None), folder


def vllm_generate(model: Any, tokenizer: Any, rendered_prompts: Sequence[str], spec: "Sampling",
                  seed: int) -> list[list[str]]:
    """:func:`transformers_generate` through vLLM: the policy as one exported LoRA adapter, per-row seeds."""
    import tempfile

    vllm_engine.import_vllm()
    with tempfile.TemporaryDirectory(prefix="peo-vllm-") as scratch:
        base, revision, adapter = _policy_adapter(model, scratch)
        settings = vllm_engine.settings_of(spec)

        def engine_for(rank: int) -> vllm_engine.VllmEngine:
            return vllm_engine.VllmEngine.for_base(base, revision, rank, settings, seed)

        texts, seeds = point_rows(rendered_prompts, spec.samples, seed, greedy=spec.temperature == 0)
        replies = vllm_engine.generate_points(engine_for, tokenizer, texts, seeds, [adapter], spec)[0]
    return group_rows(replies, spec.samples)


register_engine("transformers", "transformers generate at the live preference; runs anywhere")(transformers_generate)
register_engine("vllm", "vLLM: a sweep round's points as exported LoRA adapters in one batch "
                        "(pip install 'peo-hub[vllm]'; CUDA GPU)", check=vllm_engine.require_vllm)(vllm_generate)
