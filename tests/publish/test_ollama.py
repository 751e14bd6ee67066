"""``peo-hub export --format ollama`` (peo_hub.publish.ollama): a fused GGUF and a Modelfile per point.

Ollama itself cannot be installed here, so its two inputs are checked as Ollama reads them:
the Modelfile is parsed into its directives, the GGUF it names must exist and read back with
the architecture and fused weights, and the TEMPLATE is rendered with the small Go-template
subset renderer below (range, if / else if / else, eq, .Role, .Content, trim markers) and
must give the same text as the base's Jinja chat template rendered by transformers, for a
two-turn conversation, with the SYSTEM line as Ollama adds it (a first system message).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file

from archmodels import GEMMA_TEMPLATE, LLAMA3_TEMPLATE, PHI3_TEMPLATE, build_tiny, tokenizer_for
from fakes import make_fake_bundle
from llamacpp_check import random_adapter
from peo_hub.cli import main
from reference import _one_line_error

gguf = pytest.importorskip("gguf", reason="the GGUF export needs the gguf package (pip install gguf)")

EVAL_RECIPE = """
aspects:
  helpful: {judge: {type: toy_helpful}}
  harmless: {judge: {type: toy_harmless}}
sweep: {weights: 3, alpha: [0, 0.5]}
evaluate: {prompts: ["How do I bake bread?", "How do I pick a lock?"], samples: 1, max_new_tokens: 6,
           temperature: 0.7, bootstrap: 100}
"""
CONVERSATION = [{"role": "user", "content": "Hi, who are you?"}, {"role": "assistant", "content": "A test model."},
                {"role": "user", "content": "Name a colour."}]


# ------------------------------------------------------------------ Ollama's inputs, read as Ollama reads them


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(directive, argument) pairs; triple-quoted arguments may span lines. Anything else fails the test."""
    found, rest = [], text
    pattern = re.compile(r'(FROM|TEMPLATE|PARAMETER|SYSTEM) (?:"""(.*?)"""|([^\n]*))\n', re.S)
    while rest.strip():
        match = pattern.match(rest)
        assert match, f"not a Modelfile directive: {rest[:80]!r}"
        found.append((match[1], match[2] if match[2] is not None else match[3]))
        rest = rest[match.end():]
    return found


def render_go(template: str, messages: list[dict[str, str]]) -> str:
    """A Go text/template subset: {{ range .Messages }}, if/else if/else with eq .Role "x", .Role, .Content."""
    parts = re.split(r"({{-?\s*.*?\s*-?}})", template)
    tokens: list[tuple[str, str]] = []
    for part in parts:
        if part.startswith("{{"):
            if part.startswith("{{-") and tokens and tokens[-1][0] == "text":
                tokens[-1] = ("text", tokens[-1][1].rstrip())
            tokens.append(("action", part.strip("{}-").strip()))
            if part.endswith("-}}"):
                tokens.append(("trim", ""))
        elif tokens and tokens[-1][0] == "trim":
            tokens[-1] = ("text", part.lstrip())
        else:
            tokens.append(("text", part))

    def run(i: int, scope: dict[str, Any], out: list[str], emit: bool) -> tuple[int, str]:
        while i < len(tokens):
            kind, value = tokens[i]
            if kind == "text":
                out.append(value if emit else "")
                i += 1
            elif value == "range .Messages":
                body, end = i + 1, i + 1
                for message in messages:
                    end, _ = run(body, message, out, emit)
                if not messages:
                    end, _ = run(body, {}, [], False)
                i = end + 1
            elif value.startswith("if "):
                taken = False
                while True:
                    condition = value.split(" ", 1)[1] if value != "else" else "true"
                    if condition.startswith("if "):
                        condition = condition[3:]
                    hit = not taken and _truth(condition, scope)
                    i, stop = run(i + 1, scope, out, emit and hit)
                    taken = taken or hit
                    value = tokens[i][1]
                    if stop == "end":
                        break
                i += 1
            elif value in (".Content", ".Role"):
                out.append(scope[value[1:].lower()] if emit else "")
                i += 1
            elif value == "end" or value.startswith("else"):
                return i, "end" if value == "end" else "else"
            else:
                raise AssertionError(f"action outside the subset: {value!r}")
        return i, "eof"

    out: list[str] = []
    run(0, {}, out, True)
    return "".join(out)


