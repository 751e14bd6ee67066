"""Preference pairs from the model itself: sample, judge, keep best against worst.

For users who have judges or reward models but no pairwise data (and for the real world,
README "The real world"): a dataset spec with ``generate:`` names only prompts; for each
prompt, ``generate.samples`` replies are sampled from the base model, scored with the
aspect's judge (any registered judge, ``reward_model`` included), and the best reply is
kept as ``chosen`` against the worst as ``rejected`` when their scores differ by at least
``generate.margin``. With ``generate.system_prompt`` (and ``generate.context``, example
turns) the replies are sampled under that context but the pairs are trained without it:
context distillation, so the adapter learns to behave as if it had been told (or shown).
With ``generate.contexts`` each prompt's samples are split among several such contexts
(e.g. one leaning to refusing, one to answering), so that the judge has both kinds of reply
to choose from on every prompt; each record then says which context each reply came from.

Why cached, and how: sampling is the slowest step before training on a CPU. Replies and
scores are appended to ``$PEO_HUB_CACHE/pairs/<key>/samples.jsonl`` one batch of prompts
at a time, where ``key`` hashes everything that determines them (the base model's
weights, the tokenizer's chat template, the prompts, the generation settings, the judge's
spec and the source of its scoring code, and the seed). An interrupted run resumes at the
next batch; a finished one is reused by any run with the same key. Each batch is seeded from the seed and its position, so a
resumed run samples exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from peo_hub.data.chat import render_prompt, to_messages
from peo_hub.data.config import DatasetSpec, GenerateSpec, SamplingContext
from peo_hub.data.load import PreferenceData, load_prompts, pairs_dataset
from peo_hub.utils.errors import DataError
from peo_hub.utils.fsutil import atomic_write_json, cache_root as peo_cache, file_sha256
from peo_hub.judges.registry import Judge, JudgeSpec, judge_code_hash

SAMPLES_FILE = "samples.jsonl"
DONE_FILE = "done.json"
#: Drop reason, as it appears in PreferenceData.dropped.
NO_MARGIN = "best and worst replies within the margin"


def cache_root() -> Path:
    """Where sampled pairs are cached: ``pairs/`` in peo-hub's cache."""
    return peo_cache() / "pairs"


def model_identity(model_path: str, revision: str | None = None) -> str:
    """A hash of the base model's weights for a local folder (its safetensors files), else the id and revision."""
    folder = Path(model_path)
    if not folder.is_dir():
        return f"{model_path}@{revision}"
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("config.json"))
    return hashlib.sha256("".join(f"{p.name}:{file_sha256(p)}\n" for p in files).encode()).hexdigest()


