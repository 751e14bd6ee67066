"""Hub publishing: push a bundle (one commit), push one point, deploy the Space.

Why one commit: a bundle is only usable whole (manifest + every adapter + base), so a push
that dies half way must leave the repo exactly as it was. ``HfApi.create_commit`` uploads
LFS/Xet blobs first and then makes a single commit that references them; if anything fails
before that commit, the repo's history is unchanged.

Why a re-push deletes: the repo must hold the bundle as it is now, not every file it ever
had (stale ``evaluations/`` and ``merges/`` of an earlier front would be read as current).
The same single commit deletes the repo's files that are not in the bundle, but only
inside the bundle's layout (:func:`peo_hub.bundle.manifest.in_bundle_layout`): notes or
folders a person added on the Hub are never touched. The commit names the revision it read
(``parent_commit``), so a change made on the Hub in between fails the push instead of being
deleted unseen.

Why the local bundle is never written: pushing must work from a read-only copy and must
not change what the user has on disk. The model card is generated in memory and added to
the commit; a README.md that a person wrote (without peo-hub's marker) is uploaded as it is.
A README edited on the Hub is replaced by the bundle's own, and the push says so.
Use :func:`peo_hub.bundle.card.write_model_card` to write the card locally. Pulling a bundle
back is :mod:`peo_hub.bundle.pull`.

Every Hub failure becomes one :class:`~peo_hub.utils.errors.HubError` line (exit code 3) that
names the problem and the fix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from peo_hub.bundle.manifest import CARD_NAME, in_bundle_layout, open_bundle, validate_bundle
from peo_hub.bundle.pull import bundle_folder
from peo_hub.utils.errors import HubError, PEOError
from peo_hub.utils.hubio import _repo_url, hub_errors, require_token
from peo_hub.utils.ids import check_repo_id, kind_of

SPACE_TEMPLATE = Path(__file__).resolve().parents[2] / "spaces" / "peo-demo"


SPACE_CONFIG_NAME = "peo_space.json"


def bundle_files(bundle_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Repo path -> local file of everything to publish (hidden files and caches are skipped)."""
    bundle = Path(bundle_dir)
    files: dict[str, Path] = {}
    for path in sorted(bundle.rglob("*")):
        rel = path.relative_to(bundle)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue  # atomic-write leftovers (.x.tmp-*), .cache/huggingface of local_dir downloads, ...
        if path.is_file():
            files[rel.as_posix()] = path
    return files


def _card_bytes(bundle: Path, repo_id: str) -> bytes | None:
    """The README to publish: regenerated unless a person wrote it (no peo-hub marker)."""
    from peo_hub.bundle.card import is_generated_card, render_model_card

    readme = bundle / CARD_NAME
    if readme.is_file() and not is_generated_card(readme.read_text(encoding="utf-8", errors="replace")):
        return None  # keep the user's own card, uploaded from disk as is
    return render_model_card(bundle, repo_id=repo_id).encode("utf-8")


@dataclass
class RepoState:
    """What a push found in the repo before its commit: the commit it read, its files, its README."""

    commit: str | None = None
    files: list[str] = field(default_factory=list)
    readme: str | None = None


def _read_repo(api: Any, repo_id: str, repo_type: str, revision: str | None, want_readme: bool) -> RepoState:
    """The revision's commit and file list (one call), and the README's text when asked."""
    info = api.repo_info(repo_id, repo_type=repo_type, revision=revision)
    state = RepoState(commit=info.sha, files=sorted(s.rfilename for s in info.siblings or []))
    if want_readme and CARD_NAME in state.files:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo_id, CARD_NAME, repo_type=repo_type, revision=info.sha, token=api.token)
        state.readme = Path(path).read_text(encoding="utf-8", errors="replace")
    return state


