"""Talking to the Hub, for both directions: errors a person can act on, the token, downloads.

Every Hub call of peo-hub (pulling a bundle, a base, an adapter, a GGUF file; publishing)
runs inside :func:`hub_errors`, which turns huggingface_hub's and httpx's exceptions into
one :class:`~peo_hub.utils.errors.HubError` line naming the repo, the action and the fix
(log in, check the id, the revision, the connection). Downloads live here rather than with
publishing so that loading a bundle (:mod:`peo_hub.bundle.pull`, ``PEOModel``) never
depends on the code that publishes one (:mod:`peo_hub.publish.hub`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from peo_hub.utils.errors import BundleError, HubError, PEOError, first_line

TOKEN_HELP = "run `hf auth login` or set HF_TOKEN"


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


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
        raise HubError(f"cannot {action}: {repo_id!r} is not a valid repo id ({first_line(exc)}); "
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
                           f"{first_line(exc)}); use a token with write access to '{namespace}', "
                           "or push to your own namespace") from None
        raise HubError(f"cannot {action}: the Hub answered {status}: {first_line(exc)}{nothing}") from None
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
            raise BundleError(f"cannot {action}: reading a file to upload failed ({first_line(exc)}); a file changed "
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
                       f"{first_line(cause)}){nothing or '; check your connection or HF_ENDPOINT and retry'}"
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


def _repo_url(endpoint: str, repo_id: str, repo_type: str = "model", revision: str | None = None) -> str:
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    url = f"{endpoint}/{prefix}{repo_id}"
    return f"{url}/tree/{revision}" if revision and revision != "main" else url


def _commit_of(snapshot: Path) -> str | None:
    """The commit a ``snapshot_download`` folder holds (the cache names it ``snapshots/<sha>``)."""
    name = snapshot.name
    return name if len(name) == 40 and all(c in "0123456789abcdef" for c in name) else None


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
