"""Writing files safely: check the output path first, build in a temporary sibling, rename.

Two guarantees every writer in peo-hub relies on:

* **Nothing a user wrote is overwritten or deleted.** :func:`check_output` is the one gate
  every writer passes before any work: it refuses a path under a file, a name the file
  system cannot hold, a place that cannot be written (read-only mounts, ``/proc``), and an
  existing file or non-empty folder unless the caller recognises it as its own earlier
  output.
* **Nothing half-written looks finished.** A killed run must never leave an adapter with a
  config but half its weights, or a bundle without its manifest. :func:`atomic_dir` and
  :func:`atomic_file` build in a temporary sibling and rename it into place; a rename within
  one file system is atomic, so readers see either nothing or the whole thing.
"""

from __future__ import annotations

import contextlib
import json
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from peo_hub.errors import BundleError, OutputError

NAME_MAX = 255  # bytes per path component on every common file system


def _nearest_existing(path: Path) -> Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _probe_writable(folder: Path, path: Path) -> None:
    """Create and delete a file in ``folder``: the only test that sees read-only mounts and /proc."""
    try:
        fd, name = tempfile.mkstemp(prefix=".peo-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {folder} is not writable ({exc.strerror or exc}); "
                          "choose an output in a folder you can write to") from None


def check_names(path: str | os.PathLike[str], what: str = "output") -> Path:
    """``path`` (user-expanded) when every part fits the file system, else one line (before any stat)."""
    path = Path(path).expanduser()
    for part in path.parts:
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise OutputError(f"cannot write {what} {str(path)[:60]}...: the name {part[:40]!r}... is longer than "
                              f"{NAME_MAX} bytes; choose a shorter name")
    return path


def check_output(path: str | os.PathLike[str], kind: Literal["folder", "file"] = "folder",
                 ours: Callable[[Path], bool] | None = None, what: str = "output") -> Path:
    """Refuse an output path that cannot be written or holds something that is not ours; return it.

    ``kind`` is what will be written there. An existing file (for ``file``) or non-empty
    folder (for ``folder``) is accepted only when ``ours(path)`` says it is an earlier output
    of the same writer (which is then replaced as a whole); everything else a user has there
    is refused, never overwritten. Called before any work, so a bad path costs nothing.
    """
    path = check_names(path, what)
    anchor = _nearest_existing(path.absolute().parent)
    if not anchor.is_dir():
        raise OutputError(f"cannot write {what} {path}: {anchor} is a file, not a folder; choose another path")
    if path.exists():
        if kind == "folder" and not path.is_dir():
            raise OutputError(f"{what} {path} exists and is a file; choose a folder name")
        if kind == "file" and path.is_dir():
            raise OutputError(f"{what} {path} is a folder; give a file name")
        occupied = path.is_file() or any(path.iterdir())
        if occupied and not (ours is not None and ours(path)):
            thing = "file" if kind == "file" else "folder, not empty,"
            raise OutputError(f"{what} {path} already exists ({thing} and not an earlier output of this command); "
                              "peo-hub never overwrites it: choose a new path or remove it yourself")
    _probe_writable(anchor, path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``final`` on success.

    On any exception the temporary directory is removed and ``final`` is untouched.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}; choose another output") from None
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is shared like any folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(final)
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path to write; it replaces ``path`` if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another output") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file via a temporary sibling and ``os.replace``."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON (indented, key order kept) atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike[str], fix: str) -> Any:
    """Parse a bundle's JSON file; unreadable or invalid JSON is a one-line ``BundleError`` ending in ``fix``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}; {fix}") from None


def clean_stale_temps(folder: str | os.PathLike[str]) -> None:
    """Remove leftovers of interrupted atomic writes (``.name.tmp-*``) in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.name.startswith(".") and (".tmp-" in child.name or ".old-" in child.name):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def cache_root() -> Path:
    """Where peo-hub keeps what it can rebuild (the toy base, converted GGUF bases, sampled pairs)."""
    return Path(os.environ.get("PEO_HUB_CACHE", Path.home() / ".cache" / "peo_hub"))


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """The sha256 of a file, read in chunks (model weights do not fit a single read comfortably)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