def _publish(api: Any, repo_id: str, files: Mapping[str, Path | bytes], message: str, private: bool,
             repo_type: str = "model", revision: str | None = None,
             plan: Callable[[RepoState], Sequence[str]] | None = None, **create_kwargs: Any) -> None:
    """Create the repo if needed and make one commit; a repo this call created is removed if the commit fails.

    ``private`` applies when the repo is created; publishing into an existing public repo
    when private was asked is refused. Without the clean-up a failed first push (a dropped
    connection, a file that changed under the upload) would leave an empty repo behind.
    ``plan`` sees the repo as it is before the commit and returns the paths to delete in
    the same commit, which is then made on top of exactly the revision it read.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    existed = api.repo_exists(repo_id, repo_type=repo_type)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type, **create_kwargs)
    try:
        if private and not api.repo_info(repo_id, repo_type=repo_type).private:
            raise HubError(f"{repo_id} already exists and is public, but --private was asked; make it private "
                           "in its settings on the Hub first, or push without --private")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        operations: list[Any] = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content
                                                    if isinstance(content, bytes) else str(content))
                                 for path, content in files.items()]
        parent = None
        if plan is not None:
            state = _read_repo(api, repo_id, repo_type, revision, want_readme=True)
            parent = state.commit
            operations += [CommitOperationDelete(path_in_repo=path) for path in plan(state)]
        api.create_commit(repo_id, operations, commit_message=message, repo_type=repo_type, revision=revision,
                          parent_commit=parent)
    except BaseException:
        if not existed:
            with contextlib.suppress(Exception):
                api.delete_repo(repo_id, repo_type=repo_type)
        raise


def stale_paths(remote: Sequence[str], files: Mapping[str, Any], base_folder: str | None = None) -> list[str]:
    """The repo's files a push of ``files`` deletes: inside the bundle's layout and not in the bundle."""
    return sorted(p for p in remote if p not in files and in_bundle_layout(p, base_folder))


def _say_deleted(paths: Sequence[str], echo: Callable[[str], None]) -> None:
    if not paths:
        return
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    echo(f"deleted {len(paths)} file{'s' if len(paths) > 1 else ''} from the repo that the bundle does not have "
         f"(in the same commit): {shown}")


def push_bundle(bundle_dir: str | os.PathLike[str], repo_id: str, private: bool = False, token: str | None = None,
                revision: str | None = None, commit_message: str | None = None,
                echo: Callable[[str], None] = print) -> str:
    """Publish a bundle folder to ``repo_id`` in one commit; return the repo URL.

    Uploads every file of the bundle (``base/`` included when the base ships inside it) plus
    a freshly generated model card, and deletes, in the same commit, the repo's files inside
    the bundle's layout that the bundle does not have (see the module docstring). The local
    folder is not modified. ``private`` applies when the repo is created; pushing with
    ``private=True`` into an existing public repo is refused rather than silently publishing.
    ``revision`` names a branch (created if needed). ``echo`` gets one line per thing the
    push did besides uploading (deletions, a README edited on the Hub replaced).
    """
    from huggingface_hub import HfApi

    from peo_hub.bundle.card import card_is_intact

    bundle = Path(bundle_dir)
    check_repo_id(repo_id)
    manifest = validate_bundle(bundle)
    action = f"push {bundle} to {repo_id}"
    token = require_token(token, action)
    files: dict[str, Path | bytes] = dict(bundle_files(bundle))
    card = _card_bytes(bundle, repo_id)
    if card is not None:
        files[CARD_NAME] = card
    readme = files[CARD_NAME] if CARD_NAME in files else None
    new_readme = readme if isinstance(readme, bytes) else readme.read_bytes() if readme is not None else None
    base_folder = manifest.base_model if (bundle / manifest.base_model).is_dir() else None
    message = commit_message or (f"Upload PEO bundle ({len(manifest.aspects)} aspects: "
                                 f"{', '.join(manifest.aspect_names)})")
    notes: list[str] = []

    def plan(state: RepoState) -> list[str]:
        if (state.readme is not None and new_readme is not None and state.readme.encode("utf-8") != new_readme
                and not card_is_intact(state.readme)):
            notes.append(f"README.md in {repo_id} was edited after peo-hub wrote it (on the Hub, or it is an earlier "
                         f"hand-written one); replaced by the bundle's own README.md. To keep edits, put them in "
                         f"{bundle / CARD_NAME} and delete its `generated by peo-hub` line")
        stale = stale_paths(state.files, files, base_folder)
        _say_deleted(stale, notes.append)
        return stale

    api = HfApi(token=token)
    with hub_errors(action, repo_id, revision=revision, writing=True):
        _publish(api, repo_id, files, message, private, revision=revision, plan=plan)
    for note in notes:
        echo(note)
    return _repo_url(api.endpoint, repo_id, revision=revision)


def push_point(bundle: str | os.PathLike[str], repo_id: str, weights: Mapping[str, float] | None = None,
               alpha: float = 0.0, coefficients: Mapping[str, float] | None = None, as_: str = "adapter",
               private: bool = False, token: str | None = None, bundle_repo_id: str | None = None) -> str:
    """Export one preference point of ``bundle`` and publish it as its own repo; return its URL.

    ``as_="adapter"``: one standard LoRA adapter (base + 1 LoRA); ``as_="model"``: a merged
    full model (mergekit). The card states weights, alpha and coefficients and links back to
    the bundle repo: ``bundle_repo_id``, or ``bundle`` itself when it is a repo id.
    """
    from huggingface_hub import HfApi

    from peo_hub.bundle.card import card_license, point_card
    from peo_hub.core.policy import make_preference
    from peo_hub.family.merge import write_point

    if as_ not in ("adapter", "model"):
        raise PEOError(f"a point is published as 'adapter' or 'model', not {as_!r} (use `peo-hub merge --as yaml` "
                       "for a mergekit config)")
    check_repo_id(repo_id)
    action = f"push a preference point to {repo_id}"
    token = require_token(token, action)
    if bundle_repo_id is None and not Path(bundle).exists() and kind_of(str(bundle), namespace=True) == "hub":
        bundle_repo_id = str(bundle)
    opened = open_bundle(bundle_folder(bundle), source=str(bundle))
    manifest = opened.manifest
    pref = make_preference(manifest.aspect_names, weights=weights, alpha=alpha, coefficients=coefficients,
                           formulation=manifest.formulation)
    with tempfile.TemporaryDirectory(prefix="peo-point-") as tmp:
        out = write_point(opened, pref, Path(tmp) / "point", as_)
        base = opened.hub_base_model
        card = point_card(aspects=manifest.aspect_names, coefficients=pref.coefficients, weights=pref.weights,
                          alpha=pref.alpha, as_=as_, bundle_repo_id=bundle_repo_id, base_model=base,
                          base_subfolder=None if base else manifest.base_model, repo_id=repo_id,
                          formulation=manifest.formulation, license=card_license(opened))
        files: dict[str, Path | bytes] = dict(bundle_files(out))
        files[CARD_NAME] = card.encode("utf-8")
        api = HfApi(token=token)
        with hub_errors(action, repo_id, writing=True):
            _publish(api, repo_id, files, f"Upload PEO point ({pref.label()}) as {as_}", private)
    return _repo_url(api.endpoint, repo_id)


def space_readme(space_repo_id: str, bundle_repo_id: str, template_readme: str | None = None) -> str:
    """The Space's README: Gradio front matter linking the bundle model, then the template's body."""
    from huggingface_hub import SpaceCardData

    body = ""
    if template_readme:
        text = template_readme
        if text.startswith("---"):
            end = text.find("\n---", 3)
            text = text[end + 4:] if end != -1 else text
        body = text.lstrip("\n")
    sdk_version = None
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        sdk_version = version("gradio")
    data = SpaceCardData(title=f"PEO: {bundle_repo_id.split('/')[-1]}", sdk="gradio", sdk_version=sdk_version,
                         app_file="app.py", models=[bundle_repo_id], tags=["peo", "preference-alignment"],
                         license="apache-2.0", emoji="🎚️", colorFrom="indigo", colorTo="pink", pinned=False,
                         short_description="Pick your own helpful/harmless trade-off at inference time")
    body = body or (f"# PEO demo\n\nChat with [`{bundle_repo_id}`](https://huggingface.co/{bundle_repo_id}) "
                    "and move one slider per preference aspect.\n")
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def package_files() -> dict[str, Path]:
    """The installed ``peo_hub`` package's source, as Space repo paths (``peo_hub/...``).

    Shipping the package inside the Space makes it deployable as is: the Space's
    requirements.txt lists only third-party packages from PyPI, and ``app.py`` imports the
    exact peo-hub version that wrote the bundle, not whatever a package index serves.
    """
    import peo_hub

    root = Path(peo_hub.__file__).resolve().parent
    return {
        f"peo_hub/{path.relative_to(root).as_posix()}": path
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".typed", ".json"}
    }


def push_space(space_repo_id: str, bundle_repo_id: str, private: bool = False, token: str | None = None,
               space_dir: str | os.PathLike[str] | None = None) -> str:
    """Publish the demo Space (``spaces/peo-demo/``) loading ``bundle_repo_id``; return its URL.

    The bundle is named in ``peo_space.json`` (``{"bundle": ...}``) and in the README's
    ``models:`` list (the Hub links the Space to the model); the app reads ``PEO_BUNDLE``
    from the environment first, then ``peo_space.json``.
    """
    import json

    from huggingface_hub import HfApi

    folder = Path(space_dir) if space_dir is not None else SPACE_TEMPLATE
    if not (folder / "app.py").is_file():
        raise PEOError(f"the Space template {folder} is missing (no app.py); it ships with the peo-hub source "
                       "checkout, so run `peo-hub push --space` from a clone of the repository")
    check_repo_id(space_repo_id, "Space id")
    check_repo_id(bundle_repo_id)
    action = f"publish the Space {space_repo_id}"
    token = require_token(token, action)
    files: dict[str, Path | bytes] = dict(bundle_files(folder))
    template = (folder / "README.md").read_text(encoding="utf-8") if (folder / "README.md").is_file() else None
    files["README.md"] = space_readme(space_repo_id, bundle_repo_id, template).encode("utf-8")
    files[SPACE_CONFIG_NAME] = (json.dumps({"bundle": bundle_repo_id}, indent=2) + "\n").encode("utf-8")
    files.update(package_files())
    api = HfApi(token=token)
    with hub_errors(action, space_repo_id, writing=True):
        _publish(api, space_repo_id, files, f"Deploy the PEO demo for {bundle_repo_id}", private,
                 repo_type="space", space_sdk="gradio")
    return _repo_url(api.endpoint, space_repo_id, repo_type="space")
