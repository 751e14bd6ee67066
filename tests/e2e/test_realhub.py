"""Opt-in: the same round trip against huggingface.co (Xet uploads included).

Runs only with ``HF_TOKEN`` (a write token) and ``PEO_HUB_REAL_HUB=1``::

    PEO_HUB_REAL_HUB=1 HF_TOKEN=hf_... pytest -m realhub tests/e2e/test_realhub.py

It pushes a tiny random bundle to a *private* temporary repo in the token's namespace,
checks it is invisible anonymously, loads each adapter back with PEFT in the same child
process, compares logits with the local bundle, and deletes the repo whatever happens.
The child process gets a clean environment (no HF_ENDPOINT, online, Xet allowed), since
``tests/conftest.py`` froze huggingface_hub offline in this one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import make_fake_bundle

pytestmark = [
    pytest.mark.realhub,
    pytest.mark.skipif(not (os.environ.get("HF_TOKEN") and os.environ.get("PEO_HUB_REAL_HUB") == "1"),
                       reason="talks to huggingface.co: set HF_TOKEN (write) and PEO_HUB_REAL_HUB=1 to run"),
]

CHILD = r"""
import sys, uuid
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError
from peft import PeftModel
from transformers import AutoModelForCausalLM
from peo_hub.bundle.pull import download_bundle
from peo_hub.publish.hub import push_bundle

bundle, aspects = sys.argv[1], sys.argv[2].split(",")
api = HfApi()
repo = f"{api.whoami()['name']}/peo-hub-test-{uuid.uuid4().hex[:8]}"
ids = torch.tensor([[1, 5, 7, 9, 3]])
try:
    url = push_bundle(bundle, repo, private=True)
    print("pushed", url)
    assert api.model_info(repo).private is True
    try:
        HfApi(token=False).model_info(repo)
        raise AssertionError("a private repo is visible anonymously")
    except RepositoryNotFoundError:
        pass
    assert (download_bundle(repo) / "peo_config.json").is_file()
    with torch.no_grad():
        for aspect in aspects:
            remote = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(repo, subfolder="base"),
                                               repo, subfolder=f"adapters/{aspect}")
            local = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(f"{bundle}/base"),
                                              f"{bundle}/adapters/{aspect}")
            assert torch.allclose(remote(ids).logits, local(ids).logits, atol=1e-6), aspect
    tags = api.model_info(repo).tags or []
    assert "peo" in tags, tags
    print("ok", repo)
finally:
    api.delete_repo(repo, missing_ok=True)
    print("deleted", repo)
"""


def test_round_trip_on_huggingface_co(tmp_path: Path) -> None:
    bundle = make_fake_bundle(tmp_path / "b")
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_XET")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(bundle), "helpful,harmless"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "ok " in proc.stdout and "deleted " in proc.stdout
