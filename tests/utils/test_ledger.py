"""The output ledger: peo-hub replaces only the files it wrote, and keeps everything else."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from peo_hub.utils.errors import OutputError
from peo_hub.utils.ledger import LEDGER_NAME, Ledger


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _write(ledger: Ledger, files: dict[str, str], replaces: str | None = "") -> None:
    with ledger.staging() as stage:
        for rel, text in files.items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_text(text)
        ledger.place_tree(stage, replaces=replaces)


def test_a_first_write_records_every_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(Ledger(out, "merge"), {"README.md": "card", "weights/a.bin": "w"})
    record = json.loads((out / LEDGER_NAME).read_text())
    assert record["writer"] == "merge" and record["state"] == "complete"
    assert sorted(record["files"]) == ["README.md", "weights/a.bin"]
    assert Ledger(out, "merge").is_ours("README.md")
    assert not [p for p in tmp_path.iterdir() if p.name != "out"], "no staging folder is left behind"


def test_a_rewrite_replaces_ours_and_keeps_the_users_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(Ledger(out, "merge"), {"README.md": "card 1", "config.json": "{}"})
    (out / "notes.txt").write_text("my notes")
    (out / "sub").mkdir()
    (out / "sub" / "serve.sh").write_text("#!/bin/sh")
    kept = {k: v for k, v in _hashes(out).items() if k in ("notes.txt", "sub/serve.sh")}
    _write(Ledger(out, "merge"), {"README.md": "card 2", "config.json": '{"a": 1}'})
    assert (out / "README.md").read_text() == "card 2"
    assert {k: v for k, v in _hashes(out).items() if k in kept} == kept


def test_a_file_of_ours_edited_since_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(Ledger(out, "export"), {"README.md": "generated", "model.gguf": "x"})
    (out / "README.md").write_text("rewritten by hand")
    before = _hashes(out)
    with pytest.raises(OutputError, match=r"README.md was changed since peo-hub wrote it.*--overwrite"):
        _write(Ledger(out, "export"), {"README.md": "generated 2", "model.gguf": "y"})
    assert _hashes(out) == before
    with pytest.raises(OutputError, match="--overwrite"):
        Ledger(out, "export").check(edited_only=True)  # the early check, before any work
    _write(Ledger(out, "export", overwrite=True), {"README.md": "generated 2", "model.gguf": "y"})
    assert (out / "README.md").read_text() == "generated 2"


def test_a_file_peo_hub_never_wrote_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(Ledger(out, "compose"), {"peo_config.json": "{}"})
    (out / "README.md").write_text("the user's own card")
    before = _hashes(out)
    with pytest.raises(OutputError, match="README.md was not written by peo-hub"):
        _write(Ledger(out, "compose"), {"peo_config.json": "{}", "README.md": "card"})
    assert _hashes(out) == before


def test_stale_files_of_ours_go_unless_edited(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ledger = Ledger(out, "run")
    _write(ledger, {"a.yaml": "a", "b.yaml": "b", "c.yaml": "c"}, replaces="merges")
    (out / "merges" / "b.yaml").write_text("b, tuned by hand")
    (out / "merges" / "my-tuned.yaml").write_text("mine")
    _write(ledger, {"a.yaml": "a2"}, replaces="merges")
    assert sorted(p.name for p in (out / "merges").iterdir()) == ["a.yaml", "b.yaml", "my-tuned.yaml"]
    assert (out / "merges" / "b.yaml").read_text() == "b, tuned by hand"
    assert not ledger.is_ours("merges/b.yaml"), "an edited stale file becomes the user's"


def test_another_writers_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _write(Ledger(out, "run"), {"front.json": "{}"})
    with pytest.raises(OutputError, match="output of `peo-hub run`, not of `peo-hub merge`"):
        _write(Ledger(out, "merge"), {"README.md": "x"})


def test_a_write_killed_halfway_is_seen_and_completed_by_the_next(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    _write(Ledger(out, "merge"), {"a": "1", "b": "1"})
    real_replace = os.replace
    calls = {"n": 0}

    def dying_replace(src, dst):  # the ledger's own saves pass; the second file move dies
        if Path(dst).name == "b":
            raise KeyboardInterrupt
        calls["n"] += 1
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        _write(Ledger(out, "merge"), {"a": "2", "b": "2"})
    monkeypatch.setattr(os, "replace", real_replace)
    assert (out / "a").read_text() == "2" and (out / "b").read_text() == "1"
    assert Ledger(out, "merge").interrupted()
    _write(Ledger(out, "merge"), {"a": "3", "b": "3"})  # both versions were recorded: no false conflict
    assert not Ledger(out, "merge").interrupted()
    assert (out / "b").read_text() == "3"


def test_a_damaged_ledger_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / LEDGER_NAME).write_text("[1, 2")
    with pytest.raises(OutputError, match=r"\.peo_files\.json is damaged .*move the folder aside or pass --overwrite"):
        Ledger(out, "merge").check(["x"])


def _record_many(root: str, start: int) -> None:
    ledger = Ledger(root, "run")
    for i in range(start, start + 20):
        path = Path(root) / f"evaluations/{i}.json"
        path.write_text(str(i))
        ledger.record([f"evaluations/{i}.json"])


def test_processes_recording_at_once_lose_no_entry(tmp_path: Path) -> None:
    (tmp_path / "evaluations").mkdir()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_record_many, args=(str(tmp_path), n * 20)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(Ledger(tmp_path, "run").owned()) == 60
