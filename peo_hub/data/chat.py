"""Prompts as the model sees them: one rendering for training, evaluation, chat and the Space.

A prompt arrives as a plain user string, a list of ``{role, content}`` messages, or an
HH-RLHF dialogue (``"\\n\\nHuman: ...\\n\\nAssistant:"``). :func:`render_prompt` turns any of
them into the exact text a policy is prompted with: the tokenizer's chat template with the
generation slot when it has one, plain text otherwise. Everything that prompts a model calls
it, so a policy is always prompted the way it was trained.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from peo_hub.utils.errors import DataError, first_line

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")

Messages = Sequence[Mapping[str, str]] | str


def is_hh_dialogue(text: str) -> bool:
    """True for HH-RLHF-style text: starts with a ``Human:`` turn and has an ``Assistant:`` turn."""
    return bool(re.match(r"\s*Human:", text)) and ASSISTANT in text


def hh_to_messages(text: str) -> list[dict[str, str]]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: hello\\n\\nHuman: bye\\n\\nAssistant:"`` → user/assistant messages.

    The empty final ``Assistant:`` (the generation slot) is dropped: that is what
    ``add_generation_prompt=True`` puts back in the tokenizer's own format.
    """
    text = text if text.startswith("\n\n") else "\n\n" + text.lstrip()
    parts = _HH_TURN.split(text)
    messages: list[dict[str, str]] = []
    preamble = parts[0].strip()
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        content = content.strip()
        if preamble and not messages:
            content = f"{preamble}\n\n{content}".strip()
        messages.append({"role": role, "content": content})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def check_messages(value: Any, what: str) -> list[dict[str, str]]:
    """Validate a message list; ``what`` names the row/column for the error."""
    messages: list[dict[str, str]] = []
    for message in value:
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise DataError(f"{what}: expected a list of {{role, content}} messages, got {message!r}; fix the data or the format")
        content = message.get("content")
        if not isinstance(content, str):
            raise DataError(
                f"{what}: message content must be text, got {type(content).__name__}; "
                "only text messages are supported (flatten content parts to a string)"
            )
        messages.append({"role": message["role"], "content": content})
    return messages


def to_messages(prompt: str | Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Any prompt form as chat messages: a plain string is one user turn, an HH dialogue its turns.

    Public so that judges with their own input format (e.g. a reward model's
    ``USER: ... ASSISTANT:`` template) can re-render the same prompt.
    """
    if isinstance(prompt, str):
        return hh_to_messages(prompt) if is_hh_dialogue(prompt) else [{"role": "user", "content": prompt}]
    return check_messages(prompt, "prompt")


def has_chat_template(tokenizer: Any) -> bool:
    """True when ``tokenizer`` carries a chat template (base models like GPT-2 do not)."""
    return bool(tokenizer is not None and getattr(tokenizer, "chat_template", None))


def _flatten(messages: list[dict[str, str]]) -> str:
    """Messages as plain text for a tokenizer without a chat template.

    One user turn is its text; anything longer is written HH-RLHF style
    (``\\n\\nHuman: ...\\n\\nAssistant:``), the de facto plain-text dialogue format, ending
    with the ``Assistant:`` slot when the last turn is the user's. System text goes first.
    """
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    out = []
    for message in messages:
        if message["role"] == "system":
            out.append(message["content"])
        else:
            speaker = "Human" if message["role"] == "user" else "Assistant"
            out.append(f"\n\n{speaker}: {message['content']}")
    if messages and messages[-1]["role"] != "assistant":
        out.append(ASSISTANT)
    return "".join(out)


def render_prompt(tokenizer: Any, prompt: str | Sequence[Mapping[str, Any]]) -> str:
    """The exact prompt text the model sees, with ``tokenizer``'s chat template when it has one.

    ``prompt`` is a plain user string, a ``{role, content}`` message list, or an HH-RLHF
    dialogue (turned into messages). With a chat template the result is
    ``apply_chat_template(messages, add_generation_prompt=True)``; without one (or with
    ``tokenizer=None``) a string comes back unchanged and a message list is flattened
    (see :func:`_flatten`). Training, evaluation and the Space all call this, so a policy
    is always prompted the way it was trained.
    """
    if not has_chat_template(tokenizer):
        return prompt if isinstance(prompt, str) else _flatten(to_messages(prompt))
    messages = to_messages(prompt)
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # jinja errors (e.g. role alternation rules) are data/template mismatches
        line = first_line(exc)
        raise DataError(
            f"the tokenizer's chat template cannot render prompt {_short(messages)}: {line}; "
            "fix the prompt's roles or use a tokenizer whose template accepts them"
        ) from None
    return rendered


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
