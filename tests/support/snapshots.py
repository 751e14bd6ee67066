"""The sha256 of every file under a folder, to prove a refused command changed nothing and a successful one kept
the user's files ("nothing a user wrote is ever overwritten or deleted")."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Mapping

# Opened (never written) by every writer to serialise on the ledger; its bytes never change.
IGNORED = frozenset({".peo_files.lock"})


def sha256s(root: Path) -> dict[str, str]:
    """Relative POSIX path -> sha256 of every regular file under ``root`` (hidden files included)."""
    root = Path(root)
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name not in IGNORED:
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def differences(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What changed, as ``+added``, ``-removed`` and ``~changed`` paths."""
    return ([f"+{p}" for p in sorted(set(after) - set(before))] + [f"-{p}" for p in sorted(set(before) - set(after))]
            + [f"~{p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]])


def assert_unchanged(before: Mapping[str, str], root: Path) -> None:
    """Every file under ``root`` is byte for byte what ``before`` recorded; nothing added or removed."""
    diff = differences(before, sha256s(root))
    assert not diff, f"{root} changed: {diff}"


def assert_kept(before: Mapping[str, str], root: Path, paths: Iterable[str]) -> None:
    """Each of ``paths`` (the user's own files) is still there with the bytes ``before`` recorded."""
    now = sha256s(root)
    lost = [p for p in paths if now.get(p) != before[p]]
    assert not lost, f"user's files changed or deleted in {root}: {lost}"


def one_line_error(err: str, *needles: str) -> str:
    """A CLI's stderr holds exactly one ``error: ...`` line and no traceback (library progress bars and
    warnings may print around it); the line holds every needle. Returns the line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
