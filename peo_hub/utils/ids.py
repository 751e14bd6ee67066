"""What a name points at: a local path or a Hugging Face Hub repo. One rule for the whole package.

Users pass the same kind of string everywhere (``base_model``, a dataset ``source``, a bundle
to load, a repo to push to, an adapter to compose): a local folder or file, or a Hub repo id.
Deciding that in one place keeps every verb in agreement; a folder always wins over a repo
id of the same spelling, as in ``from_pretrained``. Nothing here touches the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from peo_hub.utils.errors import PEOError

# huggingface_hub's own rule (validate_repo_id): letters, digits, '-', '_', '.', at most 96
# characters per part, no '--' or '..', not ending in '.git'; one optional namespace.
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9_])?/)?[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9_])?$")
# A "namespace/file.json" string is a local file a user forgot to prefix, never a repo.
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow", ".txt", ".yaml", ".yml", ".gz",
                 ".safetensors", ".gguf", ".bin")
PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")

Kind = Literal["local", "hub", "invalid"]


def is_repo_id(text: object, namespace: bool = False) -> bool:
    """Whether ``text`` is spelled like a Hub repo id (``name`` or ``namespace/name``).

    ``namespace=True`` demands the ``namespace/name`` form (pushing, bundles, datasets).
    """
    if not isinstance(text, str) or not _REPO_ID.match(text):
        return False
    if "--" in text or ".." in text or text.endswith(".git") or text.lower().endswith(DATA_SUFFIXES):
        return False
    return "/" in text if namespace else True


def looks_local(text: str) -> bool:
    """Whether ``text`` names a local path: it exists, or it is written like one."""
    if text.startswith(PATH_PREFIXES) or text.count("/") > 1 or "\\" in text:
        return True
    if text.lower().endswith(DATA_SUFFIXES):
        return True
    try:
        return Path(text).expanduser().exists()
    except OSError:  # a name too long for the file system is no local path
        return False


def kind_of(text: str, namespace: bool = False) -> Kind:
    """``local`` (an existing or path-like name), ``hub`` (a repo id) or ``invalid``."""
    if looks_local(text):
        return "local"
    return "hub" if is_repo_id(text, namespace=namespace) else "invalid"


def check_repo_id(text: str, what: str = "repo id") -> str:
    """``text`` if it is a valid ``namespace/name`` repo id, else one input-error line (exit 2)."""
    if not is_repo_id(text, namespace=True):
        raise PEOError(f"{text!r} is not a valid {what}: write it as namespace/name with letters, digits, "
                       "'-', '_' or '.', e.g. alice/peo-toy")
    return text


@dataclass(frozen=True)
class HubRef:
    """``repo[@revision][:subfolder]``: where one adapter lives on the Hub or on disk."""

    repo: str
    revision: str | None = None
    subfolder: str | None = None

    @property
    def is_local(self) -> bool:
        return kind_of(self.repo) == "local"

    def __str__(self) -> str:
        return self.repo + (f"@{self.revision}" if self.revision else "") + (f":{self.subfolder}" if self.subfolder else "")


def parse_ref(text: str) -> HubRef:
    """Split ``user/repo@rev:sub/folder`` (Hub) or a local path (kept whole) into a :class:`HubRef`."""
    text = text.strip()
    if not text:
        raise PEOError("an adapter reference is empty; give a local folder or user/repo[@revision][:subfolder]")
    if Path(text).expanduser().exists():
        return HubRef(repo=text)
    repo, _, subfolder = text.partition(":")
    repo, _, revision = repo.partition("@")
    if kind_of(repo) == "local":
        return HubRef(repo=text)  # a local path that does not exist: reported where it is opened
    if not is_repo_id(repo, namespace=True):
        raise PEOError(f"{text!r} is neither an existing folder nor a Hub reference user/repo[@revision][:subfolder]; "
                       "check the path or the repo id")
    return HubRef(repo=repo, revision=revision or None, subfolder=subfolder.strip("/") or None)
