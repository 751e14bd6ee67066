"""Shared pytest set-up: offline by default, small thread counts, the tests folder on sys.path."""

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

sys.path.insert(0, str(Path(__file__).parent))

# The loopback Hub (`hub_server`, `hub` fixtures): see tests/hub_fixture.py.
pytest_plugins = ["hub_fixture"]