def _truth(condition: str, scope: dict[str, Any]) -> bool:
    if condition == "true":
        return True
    match = re.fullmatch(r'eq \.Role "(\w+)"', condition)
    assert match, f"condition outside the subset: {condition!r}"
    return scope.get("role") == match[1]


def test_the_go_subset_renderer_reads_templates_as_go_does():
    """The renderer itself, on templates whose Go output is known (trim markers, else if, else)."""
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    template = '{{- range .Messages }}\n  {{- if eq .Role "user" }}[u:{{ .Content }}]{{ else if eq .Role "system" }}' \
               '[s:{{ .Content }}]{{ else }}?{{ end }}\n{{- end }}>'
    assert render_go(template, messages) == "[s:S][u:U]>"
    assert render_go("{{ range .Messages }}{{ .Role }} {{ end }}", messages) == "system user "


def hf_render(folder: Path, messages: list[dict[str, str]]) -> str:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if gguf.SpecialVocab(folder).add_special_token.get("bos") and text.startswith(tokenizer.bos_token):
        text = text[len(tokenizer.bos_token):]  # llama.cpp adds BOS itself (the GGUF's add_bos_token)
    return text


def ollama_prompt(directives: list[tuple[str, str]], messages: list[dict[str, str]]) -> str:
    """The prompt Ollama builds: the SYSTEM line becomes a first system message when there is none."""
    template = dict(directives)["TEMPLATE"]
    system = dict(directives).get("SYSTEM")
    if system is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    return render_go(template, messages)


# ------------------------------------------------------------------ the export


@pytest.fixture(scope="module")
def qwen_bundle(tmp_path_factory) -> Path:
    """A composed, evaluated bundle (presets) on a tiny Qwen2 with a ChatML template."""
    root = tmp_path_factory.mktemp("ollama")
    base = build_tiny("qwen2", root / "base")
    for i, name in enumerate(("helpful", "harmless")):
        random_adapter(base, root / name, seed=i + 1, relative=0.3, r=4, lora_alpha=8,
                       target_modules=["q_proj", "v_proj"])
    bundle = root / "bundle"
    assert main(["compose", str(base), "--adapter", f"helpful={root / 'helpful'}", "--adapter",
                 f"harmless={root / 'harmless'}", "--output", str(bundle)]) == 0
    (root / "eval.yaml").write_text(EVAL_RECIPE)
    assert main(["evaluate", str(bundle), "--recipe", str(root / "eval.yaml")]) == 0
    return bundle


def test_every_preset_is_an_ollama_model_with_a_checked_template(qwen_bundle, tmp_path):
    out = tmp_path / "ollama"
    assert main(["export", str(qwen_bundle), "--format", "ollama", "--all-presets", "--output", str(out)]) == 0
    front = json.loads((qwen_bundle / "front.json").read_text())
    presets = front["presets"]
    assert presets and sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(presets)
    readme = (out / "README.md").read_text()
    weights = load_file(qwen_bundle / "base" / "model.safetensors")
    for name, preset in presets.items():
        directives = parse_modelfile((out / name / "Modelfile").read_text())
        kinds = [d for d, _ in directives]
        assert kinds[0] == "FROM" and kinds.count("TEMPLATE") == 1 and "SYSTEM" not in kinds
        model = out / name / dict(directives)["FROM"].removeprefix("./")
        assert model.is_file() and model.parent == out / name
        reader = gguf.GGUFReader(str(model))
        assert reader.fields["general.architecture"].contents() == "qwen2"
        assert json.loads(reader.fields["peo.coefficients"].contents()) == pytest.approx(preset["coefficients"])
        tensors = {t.name: np.array(t.data) for t in reader.tensors}
        np.testing.assert_array_equal(tensors["blk.0.ffn_up.weight"], weights["model.layers.0.mlp.up_proj.weight"])
        parameters = [a for d, a in directives if d == "PARAMETER"]
        assert parameters == ['stop "<|im_end|>"', "temperature 0.7", "num_predict 6"]  # the evaluation's sampling
        assert ollama_prompt(directives, CONVERSATION) == hf_render(qwen_bundle / "base", CONVERSATION)
        with_system = [{"role": "system", "content": "Be brief."}, *CONVERSATION]
        assert ollama_prompt(directives, with_system) == hf_render(qwen_bundle / "base", with_system)
        model_name = f"peo-{name.lower()}"
        assert f"ollama create {model_name} -f {name}/Modelfile" in readme and f"ollama run {model_name}" in readme
    # a second run replaces its own files (the output ledger), a point with weights is one model at the top
    assert main(["export", str(qwen_bundle), "--format", "ollama", "--all-presets", "--output", str(out)]) == 0
    single = tmp_path / "single"
    assert main(["export", str(qwen_bundle), "--format", "ollama", "--point", "helpful=1,harmless=1", "--output",
                 str(single)]) == 0
    [model] = list(single.glob("*.gguf"))
    assert dict(parse_modelfile((single / "Modelfile").read_text()))["FROM"] == f"./{model.name}"


