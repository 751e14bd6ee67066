"""Temporary files and folders next to an output, named for the process that made them, and their clean-up.

Every atomic write builds its result in a hidden sibling (``.NAME.tmp-…``, ``.NAME.stage-…``,
``merge``'s ``.NAME.lora-cache-…``) and renames it into place. A process killed with
``kill -9`` cannot remove its sibling, and a name alone cannot tell a dead writer's leftover
from the working folder of a writer still running next to it. So the name carries the
writer's process id (:func:`prefix`), and :func:`clean_dead` removes exactly the leftovers
whose process is gone: the next write into the same folder cleans up after a killed one,
and never pulls a folder from under a live one. (A recycled pid only delays a clean-up.)
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

#: What a peo-hub temporary name looks like: ``.<name>.<kind>-<pid>-<random>``.
KINDS = ("tmp", "stage", "lora-cache")
_PATTERN = re.compile(r"^\..*\.(?:" + "|".join(re.escape(k) for k in KINDS) + r")-(\d+)-")


def prefix(name: str, kind: str) -> str:
    """The prefix of a temporary sibling of ``name`` (for ``tempfile.mkdtemp``/``mkstemp``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown temporary kind {kind!r}")
    return f".{name}.{kind}-{os.getpid()}-"


def owner_pid(name: str) -> int | None:
    """The process id a temporary name was made by, ``None`` for any other name."""
    match = _PATTERN.match(name)
    return int(match.group(1)) if match else None


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return True
    return True


def clean_dead(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary siblings in ``folder`` whose writer is no longer running; returns them."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        children = list(folder.iterdir())
    except OSError:
        return removed
    for child in children:
        pid = owner_pid(child.name)
        if pid is None or alive(pid):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            try:
                child.unlink()
            except OSError:
                continue
        removed.append(child)
    return removed
