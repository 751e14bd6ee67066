"""``PEOModel.from_pretrained`` loads like transformers and PEFT: dtype, device_map, the Hub arguments, ``.to()``.

The Hub half runs against the loopback Hub (``hub`` fixture): a private bundle whose base is
a private Hub model too, so the token, the cache folder, ``local_files_only`` and the
revision must reach both downloads, with no ``HF_TOKEN`` in the environment.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from fakes import make_fake_bundle
from reference import ASPECTS, POINTS, assert_close, bundle, coefficients_of, logits, \
    reference_model  # noqa: F401  (bundle: fixture)

from peo_hub import PEOModel
from peo_hub.utils.errors import HubError, PEOError, PreferenceError

NO_CUDA = not torch.cuda.is_available()


def _weights_dtypes(model: PEOModel) -> set[torch.dtype]:
    return {p.dtype for n, p in model.model.named_parameters() if "lora_" not in n}


def test_dtype_is_forwarded_by_name_or_dtype(bundle):
    for dtype in (torch.bfloat16, "bfloat16", "torch.bfloat16"):
        m = PEOModel.from_pretrained(bundle, dtype=dtype)
        assert _weights_dtypes(m) == {torch.bfloat16}
        assert m.exact_unfuse  # half precision: fusing restores from a kept copy
    assert _weights_dtypes(PEOModel.from_pretrained(bundle, dtype=torch.float32)) == {torch.float32}
    with pytest.raises(PEOError, match="unknown dtype 'float13'"):
        PEOModel.from_pretrained(bundle, dtype="float13")


def test_torch_dtype_is_a_deprecated_alias_of_dtype(bundle):
    with pytest.warns(FutureWarning, match="torch_dtype is deprecated.*use dtype="):
        m = PEOModel.from_pretrained(bundle, torch_dtype=torch.bfloat16)
    assert _weights_dtypes(m) == {torch.bfloat16}
    with pytest.raises(PEOError, match="disagree; give dtype only"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        PEOModel.from_pretrained(bundle, dtype=torch.float32, torch_dtype=torch.bfloat16)


@pytest.fixture()
def base_loads(monkeypatch) -> list[dict]:
    """The keyword arguments of every base ``AutoModelForCausalLM.from_pretrained`` call (which still runs)."""
    from transformers import AutoModelForCausalLM

    calls: list[dict] = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        calls.append(kwargs)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    return calls


@pytest.mark.parametrize("device_map", ["auto", "cpu", {"": "cpu"}])
def test_device_map_is_forwarded_and_the_policy_is_exact(bundle, device_map, base_loads):
    m = PEOModel.from_pretrained(bundle, device_map=device_map, dtype=torch.float32)
    assert m.device == torch.device("cpu")
    assert [(c.get("device_map"), c.get("dtype")) for c in base_loads] == [(device_map, torch.float32)]
    point = POINTS[1]
    m.set_preference(**point)
    assert_close(logits(m.model), logits(reference_model(bundle, coefficients_of(point))))


def test_attn_implementation_and_other_kwargs_reach_the_base(bundle, base_loads):
    m = PEOModel.from_pretrained(bundle, attn_implementation="eager", max_memory={"cpu": "1GiB"})
    assert m.model.config._attn_implementation == "eager"
    assert base_loads[0]["max_memory"] == {"cpu": "1GiB"}
    PEOModel.from_pretrained(bundle, device="cpu")
    assert base_loads[1]["device_map"] == {"": "cpu"}  # the older device= loads straight onto that device
    m = PEOModel.from_pretrained(bundle, attn_implementation="sdpa")
    assert m.model.config._attn_implementation == "sdpa"


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("kwargs", [{"device": "cuda"}, {"device_map": "cuda"}, {"device_map": "cuda:0"}])
def test_cuda_without_cuda_is_one_line(bundle, kwargs):
    with pytest.raises(PEOError, match="no CUDA GPU") as info:
        PEOModel.from_pretrained(bundle, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
def test_a_4bit_base_is_refused_without_cuda(bundle):
    from transformers import BitsAndBytesConfig

    for config in (BitsAndBytesConfig(load_in_4bit=True), {"load_in_4bit": True}):
        with pytest.raises(PEOError, match="needs a CUDA GPU.*bitsandbytes") as info:
            PEOModel.from_pretrained(bundle, quantization_config=config)
        assert "\n" not in str(info.value)


def test_device_and_device_map_together_are_refused(bundle):
    with pytest.raises(PEOError, match="device_map or device, not both"):
        PEOModel.from_pretrained(bundle, device="cpu", device_map="auto")


def test_to_casts_keeps_the_preference_and_the_fused_state(bundle):
    point = POINTS[0]
    expected = logits(reference_model(bundle, coefficients_of(point)))
    m = PEOModel.from_pretrained(bundle)
    m.set_preference(**point, fuse=True)
    assert m.to("cpu") is m and m.fused
    assert_close(logits(m.model), expected, relative=True)
    m.to(torch.bfloat16)
    assert m.fused and m.exact_unfuse and _weights_dtypes(m) == {torch.bfloat16}
    # bf16 weights: a bf16 rounding of the float64 reference (bf16 keeps 8 bits: 2 % of the largest logit)
    bf16_tol = 0.02 * expected.abs().max()
    assert (logits(m.model).float() - expected).abs().max() < bf16_tol
    m.to(torch.float32)  # the weights keep their bf16 rounding, in float32 now
    assert m.fused and not m.exact_unfuse and m.coefficients == coefficients_of(point)
    m.set_preference(**POINTS[1])  # unfused (restored from the bf16 copy), then live in float32
    assert not m.fused and _weights_dtypes(m) == {torch.float32}
    assert (logits(m.model) - logits(reference_model(bundle, coefficients_of(POINTS[1])))).abs().max() < bf16_tol
    with pytest.raises(PEOError, match="no CUDA GPU") if NO_CUDA else _nothing():
        m.to("cuda")


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_to_refuses_a_model_spread_over_devices(bundle):
    m = PEOModel.from_pretrained(bundle)
    m.model.hf_device_map = {"model.embed_tokens": 0, "model.layers.0": "cpu"}  # what a split device_map leaves
    with pytest.raises(PEOError, match="several devices"):
        m.to("cpu")


def test_fusing_a_quantized_base_is_refused(bundle):
    m = PEOModel.from_pretrained(bundle)
    m.model.is_loaded_in_4bit = True  # what transformers sets on a bitsandbytes base (needs CUDA to build one)
    with pytest.raises(PreferenceError, match="quantized"):
        m.set_preference(weights={"helpful": 1.0}, fuse=True)
    m.set_preference(weights={"helpful": 1.0})  # live still works


# --------------------------------------------------------------------------- the Hub


def _private_bundle_on_the_hub(hub, tmp_path: Path, private: bool = True) -> tuple[str, str, str]:
    """A private base repo and a private bundle repo over it (alice's); returns (bundle repo, v1, v2 commits)."""
    from huggingface_hub import HfApi

    api = HfApi(token=hub.alice_token)
    local = make_fake_bundle(tmp_path / "local", aspects=ASPECTS[:2])
    api.create_repo("alice/tiny-base", private=True)
    api.upload_folder(repo_id="alice/tiny-base", folder_path=str(local / "base"))
    manifest = json.loads((local / "peo_config.json").read_text())
    manifest["base_model"] = "alice/tiny-base"
    (local / "peo_config.json").write_text(json.dumps(manifest))
    api.create_repo("alice/private-bundle", private=private)
    v1 = api.upload_folder(repo_id="alice/private-bundle", folder_path=str(local),
                           ignore_patterns=["base/*"]).oid
    manifest["aspects"].pop(ASPECTS[1])  # a second commit with one aspect: the revision decides which is loaded
    (local / "peo_config.json").write_text(json.dumps(manifest))
    v2 = api.upload_folder(repo_id="alice/private-bundle", folder_path=str(local), ignore_patterns=["base/*"]).oid
    return "alice/private-bundle", v1, v2


def test_token_cache_dir_revision_and_local_files_only_reach_bundle_and_base(hub, tmp_path, monkeypatch):
    repo, v1, v2 = _private_bundle_on_the_hub(hub, tmp_path)
    cache = tmp_path / "my-cache"
    with pytest.raises(HubError, match="not found") as info:  # no token anywhere: private repos are invisible
        PEOModel.from_pretrained(repo, cache_dir=cache)
    assert "\n" not in str(info.value)
    m = PEOModel.from_pretrained(repo, token=hub.alice_token, cache_dir=cache, revision=v1)
    assert m.aspects == list(ASPECTS[:2])
    cached = {p.name for p in cache.iterdir()}
    assert {"models--alice--private-bundle", "models--alice--tiny-base"} <= cached  # both downloads used cache_dir
    # nothing downloaded into the default cache (transformers leaves a ".no_exist" note of its adapter probe there)
    assert not list((hub.home / "hub").rglob("snapshots/*"))
    latest = PEOModel.from_pretrained(repo, token=hub.alice_token, cache_dir=cache)
    assert latest.aspects == [ASPECTS[0]]  # main is v2
    # offline from that cache: no request reaches the Hub
    before = len(hub.state.requests)
    again = PEOModel.from_pretrained(repo, revision=v1, cache_dir=cache, local_files_only=True)
    assert again.aspects == list(ASPECTS[:2]) and len(hub.state.requests) == before
    point = {"weights": {ASPECTS[0]: 0.7, ASPECTS[1]: 0.3}, "alpha": 0.5}
    m.set_preference(**point)
    again.set_preference(**point)
    assert torch.equal(logits(m.model), logits(again.model))
    with pytest.raises(HubError, match="local_files_only=True and it is not in the cache"):
        PEOModel.from_pretrained(repo, cache_dir=tmp_path / "empty", local_files_only=True)
    with pytest.raises(HubError, match="not found"):  # another user's token cannot see alice's private bundle
        PEOModel.from_pretrained(repo, token=hub.bob_token, cache_dir=tmp_path / "bob")


def test_a_private_hub_base_needs_the_token_too(hub, tmp_path):
    """The bundle is public, its base private: the token given to from_pretrained must reach the base."""
    repo, v1, _ = _private_bundle_on_the_hub(hub, tmp_path, private=False)
    with pytest.raises(HubError, match="alice/tiny-base") as info:
        PEOModel.from_pretrained(repo, revision=v1, cache_dir=tmp_path / "c1")
    assert "\n" not in str(info.value)
    m = PEOModel.from_pretrained(repo, revision=v1, token=hub.alice_token, cache_dir=tmp_path / "c2")
    assert m.bundle.base == "alice/tiny-base"
