"""Which files of an output folder peo-hub wrote, with their hashes: replace ours, keep the user's.

Every writer that may write into a folder it wrote before (``merge --output``, ``export``,
``compose``, ``recipe run`` / ``--resume``, ``evaluate``) used to recognise "an earlier
output of ours" by the folder and then replace the folder as a whole, so a ``notes.txt`` a
user had added to it was deleted with it. The unit of ownership is the file:

* each output folder holds a ledger, :data:`LEDGER_NAME`, listing every file peo-hub wrote
  there (path relative to the folder, sha256 and size at write time);
* a writer replaces a file only when the ledger lists it and its bytes are still the ones
  recorded; a file the user edited since, or one peo-hub never wrote, is a conflict: the
  write is refused in one line before anything changes, unless the user passed an
  explicit ``overwrite`` (``--overwrite``);
* files of ours that a new write no longer produces (a merge YAML for a point that left the
  front) are deleted only when unchanged; an edited one is kept and leaves the ledger (it
  is the user's now). Every other file in the folder is never touched.

Crash safety: a replacement first records the old *and* new hash of every file it is about
to place (``"state": "writing"``), then moves the staged files in one ``os.replace`` each,
then records the final state. A run killed in between leaves only files the ledger knows,
so the next write completes it; :func:`interrupted` lets readers refuse such a folder with
one line instead of loading half-old, half-new files.

Concurrent writers (``accelerate launch`` processes) serialise on an ``fcntl`` lock of the
ledger file, so no update is lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from peo_hub.utils.errors import OutputError

LEDGER_NAME = ".peo_files.json"
LOCK_NAME = ".peo_files.lock"
#: Names the ledger itself uses; never recorded, never replaced by a staged tree.
LEDGER_FILES = frozenset({LEDGER_NAME, LOCK_NAME})


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """The sha256 of a file, read in chunks (model weights do not fit a single read comfortably)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    """A file as peo-hub wrote it: sha256 and size (a size mismatch is caught without hashing)."""

    sha256: str
    size: int

    def matches(self, path: Path) -> bool:
        try:
            if path.stat().st_size != self.size:
                return False
        except OSError:
            return False
        return file_sha256(path) == self.sha256

    @classmethod
    def of(cls, path: Path) -> "Entry":
        return cls(sha256=file_sha256(path), size=path.stat().st_size)


@dataclass
class Conflict:
    """A file a write would replace or delete although it is not (or no longer) what peo-hub wrote."""

    path: str
    reason: str  # "edited" (ours, changed since) or "foreign" (never written by peo-hub)


@dataclass
class _State:
    writer: str | None = None
    files: dict[str, list[Entry]] = field(default_factory=dict)  # path -> accepted versions (2 while writing)
    writing: bool = False


def relative_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as a POSIX path relative to it (symlinks count as files)."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() or path.is_symlink():
            rel = path.relative_to(root).as_posix()
            if rel not in LEDGER_FILES:
                found.append(rel)
    return found


