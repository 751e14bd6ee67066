"""The toy base model: a tiny Llama taught the world's behaviour mix (its "SFT").

Why a real ``LlamaForCausalLM``: everything downstream (TRL's DPO, PEFT's LoRA, mergekit's
architecture tables, ``AutoModelForCausalLM``) must treat it like a Hub model. It is
saved with ``save_pretrained`` and cached, keyed by seed and world version, under
``$PEO_HUB_CACHE`` (default ``~/.cache/peo_hub``), so a recipe pays the ~20 s of SFT once.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from peo_hub.utils.fsutil import atomic_dir, cache_root
from peo_hub.world import toy
from peo_hub.world.tokenizer import build_word_tokenizer

WORLD_VERSION = 1
EMBEDDED_PREFIX = "embedded:"
SFT_EXAMPLES = 6000
SFT_EPOCHS = 3
SFT_BATCH = 32
SFT_LR = 3e-3


def is_embedded(base_model: str) -> bool:
    return base_model.startswith(EMBEDDED_PREFIX)


def toy_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """~0.3M parameters: 2 layers, width 96; big enough to tie a task to its steps."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def _encode_sft(tokenizer: PreTrainedTokenizerFast, examples: list[dict[str, str]]) -> list[tuple[list[int], int]]:
    """Token ids of prompt+reply and the prompt length (the loss is on the reply only)."""
    encoded = []
    for ex in examples:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": ex["prompt"]}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        reply_ids = tokenizer(" " + ex["reply"], add_special_tokens=False).input_ids
        encoded.append((prompt_ids + reply_ids + [tokenizer.eos_token_id], len(prompt_ids)))
    return encoded


def train_sft(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, seed: int,
              examples: int = SFT_EXAMPLES, epochs: int = SFT_EPOCHS) -> list[float]:
    """Teach the behaviour mix with plain next-token loss on replies; returns epoch losses."""
    data = _encode_sft(tokenizer, toy.sft_examples(examples, seed))
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=SFT_LR, weight_decay=0.0)
    total_steps = epochs * ((len(data) + SFT_BATCH - 1) // SFT_BATCH)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=SFT_LR, total_steps=total_steps)
    model.train()
    losses = []
    with tqdm(total=total_steps, desc="toy base SFT", unit="step") as bar:
        for _ in range(epochs):
            rng.shuffle(data)
            epoch_loss = 0.0
            for start in range(0, len(data), SFT_BATCH):
                batch = data[start:start + SFT_BATCH]
                width = max(len(ids) for ids, _ in batch)
                input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
                labels = torch.full((len(batch), width), -100)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (ids, prompt_len) in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    labels[row, prompt_len: len(ids)] = torch.tensor(ids[prompt_len:])
                    mask[row, : len(ids)] = 1
                loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                epoch_loss += loss.item() * len(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            losses.append(epoch_loss / len(data))
    model.eval()
    return losses


def build_toy_base(path: str | os.PathLike[str], seed: int = 0, examples: int = SFT_EXAMPLES,
                   epochs: int = SFT_EPOCHS) -> Path:
    """Build the tokenizer and the SFT'd tiny Llama into ``path`` (atomically).

    ``examples``/``epochs`` exist for tests; the cached ``embedded:toy`` always uses the defaults.
    """
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(toy.vocabulary())
    model = LlamaForCausalLM(toy_config(tokenizer))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        train_sft(model, tokenizer, seed, examples=examples, epochs=epochs)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(path)


def ensure_embedded_base(base_model: str, seed: int = 0) -> Path:
    """The cached folder for ``embedded:<name>``, building it on first use."""
    name = base_model[len(EMBEDDED_PREFIX):]
    if name != "toy":
        from peo_hub.utils.errors import RecipeError

        raise RecipeError(f"unknown embedded base model {base_model!r}; the embedded world is 'embedded:toy'")
    path = cache_root() / f"embedded-toy-v{WORLD_VERSION}-seed{seed}"
    if not (path / "config.json").is_file():
        build_toy_base(path, seed=seed)
    return path
