"""Hub publishing: push a bundle (one commit), pull it back, export one point, deploy the Space.

Why one commit: a bundle is only usable whole (manifest + every adapter + base), so a push
that dies half way must leave the repo exactly as it was. ``HfApi.create_commit`` uploads
LFS/Xet blobs first and then makes a single commit that references them; if anything fails
before that commit, the repo's history is unchanged.

Why the local bundle is never written: pushing must work from a read-only copy and must
not change what the user has on disk. The model card is generated in memory and added to
the commit; a README.md that a person wrote (without peo-hub's marker) is uploaded as it is.
Use :func:`peo_hub.card.write_model_card` to write the card locally.

Every Hub failure becomes one :class:`~peo_hub.errors.HubError` line (exit code 3) that
names the problem and the fix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from peo_hub.bundle import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CARD_NAME, MANIFEST_NAME, open_bundle, validate_bundle
from peo_hub.errors import BundleError, HubError, PEOError
from peo_hub.ids import HubRef, check_repo_id, kind_of

TOKEN_HELP = "run `hf auth login` or set HF_TOKEN"
SPACE_TEMPLATE = Path(__file__).resolve().parents[1] / "spaces" / "peo-demo"
SPACE_CONFIG_NAME = "peo_space.json"


# --------------------------------------------------------------------------- errors


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _first_line(exc: BaseException) -> str:
    server = getattr(exc, "server_message", None)
    text = (server or str(exc) or type(exc).__name__).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def _network_cause(exc: BaseException) -> BaseException | None:
    """The transport-level error in an exception chain (connection refused/reset, timeout)."""
    import httpx2

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return current
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def hub_errors(action: str, repo_id: str, revision: str | None = None, writing: bool = False) -> Iterator[None]:
    """Translate huggingface_hub/httpx failures inside the block into one-line HubErrors.

    ``writing``: the block publishes, so a failure also says that nothing was published.
    """
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _endpoint()
    nothing = "; nothing was published (the push is one commit), re-run the same command" if writing else ""
    try:
        yield
    except PEOError:
        raise
    except LocalTokenNotFoundError:
        raise HubError(f"cannot {action}: no Hugging Face token found; {TOKEN_HELP}") from None
    except HFValidationError as exc:
        raise HubError(f"cannot {action}: {repo_id!r} is not a valid repo id ({_first_line(exc)}); "
                       "use namespace/name, e.g. alice/peo-toy") from None
    except OfflineModeIsEnabled:
        raise HubError(f"cannot {action}: HF_HUB_OFFLINE=1 is set; unset it to reach the Hub") from None
    except GatedRepoError:
        raise HubError(f"cannot {action}: {repo_id} is gated; accept its conditions at {where}/{repo_id} "
                       "and use a token of that account") from None
    except RevisionNotFoundError:
        raise HubError(f"cannot {action}: revision {revision!r} does not exist in {repo_id}; "
                       "check the branch, tag or commit") from None
    except RepositoryNotFoundError:
        raise HubError(f"cannot {action}: {repo_id} was not found on {where} (or it is private and this token "
                       f"cannot see it); check the repo id and the token ({TOKEN_HELP})") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise HubError(f"cannot {action}: the Hub at {where} refused the token (401 Unauthorized); "
                           "set HF_TOKEN to a valid token or run `hf auth login`") from None
        if status == 403:
            namespace = repo_id.split("/")[0]
            raise HubError(f"cannot {action}: no permission to write to {repo_id} (403 Forbidden: "
                           f"{_first_line(exc)}); use a token with write access to '{namespace}', "
                           "or push to your own namespace") from None
        raise HubError(f"cannot {action}: the Hub answered {status}: {_first_line(exc)}{nothing}") from None
    except LocalEntryNotFoundError as exc:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise HubError(f"cannot {action}: HF_HUB_OFFLINE=1 is set and {repo_id} is not in the local cache; "
                           "unset HF_HUB_OFFLINE to download it, or pass a local bundle folder") from None
        cause = _network_cause(exc)
        raise HubError(f"cannot {action}: the Hub at {where} is unreachable "
                       f"({type(cause or exc).__name__}) and {repo_id} is not in the local cache; "
                       "check your connection or HF_ENDPOINT") from None
    except Exception as exc:
        if writing and isinstance(exc, OSError) and _network_cause(exc) is None:
            raise BundleError(f"cannot {action}: reading a file to upload failed ({_first_line(exc)}); a file changed "
                              f"or disappeared during the push{nothing}, when nothing else writes to the "
                              "folder") from None
        if isinstance(exc, ValueError) and "Invalid metadata in README.md" in str(exc):
            details = "; ".join(line.lstrip("- ").strip() for line in str(exc).splitlines()[1:] if line.strip())
            raise HubError(f"cannot {action}: the Hub rejected the metadata of README.md ({details or 'invalid'}); "
                           "fix the YAML block at the top of README.md, or delete README.md to get a "
                           f"generated card{nothing}") from None
        cause = _network_cause(exc)
        if cause is None:
            raise
        raise HubError(f"cannot {action}: network failure talking to {where} ({type(cause).__name__}: "
                       f"{_first_line(cause)}){nothing or '; check your connection or HF_ENDPOINT and retry'}"
                       ) from None


def require_token(token: str | None, action: str) -> str:
    """An explicit token, else HF_TOKEN / the stored login; a push without one fails early and clearly."""
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise HubError(f"cannot {action}: no Hugging Face token found; {TOKEN_HELP}")
    return found


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
    from peo_hub.card import is_generated_card, render_model_card

    readme = bundle / CARD_NAME
    if readme.is_file() and not is_generated_card(readme.read_text(encoding="utf-8", errors="replace")):
        return None  # keep the user's own card, uploaded from disk as is
    return render_model_card(bundle, repo_id=repo_id).encode("utf-8")


def _repo_url(endpoint: str, repo_id: str, repo_type: str = "model", revision: str | None = None) -> str:
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    url = f"{endpoint}/{prefix}{repo_id}"
    return f"{url}/tree/{revision}" if revision and revision != "main" else url


def _publish(api: Any, repo_id: str, files: Mapping[str, Path | bytes], message: str, private: bool,
             repo_type: str = "model", revision: str | None = None, **create_kwargs: Any) -> None:
    """Create the repo if needed and make one commit; a repo this call created is removed if the commit fails.

    ``private`` applies when the repo is created; publishing into an existing public repo
    when private was asked is refused. Without the clean-up a failed first push (a dropped
    connection, a file that changed under the upload) would leave an empty repo behind.
    """
    from huggingface_hub import CommitOperationAdd

    existed = api.repo_exists(repo_id, repo_type=repo_type)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type, **create_kwargs)
    try:
        if private and not api.repo_info(repo_id, repo_type=repo_type).private:
            raise HubError(f"{repo_id} already exists and is public, but --private was asked; make it private "
                           "in its settings on the Hub first, or push without --private")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes)
                                         else str(content)) for path, content in files.items()]
        api.create_commit(repo_id, operations, commit_message=message, repo_type=repo_type, revision=revision)
    except BaseException:
        if not existed:
            with contextlib.suppress(Exception):
                api.delete_repo(repo_id, repo_type=repo_type)
        raise


# --------------------------------------------------------------------------- public API


def push_bundle(bundle_dir: str | os.PathLike[str], repo_id: str, private: bool = False, token: str | None = None,
                revision: str | None = None, commit_message: str | None = None) -> str:
    """Publish a bundle folder to ``repo_id`` in one commit; return the repo URL.

    Uploads every file of the bundle (``base/`` included when the base ships inside it) plus
    a freshly generated model card. The local folder is not modified. ``private`` applies
    when the repo is created; pushing with ``private=True`` into an existing public repo is
    refused rather than silently publishing. ``revision`` names a branch (created if needed).
    """
    from huggingface_hub import HfApi

    bundle = Path(bundle_dir)
    check_repo_id(repo_id)
    manifest = validate_bundle(bundle)
    action = f"push {bundle} to {repo_id}"
    token = require_token(token, action)
    files: dict[str, Path | bytes] = dict(bundle_files(bundle))
    card = _card_bytes(bundle, repo_id)
    if card is not None:
        files["README.md"] = card
    message = commit_message or (f"Upload PEO bundle ({len(manifest.aspects)} aspects: "
                                 f"{', '.join(manifest.aspect_names)})")
    api = HfApi(token=token)
    with hub_errors(action, repo_id, revision=revision, writing=True):
        _publish(api, repo_id, files, message, private, revision=revision)
    return _repo_url(api.endpoint, repo_id, revision=revision)


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
    the one place a bundle name meets the network; :func:`peo_hub.bundle.open_bundle` then
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


def _commit_of(snapshot: Path) -> str | None:
    """The commit a ``snapshot_download`` folder holds (the cache names it ``snapshots/<sha>``)."""
    name = snapshot.name
    return name if len(name) == 40 and all(c in "0123456789abcdef" for c in name) else None


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


def download_model(repo_id: str, revision: str | None = None, config_only: bool = False,
                   token: str | None = None) -> tuple[Path, str | None]:
    """A Hub model as a local folder (or just its ``config.json``), and the commit it resolved to.

    ``config_only`` is what composing needs to check module shapes against a Hub base; the
    GGUF export needs the whole model (weights and tokenizer).
    """
    from huggingface_hub import snapshot_download

    patterns = ["config.json"] if config_only else ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
    with hub_errors(f"download the base model {repo_id}", repo_id, revision=revision):
        snapshot = Path(snapshot_download(repo_id, revision=revision, token=token, allow_patterns=patterns))
    if not (snapshot / "config.json").is_file():
        raise BundleError(f"{repo_id} has no config.json, so it is not a transformers model; check the base model id")
    return snapshot, _commit_of(snapshot)


def download_file(repo_id: str, filename: str, revision: str | None = None,
                  token: str | None = None) -> tuple[Path, str | None]:
    """One file of a Hub model repo (e.g. a GGUF base), and the commit it resolved to."""
    from huggingface_hub import hf_hub_download

    with hub_errors(f"download {filename} from {repo_id}", repo_id, revision=revision):
        path = Path(hf_hub_download(repo_id, filename, revision=revision, token=token))
    snapshot = path.parent
    while snapshot.parent.name != "snapshots" and snapshot != snapshot.parent:
        snapshot = snapshot.parent
    return path, _commit_of(snapshot)


def push_point(bundle: str | os.PathLike[str], repo_id: str, weights: Mapping[str, float] | None = None,
               alpha: float = 0.0, coefficients: Mapping[str, float] | None = None, as_: str = "adapter",
               private: bool = False, token: str | None = None, bundle_repo_id: str | None = None) -> str:
    """Export one preference point of ``bundle`` and publish it as its own repo; return its URL.

    ``as_="adapter"``: one standard LoRA adapter (base + 1 LoRA); ``as_="model"``: a merged
    full model (mergekit). The card states weights, alpha and coefficients and links back to
    the bundle repo: ``bundle_repo_id``, or ``bundle`` itself when it is a repo id.
    """
    from huggingface_hub import HfApi

    from peo_hub.card import point_card
    from peo_hub.export import write_point
    from peo_hub.policy import make_preference

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
                          formulation=manifest.formulation)
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