class Ledger:
    """The ledger of one output folder (see the module docstring).

    ``writer`` names the command that owns the folder (``merge``, ``export``, ``compose``,
    ``run``); a folder recorded by another writer is refused, so ``merge --output`` cannot
    scribble over a run folder. ``overwrite`` turns conflicts into replacements.
    """

    def __init__(self, root: str | os.PathLike[str], writer: str, overwrite: bool = False) -> None:
        self.root = Path(root)
        self.writer = writer
        self.overwrite = overwrite

    # ------------------------------------------------------------------ reading

    @property
    def path(self) -> Path:
        return self.root / LEDGER_NAME

    def exists(self) -> bool:
        return self.path.is_file()

    def _read(self) -> _State:
        if not self.path.is_file():
            return _State()
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            files = {str(rel): [Entry(str(v["sha256"]), int(v["size"])) for v in versions]
                     for rel, versions in raw["files"].items()}
            return _State(writer=raw.get("writer"), files=files, writing=raw.get("state") == "writing")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OutputError(f"{self.path} is damaged ({type(exc).__name__}); peo-hub cannot tell which files "
                              f"in {self.root} it wrote: move the folder aside or pass --overwrite") from None

    def _save(self, state: _State) -> None:
        data: dict[str, Any] = {
            "writer": state.writer or self.writer,
            "state": "writing" if state.writing else "complete",
            "files": {rel: [{"sha256": e.sha256, "size": e.size} for e in versions]
                      for rel, versions in sorted(state.files.items())},
        }
        fd, tmp = tempfile.mkstemp(prefix=f"{LEDGER_NAME}.tmp-", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.write("\n")
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_State]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_NAME, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._read()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def owned(self) -> dict[str, Entry]:
        """The files the ledger lists, with the version last recorded."""
        return {rel: versions[-1] for rel, versions in self._read().files.items()}

    def is_ours(self, rel: str) -> bool:
        """Whether ``rel`` is a file peo-hub wrote here and nobody changed since."""
        versions = self._read().files.get(rel)
        return bool(versions) and any(v.matches(self.root / rel) for v in versions)

    def intact(self, path: str | os.PathLike[str]) -> bool:
        """Whether every file at ``path`` (a file or a folder inside the output) that the ledger
        lists is still as it was written; True where there is no ledger to tell."""
        if not self.exists():
            return True
        rel = Path(path).absolute().relative_to(self.root.absolute()).as_posix()
        owned = [key for key in self.owned() if key == rel or key.startswith(rel + "/")]
        return not self.conflicts(owned)

    def interrupted(self) -> bool:
        """Whether the last write into this folder was killed before it finished."""
        return self._read().writing

    # ------------------------------------------------------------------ checking

    def conflicts(self, writes: Iterable[str], deletes: Iterable[str] = ()) -> list[Conflict]:
        """The files among ``writes`` (to be replaced) and ``deletes`` that are not ours as recorded."""
        state = self._read()
        found = []
        for rel in writes:
            target = self.root / rel
            if not (target.exists() or target.is_symlink()):
                continue
            versions = state.files.get(rel)
            if not versions:
                found.append(Conflict(rel, "foreign"))
            elif not any(v.matches(target) for v in versions):
                found.append(Conflict(rel, "edited"))
        return found

    def check(self, writes: Iterable[str] = (), edited_only: bool = False) -> None:
        """Refuse (one line) before any work when the folder belongs to another writer, or a file
        this write would replace is not ours as recorded; ``overwrite`` lets both through.

        With ``edited_only`` the check covers every file the ledger lists (for writers that
        cannot name their files before the work: a file of ours edited since is refused early).
        """
        state = self._read()
        if self.overwrite:
            return
        if state.writer not in (None, self.writer):
            raise OutputError(f"{self.root} holds the output of `peo-hub {state.writer}`, not of `peo-hub "
                              f"{self.writer}`; choose another output folder")
        rels = list(writes) + (list(state.files) if edited_only else [])
        problems = self.conflicts(dict.fromkeys(rels))
        if problems:
            raise OutputError(_conflict_message(self.root, problems))

    # ------------------------------------------------------------------ writing

    def record(self, rels: Iterable[str]) -> None:
        """Record files already placed in the folder (e.g. by an atomic directory rename) as ours."""
        with self._locked() as state:
            for rel in rels:
                state.files[rel] = [Entry.of(self.root / rel)]
            state.writer = state.writer or self.writer
            self._save(state)

    def forget(self, rels: Iterable[str]) -> None:
        """Drop files from the ledger (they stay on disk: the user's from now on)."""
        with self._locked() as state:
            for rel in rels:
                state.files.pop(rel, None)
            self._save(state)

    def write_text(self, rel: str, text: str) -> Path:
        """Write one text file of ours (atomic), refusing a conflict unless ``overwrite``."""
        with tempfile.TemporaryDirectory(prefix=".peo-stage-", dir=self._stage_parent()) as stage:
            staged = Path(stage) / "file"
            staged.write_text(text, encoding="utf-8")
            return self.place({rel: staged})[rel]

    def place(self, staged: Mapping[str, Path], stale: Iterable[str] = ()) -> dict[str, Path]:
        """Move staged files into the folder at their relative paths; delete ``stale`` files of ours.

        Conflicts (a target that is not ours as recorded) refuse the whole write before any
        file moves, unless ``overwrite``. A stale file that was edited is kept and forgotten.
        Returns the final paths.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked() as state:
            if not self.overwrite:
                if state.writer not in (None, self.writer):
                    raise OutputError(f"{self.root} holds the output of `peo-hub {state.writer}`, not of "
                                      f"`peo-hub {self.writer}`; choose another output folder")
                problems = self.conflicts(staged)
                if problems:
                    raise OutputError(_conflict_message(self.root, problems))
            new = {rel: Entry.of(path) for rel, path in staged.items()}
            # 1. Record old and new versions: a kill from here on leaves only files we know.
            for rel, entry in new.items():
                state.files[rel] = [*state.files.get(rel, [])[-1:], entry]
            state.writer = state.writer or self.writer
            state.writing = True
            self._save(state)
            # 2. Move the files in, one atomic rename each.
            placed = {}
            for rel, path in staged.items():
                target = self.root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_dir() and not target.is_symlink():
                    raise OutputError(f"cannot write {target}: a folder is in the way; move it aside")
                os.replace(path, target)
                placed[rel] = target
            # 3. Stale files of ours: deleted when unchanged, else kept as the user's.
            for rel in stale:
                if rel in new:
                    continue
                target = self.root / rel
                versions = state.files.pop(rel, [])
                if versions and any(v.matches(target) for v in versions):
                    target.unlink(missing_ok=True)
                    _prune_empty_parents(target.parent, self.root)
            # 4. Final state.
            for rel, entry in new.items():
                state.files[rel] = [entry]
            state.writing = False
            self._save(state)
        return placed

    def place_tree(self, staged_root: Path, replaces: str | None = "") -> dict[str, Path]:
        """Move every file of a staged folder in (see :meth:`place`).

        ``replaces`` is the sub-folder (relative path; ``""`` for the whole output) the staged
        tree is written to and whose files of ours it replaces as a set: those of ours it no
        longer has are stale. ``None`` writes at the top and replaces nothing beyond the
        staged files.
        """
        prefix = f"{replaces.strip('/')}/" if replaces and replaces.strip("/") else ""
        staged = {f"{prefix}{rel}": staged_root / rel for rel in relative_files(staged_root)}
        stale = [] if replaces is None else [rel for rel in self.owned()
                                             if rel.startswith(prefix) and rel not in staged]
        return self.place(staged, stale=stale)

    def place_dir(self, rel: str, staged_dir: Path) -> Path:
        """Put a staged folder at ``rel``: one atomic rename when nothing is there yet (so a
        reader never sees half of it), else file by file like :meth:`place_tree`."""
        target = self.root / rel
        if target.exists() or target.is_symlink():
            self.place_tree(staged_dir, replaces=rel)
            return target
        files = relative_files(staged_dir)
        with self._locked() as state:
            if not self.overwrite and state.writer not in (None, self.writer):
                raise OutputError(f"{self.root} holds the output of `peo-hub {state.writer}`, not of "
                                  f"`peo-hub {self.writer}`; choose another output folder")
            new = {f"{rel}/{f}": Entry.of(staged_dir / f) for f in files}
            for key, entry in new.items():
                state.files[key] = [*state.files.get(key, [])[-1:], entry]
            state.writer = state.writer or self.writer
            state.writing = True
            self._save(state)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged_dir, target)
            for key, entry in new.items():
                state.files[key] = [entry]
            state.writing = False
            self._save(state)
        return target

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A temporary folder next to the output (same file system, so moves are renames), removed after."""
        stage = Path(tempfile.mkdtemp(prefix=f".{self.root.name}.stage-", dir=self._stage_parent()))
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _stage_parent(self) -> Path:
        parent = self.root.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        return parent


def _prune_empty_parents(folder: Path, root: Path) -> None:
    """Remove folders emptied by deleting a stale file, up to (not including) ``root``."""
    folder, root = folder.absolute(), root.absolute()
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _conflict_message(root: Path, problems: list[Conflict]) -> str:
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    if first.reason == "edited":
        why = "was changed since peo-hub wrote it"
    else:
        why = "was not written by peo-hub"
    return (f"{root / first.path}{more} {why}, and this write would replace it; peo-hub keeps it: move it aside, "
            "choose another output, or pass --overwrite to replace it")
