"""A bundle or an adapter from the Hub as a local folder: what ``PEOModel.from_pretrained("user/repo")``,
``merge``, ``export``, ``compose`` and the Space read.

A bundle is a Hub repo holding ``peo_config.json`` (see :mod:`peo_hub.bundle.manifest`);
:func:`bundle_folder` accepts either a local folder or a repo id, so every verb takes both.
Downloads go to the HF cache and work offline once cached.
"""

from __future__ import annotations

import os
from pathlib import Path

from peo_hub.bundle.manifest import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MANIFEST_NAME
from peo_hub.utils.errors import BundleError
from peo_hub.utils.hubio import _commit_of, hub_errors
from peo_hub.utils.ids import HubRef, kind_of


def download_bundle(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """Download (or reuse from the HF cache) a bundle repo; return its local folder.

    Works offline once cached (``HF_HUB_OFFLINE=1`` reads the cache). A repo without
    ``peo_config.json`` is refused with a :class:`BundleError`.
    """
    from huggingface_hub import snapshot_download

    with hub_errors(f"download {repo_id}", repo_id, revision=revision):
        folder = Path(snapshot_download(repo_id, revision=revision, token=token))
    if not (folder / MANIFEST_NAME).is_file():
        raise BundleError(f"{repo_id} has no {MANIFEST_NAME}, so it is not a PEO bundle; push one with "
                          "`peo-hub push BUNDLE REPO_ID`")
    return folder


def bundle_folder(path_or_repo_id: str | os.PathLike[str], revision: str | None = None) -> Path:
    """A local bundle folder for a folder or a Hub repo id (downloaded, or read from the HF cache).

    Local folders win over repo ids of the same spelling, as in ``from_pretrained``. This is
    the one place a bundle name meets the network; :func:`peo_hub.bundle.manifest.open_bundle` then
    reads the folder.
    """
    local = Path(path_or_repo_id)
    if local.is_dir():
        if not (local / MANIFEST_NAME).is_file():
            raise BundleError(f"{local} is not a PEO bundle (no {MANIFEST_NAME}); point at the folder "
                              "`peo-hub recipe run` wrote")
        return local
    text = str(path_or_repo_id)
    if kind_of(text, namespace=True) != "hub":
        raise BundleError(f"{text} is neither a bundle folder nor a Hub repo id (user/name); check the path")
    return download_bundle(text, revision=revision)


def download_adapter(ref: HubRef, token: str | None = None) -> tuple[Path, str | None]:
    """A Hub LoRA adapter (``user/repo[@revision][:subfolder]``) as a local folder, and its commit.

    Only the adapter's two files are fetched (not the rest of the repo, which may hold a whole
    base model or other adapters). Works offline once cached. The commit is recorded in a
    composed bundle's manifest, so a moving branch cannot change what was composed unnoticed.
    """
    from huggingface_hub import snapshot_download

    prefix = f"{ref.subfolder}/" if ref.subfolder else ""
    with hub_errors(f"download the adapter {ref}", ref.repo, revision=ref.revision):
        snapshot = Path(snapshot_download(ref.repo, revision=ref.revision, token=token,
                                          allow_patterns=[prefix + ADAPTER_CONFIG, prefix + ADAPTER_WEIGHTS]))
    folder = snapshot / ref.subfolder if ref.subfolder else snapshot
    if not (folder / ADAPTER_CONFIG).is_file():
        where = f"in its folder {ref.subfolder!r}" if ref.subfolder else "at its top level"
        raise BundleError(f"{ref.repo} has no {ADAPTER_CONFIG} {where}; name the adapter's folder as "
                          "user/repo:subfolder (e.g. user/repo:adapters/helpful)")
    return folder, _commit_of(snapshot)
