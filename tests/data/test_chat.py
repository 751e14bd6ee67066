"""peo_hub.data.chat: one prompt rendering for training, evaluation, chat and the Space."""

from __future__ import annotations

import pytest

import realdata
from peo_hub.data.chat import render_prompt, to_messages
from peo_hub.utils.errors import DataError


def test_render_prompt_with_word_tokenizer_template(word_tok):
    assert render_prompt(word_tok, "hi there") == "<s> <user> hi there <assistant>"
    assert render_prompt(word_tok, [{"role": "user", "content": "hi"}]) == "<s> <user> hi <assistant>"
    dialogue = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"
    assert to_messages(dialogue) == [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
    ]
    assert render_prompt(word_tok, dialogue) == "<s> <user> a <assistant> b </s> <user> c <assistant>"


def test_render_prompt_chatml(chatml_tok):
    assert render_prompt(chatml_tok, "How do I fix a bike?") == (
        "<|im_start|>user\nHow do I fix a bike?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_render_prompt_without_template_is_unchanged():
    gpt2_like = realdata.train_bpe_tokenizer(chat_template=None)
    dialogue = "\n\nHuman: a\n\nAssistant:"
    for tok in (None, gpt2_like):
        assert render_prompt(tok, "plain text") == "plain text"
        assert render_prompt(tok, dialogue) == dialogue
        assert render_prompt(tok, [{"role": "user", "content": "hi"}]) == "hi"
        assert render_prompt(tok, [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}]) == (
            "Be nice.\n\nHuman: hi\n\nAssistant:"
        )


def test_chat_template_failure_is_a_data_error(tmp_path, word_tok):
    word_tok.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(DataError, match="System role not supported.*fix the prompt's roles"):
        render_prompt(word_tok, [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
