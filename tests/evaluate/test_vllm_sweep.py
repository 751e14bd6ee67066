"""The sweep on the vLLM engine (a stand-in ``vllm`` with vLLM's signatures: tests/support/fake_vllm.py).

What is asserted is what the sweep asks of vLLM: one ``LLM`` for the base with LoRA on and the
recipe's ``max_loras`` / ``gpu_memory_utilization``, every point of a round in one ``generate``
call with its own exported adapter (fresh ids, none for the base point), per-row seeds, the
guard's base log-probs through ``prompt_logprobs``; and that greedy replies, scores and the
front equal the transformers engine's on the same bundle.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

import fake_vllm
from fakes import make_fake_bundle

from peo_hub.cli import main
from peo_hub.family.engines import row_seed
from peo_hub.family.vllm_engine import VllmEngine

PROMPTS = ["how do i bake bread ?", "pick lock ?", "how do i fix bike", "mix flour , then bake"]
EVAL = {
    "aspects": {"helpful": {"judge": {"type": "toy_helpful"}}, "harmless": {"judge": {"type": "toy_harmless"}}},
    "sweep": {"weights": 3, "alpha": [0, 0.5]},
    "evaluate": {"prompts": PROMPTS, "samples": 1, "max_new_tokens": 6, "temperature": 0.0, "bootstrap": 100},
}


@pytest.fixture()
def vllm(monkeypatch: pytest.MonkeyPatch):
    """The stand-in vLLM, on what peo-hub's checks take for a CUDA machine (``torch.cuda.is_available``).

    Nothing of the sweep's vLLM path may touch CUDA itself: a tensor sent there would fail
    loudly on this machine, so the test would catch it.
    """
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    module = fake_vllm.install(monkeypatch)
    VllmEngine.release()
    yield module
    VllmEngine.release()


def _evaluate(bundle: Path, tmp_path: Path, **evaluate) -> dict[str, dict]:
    spec = {**EVAL, "evaluate": {**EVAL["evaluate"], **evaluate}}
    recipe = tmp_path / f"{bundle.name}.yaml"
    recipe.write_text(yaml.safe_dump(spec))
    assert main(["evaluate", str(bundle), "--recipe", str(recipe)]) == 0
    return {p.name: json.loads(p.read_text()) for p in sorted((bundle / "evaluations").glob("*.json"))}


def _generations(kind: str = "generate") -> list[dict]:
    return [c for k, c in fake_vllm.CALLS if k == kind]


def test_greedy_vllm_sweep_equals_the_transformers_sweep(vllm, tmp_path: Path, peo_cache: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = make_fake_bundle(tmp_path / "vllm")
    shutil.copytree(bundle, tmp_path / "hf")
    records = _evaluate(bundle, tmp_path, engine="vllm", vllm={"max_loras": 3, "gpu_memory_utilization": 0.4})

    llms = _generations("LLM")
    assert len(llms) == 1  # one engine for the whole sweep: the grid and the guard
    assert llms[0]["model"] == str((bundle / "base").resolve()) or Path(llms[0]["model"]).resolve() == \
        (bundle / "base").resolve()
    assert llms[0]["enable_lora"] and llms[0]["max_loras"] == 3 and llms[0]["gpu_memory_utilization"] == 0.4
    assert llms[0]["max_lora_rank"] == 8  # two rank-4 aspects: every exported point has rank 8

    replies = [c for c in _generations() if c["params"][0].prompt_logprobs is None]
    guard = [c for c in _generations() if c["params"][0].prompt_logprobs is not None]
    family = replies[0]  # the whole grid in one call: base + 3 weight vectors x 2 alphas, 4 prompts each
    assert family["rows"] == 7 * len(PROMPTS)
    ids = [None if r is None else r.lora_int_id for r in family["loras"]]
    per_point = [ids[k * 4:(k + 1) * 4] for k in range(7)]
    assert per_point[0] == [None] * 4  # the base point: no adapter
    assert all(len(set(p)) == 1 and p[0] is not None for p in per_point[1:])
    assert len({p[0] for p in per_point[1:]}) == 6  # a fresh id per exported point
    assert all(p.temperature == 0 and p.seed is None for p in family["params"])  # greedy: no dice
    assert len(replies) == 1  # nothing else was generated: no point goes through vLLM twice
    assert guard and all(r is None for c in guard for r in c["loras"])  # base log-probs: the bare base

    monkeypatch.undo()  # back to this machine as it is (no CUDA, no vllm) for the transformers engine
    reference = _evaluate(tmp_path / "hf", tmp_path)
    assert records.keys() == reference.keys()
    differ = sum(a != b for name in records for a, b in zip(json.dumps(records[name]["samples"]),
                                                             json.dumps(reference[name]["samples"])))
    assert differ == 0, f"{differ} characters of greedy replies differ between the engines"
    for name in records:
        ours, ref = records[name], reference[name]
        assert ours["metrics"] == ref["metrics"], name
        ours_lp, ref_lp = ours["guard"].pop("base_logprob"), ref["guard"].pop("base_logprob")
        assert ours["guard"] == ref["guard"], name  # the text measures
        for a, b in zip(ours_lp, ref_lp):
            for x, y in zip(a, b):  # None: a confirmation prompt (not scored); NaN: an empty reply
                assert (x is None and y is None) or (math.isnan(x) and math.isnan(y)) or abs(x - y) < 1e-4, \
                    (name, x, y)
    front = json.loads((bundle / "front.json").read_text())
    theirs = json.loads((tmp_path / "hf" / "front.json").read_text())
    assert front["points"] == theirs["points"] and front["presets"] == theirs["presets"]


def test_sampled_rows_carry_their_row_seeds(vllm, tmp_path: Path, peo_cache: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "sampled")
    spec = {**EVAL, "sweep": {"weights": 2, "alpha": [0]}}
    spec = {**spec, "evaluate": {**EVAL["evaluate"], "engine": "vllm", "samples": 2, "temperature": 1.0,
                                 "top_p": 0.9}}
    recipe = tmp_path / "s.yaml"
    recipe.write_text(yaml.safe_dump(spec))
    assert main(["evaluate", str(bundle), "--recipe", str(recipe)]) == 0
    family = _generations()[0]
    from transformers import AutoTokenizer

    from peo_hub.data.chat import render_prompt

    tokenizer = AutoTokenizer.from_pretrained(bundle / "base")
    rendered = [render_prompt(tokenizer, p) for p in PROMPTS]
    seeds = [row_seed(0, t, k) for t in rendered for k in range(2)]
    points = family["rows"] // len(seeds)
    assert points == 3 and [p.seed for p in family["params"]] == seeds * points  # same dice for every point
    assert all(p.top_p == 0.9 and p.temperature == 1.0 for p in family["params"])
