"""peo_hub.utils.fsutil: the one output guard every writer passes, and atomic writes that leave nothing half-done."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from peo_hub.utils.errors import OutputError
from peo_hub.utils.fsutil import atomic_dir, atomic_write_text, check_output


def test_a_new_path_in_a_writable_folder_is_accepted(tmp_path: Path) -> None:
    assert check_output(tmp_path / "a" / "b", "folder") == tmp_path / "a" / "b"
    assert check_output(tmp_path / "x.yaml", "file") == tmp_path / "x.yaml"
    assert not (tmp_path / "a").exists(), "checking writes nothing"
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", "folder")  # an empty folder holds nothing to lose


def test_what_a_user_has_there_is_refused_unless_it_is_ours(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(OutputError, match="already exists .*never overwrites"):
        check_output(notes, "folder")
    check_output(notes, "folder", ours=lambda p: (p / "todo.txt").is_file())  # the caller recognises its own
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: mine\n")
    with pytest.raises(OutputError, match="already exists"):
        check_output(recipe, "file")
    with pytest.raises(OutputError, match="exists and is a file"):
        check_output(recipe, "folder")
    with pytest.raises(OutputError, match="is a folder"):
        check_output(notes, "file")
    assert recipe.read_text() == "name: mine\n" and (notes / "todo.txt").read_text() == "mine"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "file.txt").write_text("x")
    return tmp / "file.txt" / "out"


@pytest.mark.parametrize("make, needle", [
    (_under_a_file, "is a file, not a folder"),
    (lambda t: t / ("n" * 256), "longer than 255 bytes"),
    (lambda t: Path("/proc/peo-hub-test/out"), "not writable"),
])
def test_unwritable_places_are_one_line(tmp_path: Path, make, needle: str) -> None:
    with pytest.raises(OutputError, match=needle) as info:
        check_output(make(tmp_path), "folder")
    assert "\n" not in str(info.value)


def test_a_read_only_mount_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "ro"
    target.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(target), str(target)], capture_output=True)
    if mounted.returncode != 0:
        if os.access(target, os.W_OK) and os.geteuid() == 0:
            pytest.skip("cannot make a read-only mount here (root ignores file modes)")
    try:
        if mounted.returncode != 0:
            target.chmod(0o555)
        with pytest.raises(OutputError, match="not writable"):
            check_output(target / "out", "folder")
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(target)], check=False)
        target.chmod(0o755)


def test_atomic_writes_leave_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "bundle"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(tmp_path / "a.txt", "whole")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_text(tmp_path / "a.txt" / "b.txt", "under a file")
