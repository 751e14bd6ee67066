"""Pytest fixtures that point huggingface_hub (in this process and in subprocesses) at the test Hub.

Why patching constants is needed: ``huggingface_hub.constants`` reads ``HF_ENDPOINT``,
``HF_HUB_OFFLINE``, ``HF_HOME``/``HF_HUB_CACHE`` and the token path once, at import, and
``tests/conftest.py`` has already imported it offline. Setting the environment alone would
reach only subprocesses. So :func:`hub` does both, with ``monkeypatch`` (undone after each
test): the environment for children, and the module attributes the client reads at call
time for this process. Values frozen elsewhere at import are patched too:
``huggingface_hub.hf_api.api`` (the module-level ``HfApi()`` behind ``huggingface_hub.create_repo``
etc.) and transformers' cached ``hf_api()`` instance.

The strongest checks still run the client in a fresh subprocess (``hub.env()``), where nothing
was imported before the environment was set.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from hub_server import ALICE_READ_TOKEN, ALICE_TOKEN, BOB_TOKEN, HubServer

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class HubEnv:
    """What a test needs to talk to the loopback Hub."""

    server: HubServer
    home: Path  # the temporary HF_HOME of this test
    alice_token: str = ALICE_TOKEN
    bob_token: str = BOB_TOKEN
    alice_read_token: str = ALICE_READ_TOKEN

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def state(self):  # noqa: ANN201 - HubState, re-exported for brevity in tests
        return self.server.state

    def env(self, token: str | None = None, home: Path | None = None) -> dict[str, str]:
        """Environment for a subprocess client: this Hub, online, an empty cache of its own."""
        home = home or self.home / "child"
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update({
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_XET_CACHE": str(home / "xet"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests"), str(REPO_ROOT)]),
        })
        env.pop("HUGGINGFACE_HUB_CACHE", None)
        if token:
            env["HF_TOKEN"] = token
        return env


def point_client_at(endpoint: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Repoint huggingface_hub in this process (and the env for children) at ``endpoint``."""
    from huggingface_hub import constants, hf_api

    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"), "HF_XET_CACHE": str(home / "xet"), "HF_HUB_DISABLE_XET": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)

    host = urlsplit(endpoint).hostname or "127.0.0.1"
    patches = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {host},
        "HF_HUB_OFFLINE": False,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HUGGINGFACE_HUB_CACHE": str(home / "hub"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_DISABLE_XET": True,
    }
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        monkeypatch.setattr(transformers_hub, "_hf_api", None)


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """One loopback Hub (two ports: API + LFS CDN) for the whole session."""
    with HubServer() as server:
        yield server


@pytest.fixture
def hub(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEnv]:
    """An empty Hub and a client in this process pointed at it, with a fresh HF_HOME; undone after."""
    hub_server.state.reset()
    home = tmp_path / "hf_home"
    point_client_at(hub_server.endpoint, home, monkeypatch)
    yield HubEnv(server=hub_server, home=home)
    hub_server.state.reset()


@contextlib.contextmanager
def hub_environment(tmp: Path) -> Iterator[HubEnv]:
    """A private Hub server + client patching for a wider scope than one test (undone on exit)."""
    with HubServer() as server, pytest.MonkeyPatch.context() as patch:
        home = tmp / "hf_home"
        point_client_at(server.endpoint, home, patch)
        yield HubEnv(server=server, home=home)


@pytest.fixture(scope="module")
def module_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEnv]:
    """Like :func:`hub`, but one server for a whole test module (for fixtures that publish once)."""
    with hub_environment(tmp_path_factory.mktemp("module_hub")) as env:
        yield env
