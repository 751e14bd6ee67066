"""peo_hub.utils.ids: one rule for "local path or Hub repo", used by every verb."""

from __future__ import annotations

from pathlib import Path

import pytest

from peo_hub.utils.errors import PEOError
from peo_hub.utils.ids import HubRef, check_repo_id, is_repo_id, kind_of, parse_ref


@pytest.mark.parametrize("text, kind", [
    ("alice/peo-toy", "hub"), ("gpt2", "hub"), ("./runs/toy", "local"), ("/abs/path", "local"),
    ("~/bundle", "local"), ("a/b/c", "local"), ("data/prefs.jsonl", "local"), ("bad space!!", "invalid"),
    ("a--b/c", "invalid"), ("x/..y", "invalid"),
])
def test_kind_of(text: str, kind: str) -> None:
    assert kind_of(text) == kind


def test_an_existing_folder_wins_over_a_repo_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alice" / "peo-toy").mkdir(parents=True)
    assert kind_of("alice/peo-toy") == "local"


def test_repo_ids_for_pushing_need_a_namespace() -> None:
    assert is_repo_id("gpt2") and not is_repo_id("gpt2", namespace=True)
    assert check_repo_id("alice/peo-toy") == "alice/peo-toy"
    for bad in ("gpt2", "bad space!!", "a/b/c", "alice/x.json"):
        with pytest.raises(PEOError, match="not a valid repo id") as info:
            check_repo_id(bad)
        assert info.value.exit_code == 2  # an input error, not a Hub failure


def test_parse_ref() -> None:
    assert parse_ref("alice/helpful@v2:adapters/helpful") == HubRef("alice/helpful", "v2", "adapters/helpful")
    assert parse_ref("alice/helpful") == HubRef("alice/helpful")
    assert parse_ref("./local/adapter").is_local
    with pytest.raises(PEOError, match="neither an existing folder nor a Hub reference"):
        parse_ref("not a ref!@x")
