"""Shared pytest set-up: offline by default, small thread counts, tests/support on sys.path.

Tests mirror the package (tests/<stage>/test_<module>.py); end-to-end runs are in tests/e2e,
checks of the house itself (layers, docs) in tests/house, shared helpers and data in tests/support.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before any HF import: never reach the real Hub from tests, never try Xet against the
# loopback server, keep CPU thread fights down on 2-core machines.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

sys.path.insert(0, str(Path(__file__).parent / "support"))

# The loopback Hub (`hub_server`, `hub` fixtures): see tests/support/hub_fixture.py.
pytest_plugins = ["hub_fixture"]


import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def peo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the embedded toy base is cached: reuse the user's cache when set, else a session dir."""
    if "PEO_HUB_CACHE" not in os.environ:
        os.environ["PEO_HUB_CACHE"] = str(tmp_path_factory.mktemp("peo_cache"))
    return Path(os.environ["PEO_HUB_CACHE"])


@pytest.fixture(scope="session")
def toy_bundle(tmp_path_factory: pytest.TempPathFactory, peo_cache: Path) -> Path:
    """A real toy bundle (trained adapters, sweep, front) from tests/recipes/toy-ci.yaml, built once."""
    from peo_hub.recipe.pipeline import run_recipe

    out = tmp_path_factory.mktemp("toy") / "bundle"
    return run_recipe(REPO / "tests" / "recipes" / "toy-ci.yaml", output=out)


@pytest.fixture(scope="module")
def served(toy_bundle: Path):
    """The Space for the toy bundle, launched in a background thread (``prevent_thread_lock``)."""
    from peo_hub.serve.space import launch

    sys.path.insert(0, str(REPO / "docs"))
    from space_screenshot import free_port  # the README's pictures use the same helper

    demo = launch(toy_bundle, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo
    finally:
        demo.close()


# Two tokenizers for rendering tests: the toy world's word-level one (its own template) and a
# small BPE one trained here with Qwen2.5's ChatML template (tests/support/realdata.py).


@pytest.fixture
def word_tok():
    from peo_hub.world.tokenizer import build_word_tokenizer

    return build_word_tokenizer("a b c d hi there how are you".split())


@pytest.fixture(scope="module")
def chatml_tok():
    import realdata

    return realdata.train_bpe_tokenizer()
