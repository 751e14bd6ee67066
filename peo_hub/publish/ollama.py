"""Ollama export: a fused point as one GGUF plus a ``Modelfile`` that ``ollama create`` reads.

Ollama runs llama.cpp underneath, so the model file is the fused point GGUF of
:mod:`peo_hub.publish.gguf` (per-request LoRA scales are not something Ollama offers: a preset
is a model of its own). What Ollama adds is the ``Modelfile``: the prompt format as a Go
template (``TEMPLATE``), where Hugging Face keeps a Jinja one, plus stop strings, sampling
defaults and a default system prompt.

Jinja cannot be translated to Go templates in general, so the common chat families are
recognised instead (ChatML for SmolLM2 and Qwen, Llama 3, Gemma, Phi-3): each is the same
data, a prefix and suffix per role and a generation prompt, written out as a Go template and
checked against the base's own Jinja template before any file is written. The check renders
two conversations with transformers (with and without a system message) and with the
family's data; any difference, including a default system prompt that the family cannot
hold, refuses the export in one line that says to write TEMPLATE by hand. Known
differences that the check cannot see: Llama 3 and Gemma templates ``trim`` message text,
the Go template does not, and Ollama drops messages whose role a family lacks (Gemma has no
system role) where the Jinja template raises.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from peo_hub.bundle.manifest import Bundle
from peo_hub.utils.errors import MergeError
from peo_hub.utils.fsutil import atomic_dir, atomic_write_json, atomic_write_text, check_output
from peo_hub.publish.gguf import DTYPES, GgufBase, check_adapters_for_gguf, chat_template, gguf_base, special_vocab
from peo_hub.publish.gguf import write_point_gguf
from peo_hub.family.lora import load_bundle_adapters
from peo_hub.core.policy import Preference

if TYPE_CHECKING:
    from peo_hub.family.lora import Adapter

METADATA_NAME = "peo_ollama.json"
OWNER = "export-ollama"  # the ledger's writer name for Ollama export folders (peo_hub.utils.ledger)
WRITE_IT = "write TEMPLATE yourself in the Modelfile (https://github.com/ollama/ollama/blob/main/docs/template.md)"


@dataclass(frozen=True)
class ChatFamily:
    """A chat prompt format as data: what comes before and after each role's text, and the reply prompt."""

    name: str
    marker: str  # a string every template of the family holds
    turns: Mapping[str, tuple[str, str]]  # role -> (before the content, after it)
    generation: str  # what opens the assistant's reply
    stops: tuple[str, ...]  # where a reply ends

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt this family gives ``messages`` (roles it lacks are dropped, as the Go template does)."""
        text = ""
        for message in messages:
            if message["role"] in self.turns:
                before, after = self.turns[message["role"]]
                text += before + message["content"] + after
        return text + self.generation

    def go_template(self) -> str:
        """The same prompt as an Ollama Go template over ``.Messages`` (no whitespace trimming anywhere)."""
        branches = []
        for i, (role, (before, after)) in enumerate(self.turns.items()):
            keyword = "if" if i == 0 else "else if"
            branches.append(f'{{{{ {keyword} eq .Role "{role}" }}}}{before}{{{{ .Content }}}}{after}')
        return "{{ range .Messages }}" + "".join(branches) + "{{ end }}{{ end }}" + self.generation


def _same_turns(before: str, after: str, roles: Sequence[str] = ("system", "user", "assistant")
                ) -> dict[str, tuple[str, str]]:
    return {role: (before.format(role=role), after) for role in roles}


FAMILIES = (
    ChatFamily("ChatML", "<|im_start|>", _same_turns("<|im_start|>{role}\n", "<|im_end|>\n"),
               "<|im_start|>assistant\n", ("<|im_end|>",)),
    ChatFamily("Llama 3", "<|start_header_id|>", _same_turns("<|start_header_id|>{role}<|end_header_id|>\n\n",
                                                             "<|eot_id|>"),
               "<|start_header_id|>assistant<|end_header_id|>\n\n", ("<|eot_id|>",)),
    ChatFamily("Gemma", "<start_of_turn>", {"user": ("<start_of_turn>user\n", "<end_of_turn>\n"),
                                            "assistant": ("<start_of_turn>model\n", "<end_of_turn>\n")},
               "<start_of_turn>model\n", ("<end_of_turn>",)),
    ChatFamily("Phi-3", "<|assistant|>", {"system": ("<|system|>\n", "<|end|>\n"), "user": ("<|user|>\n", "<|end|>\n"),
                                          "assistant": ("<|assistant|>\n", "<|end|>\n")},
               "<|assistant|>\n", ("<|end|>",)),
)

#: The conversation the translation is checked on (two user turns, one reply, then the reply prompt).
PROBE = ({"role": "user", "content": "What is the capital of France?"},
         {"role": "assistant", "content": "Paris."},
         {"role": "user", "content": "And of Italy?"})
PROBE_SYSTEM = {"role": "system", "content": "You answer in one word."}


@dataclass(frozen=True)
class Translation:
    """A base's chat template in Ollama's terms."""

    family: ChatFamily
    template: str  # the Go template
    system: str | None  # the Jinja template's default system prompt, if it has one
    stops: tuple[str, ...]


def _hf_render(tokenizer: Any, messages: Sequence[Mapping[str, str]], strip_bos: str | None) -> str:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    if strip_bos and text.startswith(strip_bos):  # llama.cpp adds BOS itself (tokenizer.ggml.add_bos_token)
        text = text[len(strip_bos):]
    return text


def _default_system(family: ChatFamily, rendered: str) -> str | None:
    """The system prompt a template put in front of a conversation that had none, or None."""
    if "system" not in family.turns:
        return None
    before, after = family.turns["system"]
    if not rendered.startswith(before) or after not in rendered[len(before):]:
        return None
    return rendered[len(before):].split(after, 1)[0]


def translate(folder: str | os.PathLike[str]) -> Translation:
    """The base's Jinja chat template as an Ollama Go template, checked; one line when it cannot be."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    jinja = chat_template(folder)
    if not jinja:
        raise MergeError(f"the base has no chat template, so Ollama would get no prompt format; {WRITE_IT}")
    family = next((f for f in FAMILIES if f.marker in jinja), None)
    known = ", ".join(f.name for f in FAMILIES)
    if family is None:
        raise MergeError(f"the base's chat template is none of the families this export translates ({known}); "
                         f"{WRITE_IT}")
    specials = special_vocab(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    strip = tokenizer.bos_token if specials.add_special_token.get("bos") else None
    plain = _hf_render(tokenizer, PROBE, strip)
    system = None if plain == family.render(PROBE) else _default_system(family, plain)
    expected = family.render(([{"role": "system", "content": system}] if system is not None else []) + list(PROBE))
    if plain != expected:
        raise MergeError(f"the base's chat template looks like {family.name} but renders a conversation differently "
                         f"from it ({plain[:60]!r}...); {WRITE_IT}")
    if "system" in family.turns:  # a request's own system message must come out as the Jinja template puts it
        with_system = _hf_render(tokenizer, (PROBE_SYSTEM, *PROBE), strip)
        if with_system != family.render((PROBE_SYSTEM, *PROBE)):
            raise MergeError(f"the base's chat template looks like {family.name} but renders a system message "
                             f"differently from it; {WRITE_IT}")
    added = set(tokenizer.get_added_vocab())
    stops = tuple(dict.fromkeys(s for s in (*family.stops, tokenizer.eos_token) if s and s in added))
    return Translation(family=family, template=family.go_template(), system=system, stops=stops)


def sampling_defaults(bundle: Bundle) -> dict[str, Any]:
    """``temperature`` and ``num_predict`` from the sampling the bundle's front was evaluated with, if recorded."""
    evaluate = (bundle.manifest.recipe or {}).get("evaluate") or {}
    found = {}
    if isinstance(evaluate.get("temperature"), (int, float)):
        found["temperature"] = evaluate["temperature"]
    if isinstance(evaluate.get("max_new_tokens"), int):
        found["num_predict"] = evaluate["max_new_tokens"]
    return found


def _quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise MergeError(f'the {what} holds """, which a Modelfile cannot quote; {WRITE_IT}')
    return f'"""{text}"""'


def modelfile(model_file: str, translation: Translation, parameters: Mapping[str, Any]) -> str:
    """The ``Modelfile`` text: FROM, TEMPLATE, PARAMETER lines and SYSTEM when the template has a default."""
    lines = [f"FROM ./{model_file}", f"TEMPLATE {_quoted(translation.template, 'chat template')}"]
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in translation.stops]
    lines += [f"PARAMETER {key} {value}" for key, value in parameters.items()]
    if translation.system is not None:
        lines.append(f"SYSTEM {_quoted(translation.system, 'default system prompt')}")
    return "\n".join(lines) + "\n"