def test_the_smollm2_default_system_prompt_becomes_the_system_line(tmp_path):
    from smollm2 import truncated_smollm2
    from peo_hub.publish.ollama import modelfile, translate

    base = truncated_smollm2()
    translation = translate(base)
    assert translation.family.name == "ChatML" and translation.stops == ("<|im_end|>",)
    assert translation.system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    directives = parse_modelfile(modelfile("m.gguf", translation, {}))
    assert ("SYSTEM", translation.system) in directives
    assert ollama_prompt(directives, CONVERSATION) == hf_render(base, CONVERSATION)


@pytest.mark.parametrize("family,template,specials,eos,bos", [
    ("Llama 3", LLAMA3_TEMPLATE, ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
     "<|eot_id|>", "<|begin_of_text|>"),
    ("Gemma", GEMMA_TEMPLATE, ["<bos>", "<start_of_turn>", "<end_of_turn>"], "<end_of_turn>", "<bos>"),
    ("Phi-3", PHI3_TEMPLATE, ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], "<|end|>", None),
])
def test_each_chat_family_translates_to_the_same_prompt(tmp_path, family, template, specials, eos, bos):
    from peo_hub.publish.ollama import modelfile, translate

    tokenizer = tokenizer_for("qwen2")
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.chat_template, tokenizer.eos_token = template, eos
    if bos:
        tokenizer.bos_token, tokenizer.add_bos_token = bos, True
    tokenizer.save_pretrained(tmp_path)
    translation = translate(tmp_path)
    assert translation.family.name == family and translation.system is None and translation.stops == (eos,)
    directives = parse_modelfile(modelfile("m.gguf", translation, {}))
    assert ollama_prompt(directives, CONVERSATION) == hf_render(tmp_path, CONVERSATION)
    assert hf_render(tmp_path, CONVERSATION) != render_go(translation.template, CONVERSATION[:1])  # not trivially


@pytest.mark.parametrize("template,needle", [
    ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}", "none of the families"),
    ("{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>\n{% endfor %}"
     "<|im_start|>assistant\n", "renders a conversation differently"),
])
def test_a_template_it_cannot_translate_is_refused_before_any_write(tmp_path, capsys, template, needle):
    base = build_tiny("qwen2", tmp_path / "base")
    (base / "chat_template.jinja").write_text(template)
    for i, name in enumerate(("helpful", "harmless")):
        random_adapter(base, tmp_path / name, seed=i + 1, r=2, lora_alpha=2, target_modules=["q_proj"])
    assert main(["compose", str(base), "--adapter", f"helpful={tmp_path / 'helpful'}", "--adapter",
                 f"harmless={tmp_path / 'harmless'}", "--output", str(tmp_path / "bundle")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "bundle"), "--format", "ollama", "--point", "helpful=1,harmless=0",
                 "--output", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, needle, "write TEMPLATE yourself")
    assert not (tmp_path / "out").exists()


def test_flag_mistakes_are_one_line_before_any_write(qwen_bundle, tmp_path, capsys):
    out = tmp_path / "out"
    capsys.readouterr()
    cases = [
        (["--format", "ollama", "--point", "nope"], ("'nope'", "preset")),
        (["--format", "ollama"], ("--point", "--all-presets")),
        (["--format", "ollama", "--all-presets", "--point", "helpful=1,harmless=0"], ("one of",)),
        (["--format", "gguf", "--all-presets"], ("--all-presets", "--format ollama")),
        (["--format", "ollama", "--all-presets", "--base", "none"], ("--base none",)),
    ]
    for args, needles in cases:
        assert main(["export", str(qwen_bundle), *args, "--output", str(out)]) == 2
        _one_line_error(capsys, *needles)
    unevaluated = make_fake_bundle(tmp_path / "toy")
    capsys.readouterr()  # the fake bundle's own build output
    assert main(["export", str(unevaluated), "--format", "ollama", "--all-presets", "--output", str(out)]) == 2
    _one_line_error(capsys, "no presets", "peo-hub evaluate")
    assert not out.exists()
