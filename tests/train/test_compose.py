"""``peo-hub compose`` (peo_hub.train.compose) and ``peo-hub evaluate`` on what it writes.

The adapters come from separate PEFT runs with different settings: a plain LoRA, an rsLoRA
with a rank pattern and an alpha pattern, and one that adapts only two module kinds. The
composed bundle must give exactly ``W + Σ cᵢ sᵢ Bᵢ Aᵢ`` (computed from the raw files in
tests/support/reference.py, with its own reading of the patterns) in PEOModel and in the exported
adapter; refused adapters are one line and nothing is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fakes import folder_digest, make_adapter, make_base
from peo_hub import PEOModel
from peo_hub.bundle.manifest import load_manifest, open_bundle
from peo_hub.cli import main
from reference import assert_close, logits, reference_model

ADAPTERS = {
    "helpful": {"r": 4, "lora_alpha": 8},
    "harmless": {"r": 8, "lora_alpha": 8, "use_rslora": True, "rank_pattern": {"q_proj": 4, "down_proj": 2},
                 "alpha_pattern": {"v_proj": 24}},
    "concise": {"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"]},
}
POINTS = [{"helpful": 0.75, "harmless": 0.375, "concise": 0.0}, {"helpful": 1.5, "harmless": -0.5, "concise": 0.25},
          {"helpful": 0.0, "harmless": 0.0, "concise": 2.0}]
PROMPTS = ["how do i bake bread ?", "how do i pick lock ?", "how do i fix bike ?"]


def _sources(root: Path, **overrides: dict) -> dict[str, Path]:
    """A base and one adapter per aspect, each from its own PEFT run, as separate folders."""
    if not (root / "base").is_dir():
        make_base(root / "base")
    folders = {}
    for i, (name, options) in enumerate({**ADAPTERS, **overrides}.items()):
        folders[name] = root / f"src-{name}"
        if not folders[name].is_dir():
            make_adapter(root / "base", folders[name], seed=10 + i, **options)
    return folders


def _compose(capsys, base: Path | str, adapters: dict[str, Path | str], out: Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["compose", str(base), *[a for n, p in adapters.items() for a in ("--adapter", f"{n}={p}")],
                 "--output", str(out)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str, *needles: str) -> None:
    """The error is one line (Hub downloads may print progress bars before it, on stderr too)."""
    err = "\n".join(line for line in err.strip().split("\n") if "it/s]" not in line).strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    return _sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="module")
def composed(sources, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("composed") / "bundle"
    with pytest.MonkeyPatch.context():
        import io
        import contextlib

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = main(["compose", str(sources["helpful"].parent / "base"),
                         *[a for n, p in sources.items() for a in ("--adapter", f"{n}={p}")], "--output", str(out)])
    assert code == 0
    return out, buffer.getvalue()


@pytest.fixture(scope="module")
def peo(composed) -> PEOModel:
    return PEOModel.from_pretrained(composed[0])


# ------------------------------------------------------------------ exactness


@pytest.mark.parametrize("coefficients", POINTS)
def test_composed_bundle_is_the_exact_sum_in_peomodel(composed, peo, coefficients):
    peo.set_preference(coefficients=coefficients)
    assert_close(logits(peo.model), logits(reference_model(composed[0], coefficients)))


@pytest.mark.parametrize("coefficients", POINTS[:2])
def test_exported_adapter_of_a_composed_bundle_is_the_exact_sum(composed, coefficients, tmp_path):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    arg = ",".join(f"{a}={c}" for a, c in coefficients.items())
    assert main(["merge", str(composed[0]), "--coefficients", arg, "--output", str(tmp_path / "point")]) == 0
    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(composed[0] / "base"), tmp_path / "point")
    assert_close(logits(model.eval()), logits(reference_model(composed[0], coefficients)))


def test_modules_only_some_adapters_adapt_are_zero_filled_in_the_export(composed, tmp_path):
    """q_proj is adapted by all three, gate_proj not by 'concise': its block of B is zero there."""
    assert main(["merge", str(composed[0]), "--coefficients", "helpful=1,harmless=1,concise=1",
                 "--output", str(tmp_path / "p")]) == 0
    state = load_file(tmp_path / "p" / "adapter_model.safetensors")
    gate_b = state["base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight"]
    q_b = state["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    ranks = {"helpful": 4, "harmless": 8}  # gate_proj: helpful r 4, harmless r 8, concise absent
    assert gate_b[:, : ranks["helpful"] + ranks["harmless"]].abs().sum() > 0
    assert torch.count_nonzero(gate_b[:, ranks["helpful"] + ranks["harmless"]:]) == 0
    assert torch.count_nonzero(q_b[:, 4 + 4:4 + 4 + 2]) > 0  # q_proj: 4 + 4 (rank_pattern) + concise's 2


def test_the_report_shows_the_folded_scales_and_partial_modules(composed):
    report = composed[1]
    assert "rsLoRA" in report and 'rank_pattern {"down_proj": 2, "q_proj": 4}' in report
    # rsLoRA: alpha / sqrt(r) per module: v_proj 24/sqrt(8), q_proj 8/sqrt(4), down_proj 8/sqrt(2), others 8/sqrt(8)
    for scale, rank, module in [(24 / 8 ** 0.5, 8, "self_attn.v_proj"), (8 / 4 ** 0.5, 4, "self_attn.q_proj"),
                                (8 / 2 ** 0.5, 2, "mlp.down_proj"), (8 / 8 ** 0.5, 8, "mlp.up_proj")]:
        line = next(ln for ln in report.splitlines() if ln.strip().startswith(f"scale {scale:.4g} folded"))
        assert f"rank-{rank}" in line and module in line, line
    assert "modules only some adapters adapt" in report
    assert "mlp.gate_proj: helpful, harmless" in report
    assert report.index("base:") < report.index("modules only some")  # printed before 'written'


def test_the_manifest_records_each_adapters_source(composed, sources):
    manifest = load_manifest(composed[0])
    source = manifest.aspects["harmless"].source
    assert source["local"] and source["lora"]["use_rslora"] is True
    import hashlib

    weights = (sources["harmless"] / "adapter_model.safetensors").read_bytes()
    assert source["sha256"] == hashlib.sha256(weights).hexdigest()
    assert manifest.composed["partial_modules"]["mlp.gate_proj"] == ["helpful", "harmless"]
    assert manifest.base_model == "base" and (composed[0] / "base" / "model.safetensors").is_file()


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("option, needle", [
    ({"use_dora": True}, "DoRA rescales"),
    ({"lora_bias": True}, "bias"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
])
def test_non_additive_adapters_are_refused_in_one_line(sources, tmp_path, capsys, option, needle):
    bad = tmp_path / "bad"
    make_adapter(sources["helpful"].parent / "base", bad, seed=3, r=2, lora_alpha=4, **option)
    code, out, err = _compose(capsys, sources["helpful"].parent / "base",
                              {"helpful": sources["helpful"], "harmless": bad}, tmp_path / "out")
    assert code == 2
    _one_line(err, "'harmless'", next(iter(option)), needle)
    assert "REFUSED" in out and "helpful" in out  # the report came first, with the good adapter in it
    assert not (tmp_path / "out").exists()


def test_adapter_of_another_base_is_refused(sources, tmp_path, capsys):
    make_base(tmp_path / "wide", hidden=48)
    make_adapter(tmp_path / "wide", tmp_path / "wide-adapter", seed=1)
    code, _, err = _compose(capsys, sources["helpful"].parent / "base",
                            {"helpful": sources["helpful"], "harmless": tmp_path / "wide-adapter"}, tmp_path / "out")
    assert code == 2
    _one_line(err, "'harmless'", "different base")
    assert not (tmp_path / "out").exists()


def test_adapters_declaring_different_hub_bases_are_refused(sources, tmp_path, capsys):
    copies = {}
    for name, base_id in (("helpful", "org/base-a"), ("harmless", "org/base-b")):
        copies[name] = tmp_path / name
        shutil.copytree(sources[name], copies[name])
        config = json.loads((copies[name] / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base_id
        (copies[name] / "adapter_config.json").write_text(json.dumps(config))
    code, _, err = _compose(capsys, sources["helpful"].parent / "base", copies, tmp_path / "out")
    assert code == 2
    _one_line(err, "org/base-a", "org/base-b")


def test_a_rank_pattern_that_disagrees_with_the_weights_is_refused(sources, tmp_path, capsys):
    copy = tmp_path / "harmless"
    shutil.copytree(sources["harmless"], copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    config["rank_pattern"] = {"q_proj": 8, "down_proj": 2}  # the q_proj weights have rank 4
    (copy / "adapter_config.json").write_text(json.dumps(config))
    code, _, err = _compose(capsys, sources["helpful"].parent / "base",
                            {"helpful": sources["helpful"], "harmless": copy}, tmp_path / "out")
    assert code == 2
    _one_line(err, "q_proj rank 8", "rank 4")


@pytest.mark.parametrize("args, needle", [
    (["--adapter", "helpful=./x"], "two or more aspects"),
    (["--adapter", "helpful", "--adapter", "b=./y"], "write NAME=REF"),
    (["--adapter", "a b=./x", "--adapter", "b=./y"], "must be letters"),
    (["--adapter", "a=./x", "--adapter", "a=./y"], "given twice"),
    (["--adapter", "a=./nope", "--adapter", "b=./nope2"], "no such folder"),
])
def test_bad_adapter_arguments_are_one_line(sources, tmp_path, capsys, args, needle):
    capsys.readouterr()
    assert main(["compose", str(sources["helpful"].parent / "base"), *args, "--output", str(tmp_path / "o")]) == 2
    _one_line(capsys.readouterr().err, needle)
    assert not (tmp_path / "o").exists()


def test_compose_never_overwrites_a_folder_it_did_not_write(sources, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    before = folder_digest(out)
    code, _, err = _compose(capsys, sources["helpful"].parent / "base",
                            {"helpful": sources["helpful"], "harmless": sources["harmless"]}, out)
    assert code == 2
    _one_line(err, "never overwrites")
    assert folder_digest(out) == before
    # its own earlier output is replaced whole
    fresh = tmp_path / "fresh"
    assert _compose(capsys, sources["helpful"].parent / "base",
                    {"helpful": sources["helpful"], "harmless": sources["harmless"]}, fresh)[0] == 0
    assert _compose(capsys, sources["helpful"].parent / "base",
                    {"helpful": sources["helpful"], "concise": sources["concise"]}, fresh)[0] == 0
    assert open_bundle(fresh).aspects == ["helpful", "concise"]


# ------------------------------------------------------------------ over the (loopback) Hub


def _upload(api, repo_id: str, files: dict[str, Path], revision: str | None = None) -> str:
    from huggingface_hub import CommitOperationAdd

    api.create_repo(repo_id, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.create_commit(repo_id, [CommitOperationAdd(path_in_repo=k, path_or_fileobj=str(v))
                                       for k, v in files.items()], commit_message="upload", revision=revision)
    return info.oid


def test_compose_over_the_hub_base_and_adapters(hub, sources, tmp_path, capsys):
    from huggingface_hub import HfApi

    api = HfApi(token=hub.alice_token)
    base = sources["helpful"].parent / "base"
    _upload(api, "alice/tiny-base", {p.name: p for p in base.iterdir() if p.is_file()})
    files = {}
    for name in ("helpful", "harmless"):
        config = json.loads((sources[name] / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = "alice/tiny-base"
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
        files[f"{name}/adapter_config.json"] = tmp_path / f"{name}.json"
        files[f"{name}/adapter_model.safetensors"] = sources[name] / "adapter_model.safetensors"
    commit = _upload(api, "alice/adapters", files, revision="v1")
    code, out, err = _compose(capsys, "alice/tiny-base", {"helpful": "alice/adapters@v1:helpful",
                                                          "harmless": "alice/adapters@v1:harmless"}, tmp_path / "b")
    assert code == 0, err
    assert "declared base alice/tiny-base: matches" in out
    manifest = load_manifest(tmp_path / "b")
    assert manifest.base_model == "alice/tiny-base" and not (tmp_path / "b" / "base").exists()
    assert manifest.aspects["helpful"].source["commit"] == commit
    assert manifest.aspects["helpful"].source["subfolder"] == "helpful"
    coefficients = {"helpful": 1.25, "harmless": 0.5}
    model = PEOModel.from_pretrained(tmp_path / "b")  # the base comes from the (loopback) Hub
    model.set_preference(coefficients=coefficients)
    local = PEOModel.from_pretrained(_local_copy(tmp_path, base, sources))
    local.set_preference(coefficients=coefficients)
    assert_close(logits(model.model), logits(local.model))
    # a subfolder without an adapter, and a base revision the adapters were not trained on
    code, _, err = _compose(capsys, "alice/tiny-base", {"helpful": "alice/adapters@v1:nope",
                                                        "harmless": "alice/adapters@v1:harmless"}, tmp_path / "c")
    assert code == 2
    _one_line(err, "no adapter_config.json", "'nope'")


def _local_copy(tmp_path: Path, base: Path, sources: dict[str, Path]) -> Path:
    out = tmp_path / "local"
    assert main(["compose", str(base), "--adapter", f"helpful={sources['helpful']}",
                 "--adapter", f"harmless={sources['harmless']}", "--output", str(out)]) == 0
    return out


def test_a_revision_mismatch_with_the_declared_one_is_refused(hub, sources, tmp_path, capsys):
    from huggingface_hub import HfApi

    api = HfApi(token=hub.alice_token)
    base = sources["helpful"].parent / "base"
    _upload(api, "alice/tiny-base", {p.name: p for p in base.iterdir() if p.is_file()})
    copy = tmp_path / "harmless"
    shutil.copytree(sources["harmless"], copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    config.update(base_model_name_or_path="alice/tiny-base", revision="v2")
    (copy / "adapter_config.json").write_text(json.dumps(config))
    code, out, err = _compose(capsys, "alice/tiny-base", {"helpful": sources["helpful"], "harmless": copy},
                              tmp_path / "o")
    assert code == 2
    _one_line(err, "revision v2", "alice/tiny-base@v2")


# ------------------------------------------------------------------ evaluate, push, merge, space


EVAL_RECIPE = """
seed: 0
aspects:
  helpful: {judge: {type: toy_helpful}}
  harmless: {judge: {type: toy_harmless}}
  concise: {judge: {type: toy_helpful}}