def _readme(models: Mapping[str, str]) -> str:
    rows = []
    for name, sub in models.items():
        path = f"{sub}/Modelfile" if sub else "Modelfile"
        rows.append(f"ollama create {name} -f {path}\nollama run {name}")
    return ("# PEO bundle for Ollama\n\nEach Modelfile names one fused point of the bundle's front (a GGUF file beside "
            "it). Create the model once, then run it:\n\n```bash\n" + "\n\n".join(rows) + "\n```\n\n"
            "The TEMPLATE was translated from the base's Jinja chat template and checked against it on a "
            "two-turn conversation; `peo_ollama.json` records the coefficients of each point.\n")


def is_ollama_output(path: Path) -> bool:
    """Whether ``path`` is an earlier Ollama export (which may then be replaced)."""
    return path.is_dir() and (path / METADATA_NAME).is_file()


def check_ollama_output(output: str | os.PathLike[str]) -> Path:
    """The export folder, refused in one line when it holds files this export did not write."""
    return check_output(output, "folder", ours=is_ollama_output, what="--output", owner=OWNER)


def model_name(text: str) -> str:
    """An Ollama model name from a preset or point label (lowercase letters, digits, ``-``, ``.``, ``_``)."""
    cleaned = "".join(c if c.isalnum() or c in "-._" else "-" for c in text.lower()).strip("-.")
    return f"peo-{cleaned or 'point'}"


