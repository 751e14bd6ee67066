"""Writing files safely: check the output path first, build in a temporary sibling, rename.

Three guarantees every writer in peo-hub relies on:

* **Nothing a user wrote is overwritten or deleted.** :func:`check_output` is the one gate
  every writer passes before any work: it refuses a path under a file, a name the file
  system cannot hold, a place that cannot be written (read-only mounts, ``/proc``), a
  dangling link, and an existing file or non-empty folder that is not an earlier output of
  the same command. Inside an earlier output the unit is the file, not the folder: each
  output records the files peo-hub wrote there with their hashes (:mod:`peo_hub.utils.ledger`),
  and only those, unchanged, are ever replaced; a user's own files stay, an edited one is a
  one-line refusal unless the user asked for ``--overwrite`` (:func:`overwriting`).
* **Nothing half-written looks finished.** A killed run must never leave an adapter with a
  config but half its weights, or a bundle without its manifest. :func:`atomic_dir` and
  :func:`atomic_file` build in a temporary sibling and rename it into place; a rename within
  one file system is atomic, so readers see either nothing or the whole thing.
* **Every write into an output is recorded.** ``atomic_file`` and ``atomic_dir`` find the
  ledger of the output they write into (:func:`ledger_of`) and go through it, so no writer
  has to remember to: a new writer is safe by default.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from peo_hub.utils.errors import BundleError, OutputError
from peo_hub.utils.ledger import LEDGER_FILES, LEDGER_NAME, Ledger, file_sha256, relative_files

__all__ = ["atomic_dir", "atomic_file", "atomic_write_json", "atomic_write_text", "cache_root", "check_names",
           "check_output", "clean_stale_temps", "file_sha256", "ledger_of", "overwriting", "read_json"]

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


_OVERWRITE: ContextVar[bool] = ContextVar("peo_hub_overwrite", default=False)


@contextlib.contextmanager
def overwriting(enabled: bool = True) -> Iterator[None]:
    """Within the block, writes may replace files of an output that peo-hub did not write or
    that were edited since (the command line's ``--overwrite``). Files the write does not
    produce are still never deleted."""
    token = _OVERWRITE.set(enabled)
    try:
        yield
    finally:
        _OVERWRITE.reset(token)


def overwrite_allowed() -> bool:
    return _OVERWRITE.get()


def ledger_of(path: str | os.PathLike[str]) -> Ledger | None:
    """The ledger of the output folder that holds ``path`` (``path`` itself or a parent), if any."""
    current = Path(path).absolute()
    for folder in (current, *current.parents):
        if is_staging(folder):
            return None  # a write into a staging folder is recorded when the folder is placed
        if (folder / LEDGER_NAME).is_file():
            return Ledger(folder, writer=_ledger_writer(folder), overwrite=overwrite_allowed())
    return None


def is_staging(path: Path) -> bool:
    """Whether ``path`` is one of peo-hub's temporary folders (``.name.tmp-*``, ``.name.stage-*``)."""
    return path.name.startswith(".") and (".tmp-" in path.name or ".stage-" in path.name)


def _ledger_writer(folder: Path) -> str:
    try:
        return str(json.loads((folder / LEDGER_NAME).read_text(encoding="utf-8")).get("writer") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def check_output(path: str | os.PathLike[str], kind: Literal["folder", "file"] = "folder",
                 ours: Callable[[Path], bool] | None = None, what: str = "output", owner: str | None = None) -> Path:
    """Refuse an output path that cannot be written or holds something that is not ours; return it.

    ``kind`` is what will be written there; ``owner`` names the command whose outputs carry
    a ledger (``merge``, ``export``, ``bundle``). An existing file (for ``file``) or
    non-empty folder (for ``folder``) is accepted only when it is an earlier output of the
    same command whose recorded files are unchanged (its ledger), or, with ``--overwrite``,
    any output (even then only files the write produces are replaced). ``ours(path)``
    recognises an earlier output written before ledgers existed: the user is asked for
    ``--overwrite``, since nobody recorded which of its files are peo-hub's. Called before
    any work, so a bad path costs nothing.
    """
    path = check_names(path, what)
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{what} {path} is a link to {os.readlink(path)}, which does not exist; remove the link "
                          "or choose another path")
    anchor = _nearest_existing(path.absolute().parent)
    if not anchor.is_dir():
        raise OutputError(f"cannot write {what} {path}: {anchor} is a file, not a folder; choose another path")
    if path.exists():
        if kind == "folder" and not path.is_dir():
            raise OutputError(f"{what} {path} exists and is a file; choose a folder name")
        if kind == "file" and path.is_dir():
            raise OutputError(f"{what} {path} is a folder; give a file name")
        occupied = path.is_file() or any(child.name not in LEDGER_FILES for child in path.iterdir())
        if occupied and not overwrite_allowed():
            _check_occupied(path, kind, ours, what, owner)
    _probe_writable(anchor, path)
    return path


def _check_occupied(path: Path, kind: str, ours: Callable[[Path], bool] | None, what: str,
                    owner: str | None) -> None:
    if kind == "folder" and owner is not None and (path / LEDGER_NAME).is_file():
        Ledger(path, owner).check(edited_only=True)  # another command's output, or a file edited since
        return
    if ours is not None and ours(path):
        return  # an earlier output from before ledgers: its same-named files are adopted (atomic_dir)
    thing = "file" if kind == "file" else "folder, not empty,"
    raise OutputError(f"{what} {path} already exists ({thing} and not an earlier output of this command); "
                      "peo-hub never overwrites it: choose a new path, remove it yourself, or pass --overwrite "
                      "to replace only the files this command writes")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str], owner: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary directory whose files end up in ``final`` on success.

    On any exception the temporary directory is removed and ``final`` is untouched. Where
    ``final`` does not exist, the temporary directory is renamed to it (atomic). Inside an
    output with a ledger (``final`` itself or a parent, :func:`ledger_of`), the files go
    through the ledger: only files peo-hub wrote there and nobody changed are replaced, files
    of ours the new content no longer has are removed, and everything else stays.
    ``owner`` makes ``final`` an output of its own: its ledger is created on the first write.
    Outside any output (peo-hub's caches) an existing ``final`` is replaced as a whole.
    """
    final = Path(final).absolute()
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}; choose another output") from None
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is shared like any folder
    try:
        yield tmp
        ledger = Ledger(final, owner, overwrite=overwrite_allowed()) if owner is not None else ledger_of(final)
        if ledger is None:
            _replace_whole(tmp, final)
        elif ledger.root == final:
            if final.exists():
                if not ledger.exists():  # an earlier output from before ledgers (check_output let it through)
                    ledger.record(rel for rel in relative_files(tmp) if (final / rel).is_file())
                ledger.place_tree(tmp, replaces="")
            else:  # a new output: its ledger travels inside the one atomic rename
                Ledger(tmp, ledger.writer).record(relative_files(tmp))
                os.replace(tmp, final)
        else:
            ledger.place_dir(final.relative_to(ledger.root).as_posix(), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_whole(tmp: Path, final: Path) -> None:
    """A cache folder of peo-hub's own (no ledger): swap it in whole."""
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path to write; it replaces ``path`` if the block succeeds.

    Inside an output with a ledger the replacement goes through it (see :func:`atomic_dir`):
    a file there that peo-hub did not write, or that was edited since, is refused before the
    block runs, unless ``--overwrite``.
    """
    path = Path(path).absolute()
    ledger = ledger_of(path.parent)
    rel = path.relative_to(ledger.root).as_posix() if ledger is not None else None
    if ledger is not None and rel is not None:
        ledger.check([rel])
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
        if ledger is not None and rel is not None:
            ledger.place({rel: tmp})
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
