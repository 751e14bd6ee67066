"""The degeneration guard's reference: how likely the base model finds each reply.

A point whose replies the base model finds very unlikely has drifted into text no base
would write (babbling, loops), whatever a judge says of it. The sweep scores the replies of
the selection prompts only (the guard helps choose the front, like the selection prompts
do), with a second copy of the base weights; the measures themselves and the flagging rule
are :mod:`peo_hub.core.measures`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

#: Logit values one scoring batch may hold (rows x width x vocabulary): 2**28 floats is 1 GiB.
LOGITS_BUDGET = 1 << 28


#: A scored row is padded to its own length rounded up to a multiple of this.
WIDTH_STEP = 8


class BaseLogprob:
    """Mean log-probability per token of replies under the base model, computed in batches.

    Loaded once per sweep (a second copy of the base weights: the policies' own models are
    left alone, whatever preference they are at). Replies are scored after the rendered
    prompt exactly as they were generated from it.

    A prompt is read once per batch: its KV cache (all but its last token, every prompt
    padded on the left to the call's longest) is computed once and copied to every reply
    to it (a point has dozens of samples per prompt, :func:`peo_hub.family.engines.prompt_cache`),
    so the batches run the replies only. A reply's padded width is its own length (plus the
    prompt's last token) rounded up to :data:`WIDTH_STEP`, and replies are batched with
    others of the same width: a value then does not depend on which rows share its batch,
    nor on the batch size (padding that followed the batch's longest row changed the
    attention's summation, and so the last digits), and short replies do not pay for the
    longest. Rows per batch follow :data:`LOGITS_BUDGET` unless ``batch_size`` caps them.

    Because a value depends only on its prompt, its reply and the prompts' padded width,
    each (width, prompt, reply) is scored once per sweep and remembered: a small model's
    sampled replies repeat a lot, within a point and across points (the quick start scores
    4,830 distinct replies out of 11,264).
    """

    def __init__(self, base_path: str, revision: str | None, tokenizer: Any, device: str | None = None,
                 batch_size: int | None = None) -> None:
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(base_path, revision=revision).eval().to(device or "cpu")
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._known: dict[tuple[int, str, str], float] = {}  # (prompt width, prompt, reply) -> value

    def __call__(self, rendered_prompts: Sequence[str], replies: Sequence[Sequence[str]]) -> list[list[float]]:
        pairs = [(p, r) for p, group in zip(rendered_prompts, replies) for r in group]
        if not pairs:
            return [[] for _ in replies]
        unique = list(dict.fromkeys(p for p, _ in pairs))
        prompt_tokens = dict(zip(unique, self.tokenizer(unique, add_special_tokens=False)["input_ids"]))
        prompt_width = max(len(t) for t in prompt_tokens.values())
        todo = [pair for pair in dict.fromkeys(pairs) if (prompt_width, *pair) not in self._known]
        if todo:
            self._score_new(todo, prompt_tokens, prompt_width)
        values = iter(self._known[(prompt_width, p, r)] for p, r in pairs)
        return [[next(values) for _ in group] for group in replies]

    def _score_new(self, pairs: Sequence[tuple[str, str]], prompt_tokens: Mapping[str, list[int]],
                   prompt_width: int) -> None:
        """Score distinct (prompt, reply) pairs into the memo; an empty reply has no token to score: NaN."""
        reply_ids = self.tokenizer([r for _, r in pairs], add_special_tokens=False)["input_ids"]
        for (p, r), ids in zip(pairs, reply_ids):
            if not ids:
                self._known[(prompt_width, p, r)] = math.nan
        widths = [-(-(1 + len(r)) // WIDTH_STEP) * WIDTH_STEP for r in reply_ids]
        for width in sorted(set(widths)):
            rows = [k for k, w in enumerate(widths) if w == width and reply_ids[k]]
            step = self._rows_per_batch(prompt_width + width)
            for start in range(0, len(rows), step):
                chunk = rows[start:start + step]
                scored = self._score([prompt_tokens[pairs[k][0]] for k in chunk], [pairs[k][0] for k in chunk],
                                     [reply_ids[k] for k in chunk], prompt_width, width)
                for k, value in zip(chunk, scored):
                    self._known[(prompt_width, *pairs[k])] = value

    def _rows_per_batch(self, width: int) -> int:
        vocabulary = self.model.get_output_embeddings().weight.shape[0]
        rows = max(1, LOGITS_BUDGET // max(1, width * vocabulary))
        return rows if self.batch_size is None else min(rows, self.batch_size)

    def _score(self, prompts: Sequence[list[int]], keys: Sequence[str], answers: Sequence[list[int]],
               prompt_width: int, width: int) -> list[float]:
        """Mean log-probability of each answer's tokens after its prompt.

        The prompts (all but their last token) come from one shared cache; each row runs its
        prompt's last token and its answer, right-padded to ``width``.
        """
        import torch

        from peo_hub.family.engines import left_padded, prompt_cache

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        device = next(self.model.parameters()).device
        prompt = left_padded(prompts, prompt_width, pad, device)
        cache = prompt_cache(self.model, prompt["input_ids"], prompt["attention_mask"], None, keys)
        ids = torch.full((len(answers), width), pad, dtype=torch.long)
        tail_mask = torch.zeros((len(answers), width), dtype=torch.long)
        for k, (p, r) in enumerate(zip(prompts, answers)):
            ids[k, :1 + len(r)] = torch.tensor(p[-1:] + r, dtype=torch.long)
            tail_mask[k, :1 + len(r)] = 1
        head_mask = prompt["attention_mask"][:, :-1] if cache is not None else prompt["attention_mask"][:, :0]
        mask = torch.cat([head_mask, tail_mask.to(device)], dim=1)
        start = torch.tensor([len(p) - 1 for p in prompts]).unsqueeze(1)  # the last prompt token's position
        positions = start + torch.arange(width).unsqueeze(0)
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(device), attention_mask=mask, position_ids=positions.to(device),
                                cache=cache, use_cache=cache is not None).logits.float()
        # Position j (the prompt's last token, then the answer) predicts answer token j.
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device))[..., 0].cpu()
        return [round(float(logp[k, :len(r)].mean()), 6) for k, r in enumerate(answers)]