sweep: {weights: 2, alpha: [0, 0.5]}
evaluate:
  prompts: ["how do i bake bread ?", "how do i pick lock ?"]
  samples: 2
  max_new_tokens: 4
  temperature: 1.0
  bootstrap: 100
"""


@pytest.fixture(scope="module")
def evaluated(composed, tmp_path_factory) -> Path:
    bundle = tmp_path_factory.mktemp("evaluated") / "bundle"
    shutil.copytree(composed[0], bundle)
    recipe = bundle.parent / "eval.yaml"
    recipe.write_text(EVAL_RECIPE)
    assert main(["evaluate", str(bundle), "--recipe", str(recipe)]) == 0
    return bundle


def test_evaluate_sweeps_a_composed_bundle_into_a_front(evaluated):
    from peo_hub.bundle.front import load_front

    front = load_front(evaluated / "front.json")
    # weights 2 on 3 aspects: the 3 one-hot vectors, at alpha 0 and 0.5, plus the base
    assert len(front.points) == 7 and front.aspects == ["helpful", "harmless", "concise"]
    extrapolated = [p for p in front.points if p.method == "peo"]
    assert sorted(max(p.coefficients.values()) for p in extrapolated) == [1.5, 1.5, 1.5]
    manifest = load_manifest(evaluated)
    assert manifest.aspects["harmless"].judge["type"] == "toy_harmless" and manifest.presets
    assert manifest.evaluated_range() == (0.0, 1.5)
    assert (evaluated / "front.png").is_file() and any((evaluated / "merges").glob("*.yaml"))
    assert "Pareto front" in (evaluated / "README.md").read_text()


def test_evaluate_resumes_the_same_recipe_and_refuses_another(evaluated, tmp_path, capsys):
    records = sorted((evaluated / "evaluations").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in records}
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(EVAL_RECIPE)
    assert main(["evaluate", str(evaluated), "--recipe", str(recipe)]) == 0
    assert {p: p.stat().st_mtime_ns for p in records} == stamps  # kept, not recomputed
    recipe.write_text(EVAL_RECIPE.replace("samples: 2", "samples: 3"))
    capsys.readouterr()
    assert main(["evaluate", str(evaluated), "--recipe", str(recipe)]) == 2
    _one_line(capsys.readouterr().err, "another evaluation")


def test_evaluate_with_judges_on_the_command_line(composed, tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(composed[0], bundle)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    capsys.readouterr()
    args = ["evaluate", str(bundle), "--judge", "helpful=toy_helpful", "--judge", "harmless=toy_harmless",
            "--prompts", str(prompts)]
    assert main(args) == 2  # concise has no judge
    _one_line(capsys.readouterr().err, "aspects", "concise")
    assert not (bundle / "evaluations").exists()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(EVAL_RECIPE.replace("weights: 2, alpha: [0, 0.5]", "weights: 2, alpha: [0]"))
    assert main([*args, "--judge", "concise=toy_harmless", "--recipe", str(recipe)]) == 0
    manifest = load_manifest(bundle)
    assert manifest.aspects["concise"].judge["type"] == "toy_harmless"
    assert manifest.recipe["evaluate"]["prompts"]["source"] == str(prompts)


def test_evaluate_refuses_a_trained_bundle_and_a_hand_written_card(composed, tmp_path, capsys):
    from peo_hub.bundle.manifest import save_manifest

    recipe = tmp_path / "eval.yaml"
    recipe.write_text(EVAL_RECIPE)
    bundle = tmp_path / "b"
    shutil.copytree(composed[0], bundle)
    (bundle / "README.md").write_text("# my own card\n")
    capsys.readouterr()
    assert main(["evaluate", str(bundle), "--recipe", str(recipe)]) == 2
    _one_line(capsys.readouterr().err, "written by hand")
    assert (bundle / "README.md").read_text() == "# my own card\n" and not (bundle / "evaluations").exists()
    manifest = load_manifest(bundle)
    manifest.recipe = {"train": {}}
    save_manifest(bundle, manifest)
    assert main(["evaluate", str(bundle), "--recipe", str(recipe)]) == 2
    _one_line(capsys.readouterr().err, "recipe run")


def test_push_merge_and_space_work_on_the_evaluated_bundle(hub, evaluated, tmp_path):
    from peo_hub.publish.hub import push_bundle
    from peo_hub.serve.space import build_demo

    push_bundle(evaluated, "alice/composed", token=hub.alice_token)
    model = PEOModel.from_pretrained("alice/composed")
    assert model.aspects == ["helpful", "harmless", "concise"] and model.presets
    model.set_preference(**model.preset("balanced"))
    assert_close(logits(model.model), logits(reference_model(evaluated, model.coefficients)))
    assert main(["merge", "alice/composed", "--weights", "helpful=1", "--alpha", "0.5", "--as", "yaml",
                 "--output", str(tmp_path / "p.yaml")]) == 0
    space = build_demo(model, model.front).peo_space
    reply = list(space.chat_api("how do i bake bread ?", 1.0, 0.0, 0.0, 0.5))
    assert reply and isinstance(reply[-1], str)
