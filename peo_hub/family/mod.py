"""MOD: decoding-time mixing of the aspect policies, the family's rival that mixes outputs, not weights.

MOD (Shi et al., NeurIPS 2024, "Decoding-Time Language Model Alignment with Multiple
Objectives") decodes from ``π_w(y_t | x, y_<t) ∝ Π_i π_i(y_t | x, y_<t)^{w_i}``: at every
token, the next-token scores are ``Σ_i w_i log π_i``, where ``π_i`` is the policy aligned to
aspect ``i`` alone. Its authors argue that mixing the policies' outputs beats mixing their
weights; PEO's sweep measures that claim on its own prompts and judges
(:mod:`peo_hub.evaluate.baselines.mod`).

Here every ``π_i`` is the base with aspect ``i``'s adapter at coefficient 1 (the family's
corner ``c = e_i``), so the N policies share one loaded model: a logical row becomes one
copy per aspect with a non-zero weight, each copy at its own one-hot preference
(:meth:`~peo_hub.family.model.PEOModel.row_preferences`), and the copies run in the same
forward passes. :class:`MixLogProbs`, a logits processor, replaces each copy's scores by its
group's mixture, so every copy picks the same token (greedy: the argmax; sampled: the same
per-row seed draws the same token from the same distribution) and the copies stay in step
until they end together. A token costs one forward pass of as many rows as the point has
non-zero weights: ``N`` at an interior point, ``1`` at a corner, where MOD is the aspect
policy itself (``tests/family/test_mod.py`` checks both that and a hand-computed mixture).

What is this module's own: the mixture and the row grouping. The batching, the prompt
cache, the per-row sampler and the shrinking batch are the engines' (:mod:`peo_hub.family.engines`).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from peo_hub.family.engines import (RowSampler, Sampling, _eos_ids, generate_shrinking, left_padded,
                                    row_seed)
from peo_hub.utils.errors import PreferenceError


class MixLogProbs:  # duck-typed transformers LogitsProcessor (imported lazily, like RowSampler)
    """Rows in groups; each row's scores become its group's ``Σ_k w_k log_softmax(scores_k)``.

    ``groups[r]`` names row r's logical row and ``weights[r]`` the weight of the aspect that
    row r runs; rows of a group must be at their aspects' policies (one-hot preferences).
    """

    def __init__(self, groups: Sequence[int], weights: Sequence[float]) -> None:
        import torch

        if len(groups) != len(weights):
            raise ValueError(f"{len(groups)} group ids for {len(weights)} weights")
        self.groups = torch.as_tensor(list(groups), dtype=torch.long)
        self.weights = torch.as_tensor(list(weights), dtype=torch.float32)

    def keep(self, rows: Any) -> None:
        """Only ``rows`` go on (a group's rows end together: they pick the same tokens)."""
        import torch

        index = torch.as_tensor([int(i) for i in rows], dtype=torch.long)
        self.groups = torch.unique(self.groups[index], return_inverse=True)[1]
        self.weights = self.weights[index]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if scores.shape[0] != len(self.groups):
            raise ValueError(f"{scores.shape[0]} rows to mix but {len(self.groups)} group ids")
        groups = self.groups.to(scores.device)
        logp = torch.log_softmax(scores.float(), dim=-1) * self.weights.to(scores.device)[:, None]
        mixed = torch.zeros((int(groups.max()) + 1, scores.shape[-1]), dtype=logp.dtype, device=scores.device)
        mixed.index_add_(0, groups, logp)
        return mixed[groups].to(scores.dtype)


def one_hot(aspects: Sequence[str], aspect: str) -> dict[str, float]:
    """The coefficients of aspect ``aspect``'s own policy: its adapter at 1, the others at 0."""
    return {a: 1.0 if a == aspect else 0.0 for a in aspects}


def expand(aspects: Sequence[str], weights: Mapping[str, float]) -> list[tuple[str, float]]:
    """The (aspect, weight) copies one logical row runs as: the aspects with a non-zero weight.

    Weights are normalised to sum to 1 (as the family's are); a zero weight costs nothing.
    """
    unknown = [a for a in weights if a not in aspects]
    if unknown:
        raise PreferenceError(f"MOD weights name unknown aspect {unknown[0]!r}; aspects: {', '.join(aspects)}")
    values = {a: float(weights.get(a, 0.0)) for a in aspects}
    if any(v < 0 for v in values.values()) or sum(values.values()) <= 0:
        raise PreferenceError(f"MOD weights must be >= 0 and not all zero, got {dict(weights)}")
    total = sum(values.values())
    return [(a, v / total) for a, v in values.items() if v > 0]


def mod_rows(model: Any, tokenizer: Any, texts: Sequence[str], samples: Sequence[int],
             weights: Sequence[Mapping[str, float]], spec: Sampling, seed: int
             ) -> Iterator[tuple[int, list[str]]]:
    """MOD's replies to rows (rendered prompt, sample number, weights), like :func:`~peo_hub.family.engines.generate_rows`.

    ``model`` is a :class:`~peo_hub.family.model.PEOModel`. Yields ``(end, replies)`` after
    each batch (the rows before ``end`` are done). A batch holds at most ``spec.batch_size``
    expanded rows (a logical row counts once per aspect it mixes), never splitting a row's
    copies. Sampled rows draw with the row's seed (:func:`~peo_hub.family.engines.row_seed`), the
    same random numbers the family's points use for that prompt and sample.
    """
    import torch

    aspects = list(model.aspects)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    unique = list(dict.fromkeys(texts))
    encoded = dict(zip(unique, tokenizer(unique, add_special_tokens=False)["input_ids"]))
    width = max((len(ids) for ids in encoded.values()), default=0)  # one width per call, as the engines do
    eos = _eos_ids(model, tokenizer)
    copies = [expand(aspects, w) for w in weights]
    start = 0
    while start < len(texts):
        stop, rows = start, 0
        while stop < len(texts) and (stop == start or rows + len(copies[stop]) <= spec.batch_size):
            rows += len(copies[stop])
            stop += 1
        ids, groups, mix, preferences, shared, seeds = [], [], [], [], [], []
        for g, i in enumerate(range(start, stop)):
            for aspect, weight in copies[i]:
                ids.append(encoded[texts[i]])
                groups.append(g)
                mix.append(weight)
                preferences.append({"coefficients": one_hot(aspects, aspect)})
                shared.append((texts[i], aspect))
                seeds.append(row_seed(seed, texts[i], samples[i]))
        batch = left_padded(ids, width, tokenizer.pad_token_id, model.device)
        sampler = None if spec.temperature == 0 else RowSampler(seeds, spec.temperature, spec.top_p,
                                                                 steps=spec.max_new_tokens)
        with torch.inference_mode():
            new = generate_shrinking(model, batch, spec.max_new_tokens, tokenizer.pad_token_id, eos, sampler,
                                     preferences, shared, processors=[MixLogProbs(groups, mix)])
        first = [groups.index(g) for g in range(stop - start)]  # a group's copies carry the same tokens
        yield stop, [r.strip() for r in tokenizer.batch_decode([new[k] for k in first], skip_special_tokens=True)]
        start = stop