def cache_key(model_id: str, chat_template: str | None, prompts: Sequence[Any], generate: GenerateSpec,
              judge: JudgeSpec, seed: int) -> str:
    """The hash of everything that determines the sampled replies and their scores.

    The judge enters twice: its spec, and the source code that computes its scores
    (:func:`peo_hub.judges.registry.judge_code_hash`), so a changed judge (a new refusal marker, a
    reweighted substance score) samples and scores again instead of reusing stale scores.
    """
    blob = json.dumps({"model": model_id, "template": chat_template, "prompts": list(prompts),
                       # pairs_per_prompt only chooses among the cached replies: it does not change them.
                       "generate": generate.model_dump(mode="json", exclude_none=True, exclude={"pairs_per_prompt"}), "judge": judge.model_dump(mode="json"),
                       "judge_code": judge_code_hash(judge.type), "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _in_context(prompt: Any, context: SamplingContext) -> list[dict[str, str]] | Any:
    """The prompt as sampled: after the context's system prompt and example turns (neither is trained on)."""
    if context.system_prompt is None and not context.context:
        return prompt
    system = [{"role": "system", "content": context.system_prompt}] if context.system_prompt is not None else []
    return [*system, *(context.context or []), *[m for m in to_messages(prompt) if m["role"] != "system"]]


@dataclass
class _Sampling:
    """What :func:`peo_hub.family.engines.generate_replies` reads, from a :class:`GenerateSpec`."""

    samples: int
    max_new_tokens: int
    temperature: float
    top_p: float
    batch_size: int
    engine: str = "transformers"


def _read_done(path: Path) -> list[dict[str, Any]]:
    """The cached per-prompt records; a line cut short by an interruption is dropped (it is resampled)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return records


def sample_replies(model: Any, tokenizer: Any, prompts: Sequence[Any], generate: GenerateSpec, judge: Judge,
                   seed: int, folder: Path, desc: str = "pairs") -> list[dict[str, Any]]:
    """Per prompt ``{prompt, replies, scores}``: sampled (under the system prompt) and judged, cached in ``folder``.

    ``model`` may be a callable returning the model, so that a complete cache never loads it.
    """
    from peo_hub.family.engines import generate_replies

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SAMPLES_FILE
    done = _read_done(path)
    if done and [r["prompt"] for r in done] != list(prompts[: len(done)]):
        raise DataError(f"{path} holds replies to other prompts; delete {folder} to sample again")
    per_batch = max(1, generate.batch_size // generate.samples)
    # Rewrite what was read (drops a torn last line), then append batch by batch.
    path.write_text("".join(json.dumps(r) + "\n" for r in done), encoding="utf-8")
    contexts = generate.sampling_contexts()
    per_context = generate.samples // len(contexts)
    sampling = _Sampling(per_context, generate.max_new_tokens, generate.temperature, generate.top_p,
                         per_batch * generate.samples)
    # Resume at a batch boundary: a batch cut short mid-write is sampled again whole, with its own seed.
    start = len(done) if len(done) >= len(prompts) else (len(done) // per_batch) * per_batch
    if start < len(done):
        done = done[:start]
        path.write_text("".join(json.dumps(r) + "\n" for r in done), encoding="utf-8")
    with tqdm(total=len(prompts), initial=start, desc=desc, unit="prompt") as bar:
        for first in range(start, len(prompts), per_batch):
            if callable(model) and not hasattr(model, "generate"):
                model = model()
            chunk = list(prompts[first:first + per_batch])
            # One row per (prompt, context), the prompt's contexts side by side; one generate call for the batch.
            rendered = [render_prompt(tokenizer, _in_context(p, c)) for p in chunk for c in contexts]
            flat = generate_replies(model, tokenizer, rendered, sampling, seed=seed + first)
            replies = [[r for j in range(len(contexts)) for r in flat[i * len(contexts) + j]] for i in range(len(chunk))]
            flat_prompts = [p for p, rs in zip(chunk, replies) for _ in rs]
            scores = judge(flat_prompts, [r for rs in replies for r in rs])
            lines = []
            for i, (prompt, rs) in enumerate(zip(chunk, replies)):
                line = {"prompt": prompt, "replies": rs,
                        "scores": [round(float(s), 6) for s in scores[i * len(rs):(i + 1) * len(rs)]]}
                if len(contexts) > 1:
                    line["contexts"] = [j for j in range(len(contexts)) for _ in range(per_context)]
                lines.append(line)
            with path.open("a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(r) + "\n" for r in lines))
                handle.flush()
                os.fsync(handle.fileno())
            done.extend(lines)
            bar.update(len(chunk))
    atomic_write_json(folder / DONE_FILE, {"prompts": len(done)})
    return done


def best_vs_worst(records: Sequence[dict[str, Any]], margin: float,
                  pairs_per_prompt: int = 1) -> tuple[list[Any], list[str], list[str], int]:
    """(prompts, chosen, rejected, dropped): per prompt its best reply against its worst, when they differ by margin.

    With ``pairs_per_prompt`` k > 1 the replies are ranked by score and the i-th best is paired with
    the i-th worst for i < k, so no reply is in two pairs and the pairs with the widest gaps come
    first; each pair is kept only when it meets the margin, and a prompt is ``dropped`` when none
    does. Why not every (better, worse) combination: those share replies, and DPO would then push
    the same reply up in one pair and down in another. Ties go to the earliest sample (best) and
    the latest (worst), so the choice is stable.
    """
    prompts, chosen, rejected, dropped = [], [], [], 0
    for record in records:
        scores, replies = record["scores"], record["replies"]
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        kept = 0
        for rank in range(min(pairs_per_prompt, len(ranked) // 2)):
            best, worst = ranked[rank], ranked[len(ranked) - 1 - rank]
            if scores[best] - scores[worst] < margin or scores[best] == scores[worst] or replies[best] == replies[worst]:
                break  # the gaps only narrow from here
            prompts.append(record["prompt"])
            chosen.append(replies[best])
            rejected.append(replies[worst])
            kept += 1
        dropped += kept == 0
    return prompts, chosen, rejected, dropped


def sample_pairs(spec: DatasetSpec, judge_spec: JudgeSpec, model_path: str, tokenizer: Any, seed: int,
                 revision: str | None = None, device: str | None = None, desc: str = "pairs") -> PreferenceData:
    """The aspect's training pairs sampled from the base at ``model_path`` (see the module docstring)."""
    from peo_hub.judges.registry import build_judge

    generate = spec.generate
    if generate is None:
        raise DataError(f"{spec.describe()}: no generate settings; add generate: {{samples: 4}}")
    prompts = load_prompts(spec.model_copy(update={"generate": None}), where=desc)
    key = cache_key(model_identity(model_path, revision), getattr(tokenizer, "chat_template", None), prompts,
                    generate, judge_spec, seed + spec.seed)
    folder = cache_root() / key

    def load() -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(model_path, revision=revision).eval().to(device or "cpu")

    records = sample_replies(load, tokenizer, prompts, generate, build_judge(judge_spec), seed + spec.seed, folder,
                             desc=desc)
    kept_prompts, chosen, rejected, dropped = best_vs_worst(records, generate.margin, generate.pairs_per_prompt)
    if not kept_prompts:
        raise DataError(f"{spec.describe()}: none of {len(records)} prompts gave replies whose judge scores differ by "
                        f"generate.margin {generate.margin}; lower the margin or raise generate.samples/temperature")
    data = PreferenceData(spec=spec, train=pairs_dataset(kept_prompts, chosen, rejected, tokenizer), eval=None,
                          rows_read=len(records), dropped={NO_MARGIN: dropped} if dropped else {},
                          extra={"samples_cache": key, "mean_score": _mean([s for r in records for s in r["scores"]]),
                                 "mean_gap": _mean([max(r["scores"]) - min(r["scores"]) for r in records])})
    return data


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0