def export_ollama(bundle: Bundle, output: str | os.PathLike[str], base_folder: str | os.PathLike[str],
                  points: Mapping[str, Preference], dtype: str = "f32", subfolders: bool = False) -> Path:
    """Write one fused GGUF and Modelfile per point (``subfolders``: one folder per name); returns the folder.

    Everything (output, base, tokenizer, chat template translation, adapters) is checked
    before the first file is written; the files appear together when all are complete.
    """
    if dtype not in DTYPES:
        raise MergeError(f"--dtype {dtype!r}: use f32 or f16 (f32 reproduces transformers exactly)")
    if not points:
        raise MergeError("no point to export; give --point PRESET|WEIGHTS or --all-presets")
    out = check_ollama_output(output)
    adapters: list["Adapter"] = load_bundle_adapters(bundle)
    base: GgufBase = gguf_base(base_folder)
    check_adapters_for_gguf(adapters, base)
    translation = translate(base.folder)
    parameters = sampling_defaults(bundle)
    from peo_hub import __version__

    meta: dict[str, Any] = {"kind": "ollama", "peo_hub_version": __version__, "chat_family": translation.family.name,
                            "source": {"bundle": bundle.source, "base_model": bundle.base_reference}, "models": {}}
    names: dict[str, str] = {}
    with atomic_dir(out, owner=OWNER) as tmp:
        for label, point in points.items():
            folder = tmp / label if subfolders else tmp
            folder.mkdir(exist_ok=True)
            info = write_point_gguf(base, adapters, point, folder, dtype)
            atomic_write_text(folder / "Modelfile", modelfile(info["model"], translation, parameters))
            name = model_name(label)
            names[name] = label if subfolders else ""
            meta["models"][name] = {"folder": label if subfolders else ".", **info}
        atomic_write_json(tmp / METADATA_NAME, meta)
        atomic_write_text(tmp / "README.md", _readme(names))
    return out
