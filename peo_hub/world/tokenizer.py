"""A word-level tokenizer with a chat template, built from a vocabulary list.

Why word-level: the toy world's language is a closed set of words, so each word is one
token, sequences stay short, and a 2-layer model learns it in seconds on a CPU. It is a
real ``PreTrainedTokenizerFast``: saved with ``save_pretrained``, reloaded with
``AutoTokenizer``, understood by TRL, PEFT and mergekit like any Hub tokenizer.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<user>", "<assistant>"]

# Rendered as "<s> <user> how do i bake bread ? <assistant>"; the reply follows and ends
# with "</s>". Kept in the tokenizer so that training, evaluation and the Space render
# prompts the same way, exactly as with a Hub chat model.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ ' <user> ' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ ' <assistant> ' + message['content'] + ' ' + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ ' <assistant>' }}{% endif %}"
)


def build_word_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """A tokenizer whose vocabulary is the special tokens followed by ``words`` (deduplicated, in order)."""
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *words]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<user>", "<assistant>"],
        clean_up_tokenization_spaces=False,
        padding_side="left",  # generation batches pad on the left
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
