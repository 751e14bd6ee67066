"""A Hub-compatible HTTP server for tests: the routes that huggingface_hub, transformers and peft really call.

Why our own: publishing is only trustworthy if it is tested end to end (real client, real
HTTP, real cache), and the tests must run offline. Each route below was taken from the
client source in the venv (huggingface_hub 2.4 ``hf_api.py``, ``_commit_api.py``,
``lfs.py``, ``file_download.py``, ``_snapshot_download.py``; transformers 5
``utils/hub.py``; peft 0.21 ``utils/save_and_load.py``); any other route answers 404 and
is recorded in :attr:`HubState.unhandled`, so a test can prove the clients needed nothing
else.

Covered upload paths: *regular* files (base64 inside the ndjson commit) and *LFS* files
(batch API, "basic" transfer: a presigned PUT without auth, then verify). *Xet* (the
real Hub's default when ``hf_xet`` is installed) is not spoken: clients must run with
``HF_HUB_DISABLE_XET=1``, which ``tests/conftest.py`` sets.

Downloads: ``/resolve/`` serves regular files directly (ETag = git blob sha1) and answers
LFS files with a 302 to a second port, the "CDN", carrying ``X-Linked-Etag`` (sha256) and
``X-Linked-Size`` as the real Hub does; the client must follow it without its token.

Auth: ``Authorization: Bearer <token>``; an unknown token is 401 on every route; private
repos are 404 to anyone but their owner; writing into another namespace is 403, and so is
any write with a read-only token. Storage is in memory; commit ids are sha1s.

Run it by hand with ``python tests/support/hub_server.py`` (prints the endpoint and tokens).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import re
import secrets
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# --------------------------------------------------------------------------- users

ALICE_TOKEN = "hf_test_alice_write"
BOB_TOKEN = "hf_test_bob_write"
ALICE_READ_TOKEN = "hf_test_alice_read"


@dataclass(frozen=True)
class User:
    name: str
    role: str  # "write" or "read": the token's scope, as in whoami-v2's auth.accessToken.role


DEFAULT_TOKENS: dict[str, User] = {
    ALICE_TOKEN: User("alice", "write"),
    BOB_TOKEN: User("bob", "write"),
    ALICE_READ_TOKEN: User("alice", "read"),
}

# --------------------------------------------------------------------------- storage

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Same defaults as the .gitattributes the Hub writes into a new repo (abridged).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf",
                ".npy", ".npz", ".pkl", ".pickle", ".zip", ".gz", ".tar", ".parquet", ".arrow")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    """``git hash-object``: what the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class FileEntry:
    """One file in a commit: regular files keep their bytes, LFS files point into the LFS store."""

    size: int
    git_oid: str  # sha1 of the blob (regular) or of the LFS pointer (LFS)
    data: bytes | None = None  # regular files only
    lfs_oid: str | None = None  # sha256 of the content, LFS files only

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.lfs_oid or "", self.size))


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    date: str
    files: dict[str, FileEntry]


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    sdk: str | None = None
    created: str = field(default_factory=_now)
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.id.split("/")[0]

    def resolve(self, revision: str) -> Commit | None:
        """A branch name, a full commit sha, or a unique prefix of one (>= 7 chars)."""
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if revision in self.commits:
            return self.commits[revision]
        if len(revision) >= 7:
            hits = [c for oid, c in self.commits.items() if oid.startswith(revision)]
            if len(hits) == 1:
                return hits[0]
        return None


class HubState:
    """Everything the server knows. Mutations happen under :attr:`lock`."""

    def __init__(self, tokens: dict[str, User] | None = None) -> None:
        self.lock = threading.RLock()
        self.tokens = dict(tokens or DEFAULT_TOKENS)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.repos: dict[tuple[str, str], Repo] = {}
            self.lfs: dict[str, bytes] = {}  # sha256 -> content
            self.upload_tickets: dict[str, tuple[str, int]] = {}  # ticket -> (oid, size)
            self.requests: list[tuple[str, str, int]] = []  # (method, path, status), in order
            self.unhandled: list[str] = []  # "METHOD path" of routes this server does not speak
            self.cdn_auth_leaks: list[str] = []  # CDN requests that carried an Authorization header
            self.failures: dict[str, int] = {}  # route kind -> how many next requests to drop

    def fail_next(self, kind: str, times: int = 1) -> None:
        """Drop the connection (TCP reset, no response) on the next ``times`` requests of ``kind``.

        Kinds: ``commit``, ``preupload``, ``lfs_batch``, ``lfs_upload``, ``create``, ``resolve``.
        The request body is read first, so the client has sent everything: a mid-upload failure.
        """
        with self.lock:
            self.failures[kind] = self.failures.get(kind, 0) + times

    def _take_failure(self, kind: str) -> bool:
        with self.lock:
            left = self.failures.get(kind, 0)
            if left <= 0:
                return False
            self.failures[kind] = left - 1
            return True

    def make_commit(self, repo: Repo, files: dict[str, FileEntry], title: str, description: str = "",
                    branch: str = "main") -> Commit:
        parent = repo.branches.get(branch)
        digest = hashlib.sha1()
        digest.update(json.dumps([parent, title, description, _now(), secrets.token_hex(8)]).encode())
        for path in sorted(files):
            digest.update(f"{path}\0{files[path].git_oid}\n".encode())
        commit = Commit(oid=digest.hexdigest(), parent=parent, title=title, description=description,
                        date=_now(), files=dict(files))
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit


# --------------------------------------------------------------------------- HTTP plumbing


class HubHTTPError(Exception):
    """Raised by route handlers; turned into a JSON error with the Hub's X-Error-* headers."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.body = body or {}


class _DropConnection(Exception):
    """Close the socket with a TCP reset instead of answering (failure injection)."""


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), headers or {})


def _front_matter(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """(metadata, error) of a README's YAML block, as the Hub reads it for cardData."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.S)
    if not match:
        return None, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return None, f"Invalid YAML in README.md metadata: {str(exc).splitlines()[0]}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return None, "README.md metadata must be a YAML mapping"
    return data, None


def _card_errors(meta: dict[str, Any]) -> list[str]:
    """The subset of the Hub's metadata checks that catches real mistakes in generated cards."""
    errors = []

    def str_or_list(key: str) -> None:
        value = meta.get(key)
        if value is None:
            return
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) and v for v in values):
            errors.append(f'"{key}" must be a string or a list of non-empty strings')

    for key in ("tags", "datasets", "base_model", "language", "metrics"):
        str_or_list(key)
    for key in ("license", "library_name", "pipeline_tag", "base_model_relation", "sdk"):
        if key in meta and not isinstance(meta[key], str):
            errors.append(f'"{key}" must be a string')
    relation = meta.get("base_model_relation")
    if relation is not None and relation not in ("adapter", "merge", "quantized", "finetune"):
        errors.append('"base_model_relation" must be one of adapter, merge, quantized, finetune')
    if relation is not None and not meta.get("base_model"):
        errors.append('"base_model_relation" needs "base_model"')
    return errors


def _card_tags(meta: dict[str, Any]) -> list[str]:
    """Tags as the Hub derives them for model_info: card tags + library, datasets, license, base."""
    def as_list(value: Any) -> list[str]:
        return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]

    tags = as_list(meta.get("tags"))
    if isinstance(meta.get("library_name"), str):
        tags.append(meta["library_name"])
    tags += [f"dataset:{d}" for d in as_list(meta.get("datasets"))]
    if isinstance(meta.get("license"), str):
        tags.append(f"license:{meta['license']}")
    for base in as_list(meta.get("base_model")):
        if isinstance(meta.get("base_model_relation"), str):
            tags.append(f"base_model:{meta['base_model_relation']}:{base}")
        tags.append(f"base_model:{base}")
    return list(dict.fromkeys(tags))


class HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request. ``self.server.hub`` is the :class:`HubServer` that owns the state."""

    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from the Hub
    server_version = "peo-test-hub/1"

    # ---- infrastructure

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: the request log lives in HubState.requests

    @property
    def hub(self) -> "HubServer":
        return self.server.hub  # type: ignore[attr-defined]

    @property
    def state(self) -> HubState:
        return self.hub.state

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self.query_all = parse_qs(url.query, keep_blank_values=True)
        self.raw_segments = url.path.split("/")[1:]
        self.method = method
        try:
            self.body = self._read_body()
            response = self.route(method, self.raw_segments)
        except _DropConnection:
            self.state.requests.append((method, url.path, 0))
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        except HubHTTPError as err:
            headers = dict(err.headers)
            headers["X-Error-Message"] = err.message
            if err.code:
                headers["X-Error-Code"] = err.code
            response = _json({**err.body, "error": err.message}, err.status, headers)
        except Exception as exc:  # a server bug: answer 500 with the reason, never hang the client
            response = _json({"error": f"test hub internal error: {type(exc).__name__}: {exc}"}, 500)
        self.state.requests.append((method, url.path, response.status))
        self._send(response, head=(method == "HEAD"))

    def _send(self, response: Response, head: bool = False) -> None:
        self.send_response(response.status)
        headers = {"Content-Type": response.content_type, **response.headers}
        headers["Content-Length"] = str(len(response.body))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head and response.body:
            self.wfile.write(response.body)

    def _drop_if_failing(self, kind: str) -> None:
        if self.state._take_failure(kind):
            raise _DropConnection()

    # ---- auth

    def user(self) -> User | None:
        """The token's user; an Authorization header with an unknown token is always 401."""
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        user = self.state.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        return user

    def require_user(self) -> User:
        user = self.user()
        if user is None:
            raise HubHTTPError(401, "You must be authenticated to access this resource; pass a token")
        return user

    def find_repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        """The repo if this request may see it (404 otherwise) and, with ``write``, modify it (403)."""
        user = self.user()
        repo = self.state.repos.get((repo_type, repo_id))
        visible = repo is not None and (not repo.private or (user is not None and user.name == repo.owner))
        if not visible:
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        assert repo is not None
        if write:
            if user is None:
                raise HubHTTPError(401, "You must be authenticated to write to this repository")
            if user.name != repo.owner:
                raise HubHTTPError(403, f"You don't have the rights to write to {repo_type} {repo_id}")
            if user.role != "write":
                raise HubHTTPError(403, "This token has read-only access; use a token with write access")
        return repo

    def commit_of(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ---- URLs

    @property
    def base(self) -> str:
        return self.hub.endpoint

    def repo_url(self, repo: Repo) -> str:
        return f"{self.base}/{URL_PREFIX[repo.type]}{repo.id}"

    # ---- router

    def route(self, method: str, raw: list[str]) -> Response:
        seg = [unquote(s) for s in raw]
        if self.hub.is_cdn:
            if method in ("GET", "HEAD") and len(seg) == 2 and seg[0] == "lfs":
                return self.cdn_get(seg[1])
            return self.unhandled()
        if seg[:1] == ["api"]:
            return self.route_api(method, raw[1:], seg[1:])
        if method == "PUT" and len(seg) == 2 and seg[0] == "lfs-upload":
            return self.lfs_put(seg[1])
        # /[datasets/|spaces/]{ns}/{name}/resolve/{rev}/{path} and .../{name}.git/info/lfs/objects/...
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg, raw = REPO_TYPES[seg[0]], seg[1:], raw[1:]
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self.resolve(repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]), head=(method == "HEAD"))
        if len(seg) == 6 and seg[1].endswith(".git") and seg[2:5] == ["info", "lfs", "objects"] and method == "POST":
            repo_id = f"{seg[0]}/{seg[1][:-4]}"
            if seg[5] == "batch":
                return self.lfs_batch(repo_type, repo_id)
            if seg[5] == "verify":
                return self.lfs_verify(repo_type, repo_id)
        return self.unhandled()

    def route_api(self, method: str, raw: list[str], seg: list[str]) -> Response:
        if seg == ["whoami-v2"] and method == "GET":
            return self.whoami()
        if seg == ["repos", "create"] and method == "POST":
            return self.create_repo()
        if seg == ["repos", "delete"] and method == "DELETE":
            return self.delete_repo()
        if seg == ["validate-yaml"] and method == "POST":
            return self.validate_yaml()
        if seg == ["agent-harnesses"] and method == "GET":
            # huggingface_hub's user-agent detection fetches this registry (utils/_detect_agent.py)
            return _json({"standardEnvVars": [], "harnesses": {}})
        if len(seg) >= 3 and seg[0] in REPO_TYPES:
            repo_type, repo_id, rest, raw_rest = REPO_TYPES[seg[0]], f"{seg[1]}/{seg[2]}", seg[3:], raw[3:]
            if not rest and method == "GET":
                return self.repo_info(repo_type, repo_id, "main")
            if len(rest) == 2 and rest[0] == "revision" and method == "GET":
                return self.repo_info(repo_type, repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "preupload" and method == "POST":
                return self.preupload(repo_type, repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "commit" and method == "POST":
                return self.commit(repo_type, repo_id, rest[1])
            if len(rest) >= 2 and rest[0] == "tree" and method == "GET":
                # the client quotes the path with safe="": one segment; also accept plain slashes
                return self.tree(repo_type, repo_id, rest[1], "/".join(unquote(s) for s in raw_rest[2:]))
            if len(rest) == 2 and rest[0] == "paths-info" and method == "POST":
                return self.paths_info(repo_type, repo_id, rest[1])
            if len(rest) == 2 and rest[0] == "branch" and method == "POST":
                return self.create_branch(repo_type, repo_id, rest[1])
            if rest == ["refs"] and method == "GET":
                return self.refs(repo_type, repo_id)
        return self.unhandled()

    def unhandled(self) -> NoReturn:
        self.state.unhandled.append(f"{self.method} {self.path}")
        raise HubHTTPError(404, f"route not implemented by the test Hub: {self.method} {urlsplit(self.path).path}")

    # ---- account and repos

    def whoami(self) -> Response:
        user = self.user()
        if user is None:
            raise HubHTTPError(401, "Invalid username or password.")
        return _json({
            "type": "user", "id": hashlib.md5(user.name.encode()).hexdigest()[:24], "name": user.name,
            "fullname": user.name.title(), "email": f"{user.name}@example.test", "emailVerified": True,
            "isPro": False, "orgs": [],
            "auth": {"type": "access_token",
                     "accessToken": {"displayName": f"{user.name}-{user.role}", "role": user.role}},
        })

    def _json_body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except json.JSONDecodeError as exc:
            raise HubHTTPError(400, f"request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise HubHTTPError(400, "request body must be a JSON object")
        return data

    def create_repo(self) -> Response:
        self._drop_if_failing("create")
        user = self.require_user()
        data = self._json_body()
        repo_type = data.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HubHTTPError(400, f"invalid repo type {repo_type!r}")
        name, namespace = data.get("name"), data.get("organization") or user.name
        if not isinstance(name, str) or not NAME_RE.match(name) or "--" in name or ".." in name:
            raise HubHTTPError(400, f"invalid repo name {name!r}")
        if namespace != user.name:
            raise HubHTTPError(403, f"You don't have the rights to create a {repo_type} "
                                    f'under the namespace "{namespace}"')
        if user.role != "write":
            raise HubHTTPError(403, "This token has read-only access; use a token with write access")
        if repo_type == "space" and data.get("sdk") not in ("gradio", "streamlit", "docker", "static"):
            raise HubHTTPError(400, "a Space needs an sdk: gradio, streamlit, docker or static")
        repo_id = f"{namespace}/{name}"
        private = data.get("visibility", "private" if data.get("private") else "public") == "private"
        with self.state.lock:
            existing = self.state.repos.get((repo_type, repo_id))
            if existing is not None:
                # the client reads "url" from this 409 body when exist_ok=True
                raise HubHTTPError(409, f"You already created this {repo_type} repo",
                                   body={"url": self.repo_url(existing)})
            repo = Repo(type=repo_type, id=repo_id, private=private, sdk=data.get("sdk"))
            files = {".gitattributes": FileEntry(len(GITATTRIBUTES), git_blob_oid(GITATTRIBUTES), GITATTRIBUTES)}
            self.state.make_commit(repo, files, "initial commit")
            self.state.repos[(repo_type, repo_id)] = repo
        return _json({"url": self.repo_url(repo), "name": repo_id, "id": repo_id})

    def delete_repo(self) -> Response:
        user = self.require_user()
        data = self._json_body()
        repo_type = data.get("type") or "model"
        repo_id = f"{data.get('organization') or user.name}/{data.get('name')}"
        with self.state.lock:
            self.find_repo(repo_type, repo_id, write=True)
            del self.state.repos[(repo_type, repo_id)]
        return Response(200, b"", content_type="text/plain")

    def repo_info(self, repo_type: str, repo_id: str, revision: str) -> Response:
        with self.state.lock:
            repo = self.find_repo(repo_type, repo_id)
            commit = self.commit_of(repo, revision)
        blobs = self.query.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs_oid:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.lfs_oid, "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        meta: dict[str, Any] = {}
        readme = commit.files.get("README.md")
        if readme is not None and readme.data is not None:
            meta = _front_matter(readme.data.decode("utf-8", "replace"))[0] or {}
        info: dict[str, Any] = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo.owner,
            "sha": commit.oid, "lastModified": commit.date, "createdAt": repo.created, "private": repo.private,
            "gated": False, "disabled": False, "likes": 0, "tags": _card_tags(meta), "siblings": siblings,
            "cardData": meta or None, "usedStorage": sum(e.size for e in commit.files.values()),
        }
        if repo_type == "model":
            info.update(downloads=0, library_name=meta.get("library_name"), pipeline_tag=meta.get("pipeline_tag"),
                        spaces=[])
        if repo_type == "space":
            info.update(sdk=repo.sdk, subdomain=repo_id.replace("/", "-"), models=[], datasets=[])
        return _json(info)

    def create_branch(self, repo_type: str, repo_id: str, branch: str) -> Response:
        start = self._json_body().get("startingPoint")
        with self.state.lock:
            repo = self.find_repo(repo_type, repo_id, write=True)
            if branch in repo.branches:
                raise HubHTTPError(409, f"Reference {branch} already exists")
            repo.branches[branch] = self.commit_of(repo, start or "main").oid
        return _json({})

    def refs(self, repo_type: str, repo_id: str) -> Response:
        with self.state.lock:
            repo = self.find_repo(repo_type, repo_id)
            branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in repo.branches.items()]
        return _json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def validate_yaml(self) -> Response:
        self.user()  # an invalid token is refused here too, as everywhere
        data = self._json_body()
        meta, error = _front_matter(str(data.get("content", "")))
        errors = [error] if error else _card_errors(meta or {})
        warnings = [] if meta or error else [{"message": "empty or missing yaml metadata in repo card"}]
        status = 400 if errors else 200
        return _json({"errors": [{"message": e} for e in errors], "warnings": warnings}, status)

    # ---- listing

    def _tree_entry(self, path: str, entry: FileEntry) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
        if entry.lfs_oid:
            item["lfs"] = {"oid": entry.lfs_oid, "size": entry.size, "pointerSize": entry.pointer_size}
        return item

    @staticmethod
    def _folder_entry(path: str, files: dict[str, FileEntry]) -> dict[str, Any]:
        inside = sorted(f"{p}:{e.git_oid}" for p, e in files.items() if p.startswith(path + "/"))
        return {"type": "directory", "oid": hashlib.sha1("\n".join(inside).encode()).hexdigest(), "size": 0,
                "path": path}

    def tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
        with self.state.lock:
            repo = self.find_repo(repo_type, repo_id)
            commit = self.commit_of(repo, revision)
        files = commit.files
        prefix = path.strip("/")
        if prefix and not any(p.startswith(prefix + "/") for p in files):
            raise HubHTTPError(404, f"{prefix} does not exist on {revision}", "EntryNotFound",
                               {"X-Repo-Commit": commit.oid})
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        base = prefix + "/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for p, entry in files.items():
            if not p.startswith(base):
                continue
            parts = p[len(base):].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                if depth > 1 and not recursive:
                    break
                folder = base + "/".join(parts[:depth])
                entries.setdefault(folder, self._folder_entry(folder, files))
            if recursive or len(parts) == 1:
                entries[p] = self._tree_entry(p, entry)
        return _json([entries[k] for k in sorted(entries)])

    def paths_info(self, repo_type: str, repo_id: str, revision: str) -> Response:
        with self.state.lock:
            repo = self.find_repo(repo_type, repo_id)
            commit = self.commit_of(repo, revision)
        form = parse_qs(self.body.decode(), keep_blank_values=True)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            form = {"paths": self._json_body().get("paths", [])}
        result = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                result.append(self._tree_entry(path, commit.files[path]))
            elif any(p.startswith(path + "/") for p in commit.files):
                result.append(self._folder_entry(path, commit.files))
        return _json(result)

    # ---- uploads

    @staticmethod
    def _is_lfs(path: str, size: int, sample: bytes) -> bool:
        return path.lower().endswith(LFS_SUFFIXES) or size >= LFS_SIZE_THRESHOLD or b"\0" in sample

    def preupload(self, repo_type: str, repo_id: str, revision: str) -> Response:
        self._drop_if_failing("preupload")
        with self.state.lock:
            repo = self.find_repo(repo_type, repo_id, write=True)
            commit = self.commit_of(repo, revision)
        files = []
        for item in self._json_body().get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            mode = "lfs" if self._is_lfs(item["path"], int(item["size"]), sample) else "regular"
            remote = commit.files.get(item["path"])
            oid = None
            if remote is not None:  # lets the client skip unchanged files
                oid = remote.lfs_oid if mode == "lfs" else (None if remote.lfs_oid else remote.git_oid)
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return _json({"files": files, "commitOid": commit.oid})

    def lfs_batch(self, repo_type: str, repo_id: str) -> Response:
        self._drop_if_failing("lfs_batch")
        with self.state.lock:
            self.find_repo(repo_type, repo_id, write=True)
        data = self._json_body()
        if data.get("operation") != "upload":
            raise HubHTTPError(400, "the test Hub only serves LFS uploads through the batch API")
        if "basic" not in data.get("transfers", ["basic"]):
            raise HubHTTPError(400, "the test Hub only speaks the 'basic' LFS transfer")
        objects = []
        for obj in data.get("objects", []):
            oid, size = str(obj.get("oid")), int(obj.get("size", -1))
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or size < 0:
                objects.append({"oid": oid, "size": max(size, 0), "error": {"code": 422, "message": "bad oid or size"}})
                continue
            if oid in self.state.lfs:
                objects.append({"oid": oid, "size": size})  # already stored: no actions
                continue
            ticket = secrets.token_urlsafe(16)
            with self.state.lock:
                self.state.upload_tickets[ticket] = (oid, size)
            objects.append({
                "oid": oid, "size": size, "authenticated": True,
                "actions": {
                    "upload": {"href": f"{self.base}/lfs-upload/{ticket}", "expires_in": 3600},
                    "verify": {"href": f"{self.base}/{URL_PREFIX[repo_type]}{repo_id}.git/info/lfs/objects/verify",
                               "expires_in": 3600},
                },
            })
        return Response(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                        content_type="application/vnd.git-lfs+json")

    def lfs_put(self, ticket: str) -> Response:
        """The presigned "S3" PUT: no token, the ticket in the URL is the authorisation."""
        self._drop_if_failing("lfs_upload")
        with self.state.lock:
            expected = self.state.upload_tickets.pop(ticket, None)
        if expected is None:
            raise HubHTTPError(403, "upload URL expired or unknown")
        oid, size = expected
        if len(self.body) != size or hashlib.sha256(self.body).hexdigest() != oid:
            raise HubHTTPError(400, f"uploaded content does not match oid {oid} / size {size}")
        with self.state.lock:
            self.state.lfs[oid] = self.body
        return Response(200, b"", {"ETag": f'"{oid}"'}, content_type="text/plain")

    def lfs_verify(self, repo_type: str, repo_id: str) -> Response:
        with self.state.lock:
            self.find_repo(repo_type, repo_id, write=True)
        data = self._json_body()
        stored = self.state.lfs.get(str(data.get("oid")))
        if stored is None or len(stored) != data.get("size"):
            raise HubHTTPError(404, f"LFS object {data.get('oid')} was not uploaded")
        return _json({"success": True})

    def commit(self, repo_type: str, repo_id: str, revision: str) -> Response:
        self._drop_if_failing("commit")
        if self.query.get("create_pr") in ("1", "true"):
            raise HubHTTPError(400, "pull requests are not supported by the test Hub")
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        with self.state.lock:
            repo = self.find_repo(repo_type, repo_id, write=True)
            if revision not in repo.branches:
                raise HubHTTPError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
            head = repo.commits[repo.branches[revision]]
            parent = header.get("parentCommit")
            if parent and not head.oid.startswith(parent):
                raise HubHTTPError(412, f"A commit has happened since {parent}; pull and retry")
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = str(value.get("path", "")).strip("/")
                if not path or ".." in path.split("/"):
                    raise HubHTTPError(400, f"invalid path {path!r}")
                if key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                        else str(value["content"]).encode()
                    files[path] = FileEntry(len(data), git_blob_oid(data), data)
                elif key == "lfsFile":
                    oid = value.get("oid")
                    blob = self.state.lfs.get(oid)
                    if blob is None:
                        raise HubHTTPError(422, f"LFS object {oid} for {path} was never uploaded")
                    files[path] = FileEntry(len(blob), git_blob_oid(lfs_pointer(oid, len(blob))), lfs_oid=oid)
                elif key == "deletedFile":
                    if path not in files:
                        raise HubHTTPError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    for p in [p for p in files if p.startswith(path + "/")]:
                        del files[p]
                else:
                    raise HubHTTPError(400, f"unknown commit operation {key!r}")
            commit = self.state.make_commit(repo, files, header.get("summary") or "update",
                                            header.get("description") or "", branch=revision)
        return _json({"success": True, "commitOid": commit.oid,
                      "commitUrl": f"{self.repo_url(repo)}/commit/{commit.oid}", "hookOutput": "",
                      "pullRequestUrl": None})

    # ---- downloads

    def resolve(self, repo_type: str, repo_id: str, revision: str, path: str, head: bool) -> Response:
        self._drop_if_failing("resolve")
        with self.state.lock:
            repo = self.find_repo(repo_type, repo_id)
            commit = self.commit_of(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubHTTPError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if entry.lfs_oid:
            sig = self.hub.sign(entry.lfs_oid)
            headers.update({
                "Location": f"{self.hub.cdn_endpoint}/lfs/{entry.lfs_oid}?sig={sig}",
                "ETag": f'"{entry.git_oid}"', "X-Linked-Etag": f'"{entry.lfs_oid}"',
                "X-Linked-Size": str(entry.size),
            })
            return Response(302, b"", headers, content_type="text/plain")
        headers["ETag"] = f'"{entry.git_oid}"'
        return self._content(entry.data or b"", headers)

    def _content(self, data: bytes, headers: dict[str, str]) -> Response:
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else len(data) - 1
            else:
                start, end = max(len(data) - int(match.group(2)), 0), len(data) - 1
            if start >= len(data):
                raise HubHTTPError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return Response(206, data[start:end + 1], headers, content_type="application/octet-stream")
        return Response(200, data, headers, content_type="application/octet-stream")

    def cdn_get(self, oid: str) -> Response:
        if self.headers.get("Authorization"):
            self.state.cdn_auth_leaks.append(self.path)
        if not hmac.compare_digest(self.query.get("sig", ""), self.hub.sign(oid)):
            raise HubHTTPError(403, "bad or missing signature")
        data = self.state.lfs.get(oid)
        if data is None:
            raise HubHTTPError(404, "no such object")
        return self._content(data, {"ETag": f'"{oid}"', "Accept-Ranges": "bytes"})


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: "HubServer", is_cdn: bool) -> None:
        super().__init__(("127.0.0.1", 0), HubRequestHandler)
        self.hub = hub if not is_cdn else _CdnView(hub)


class _CdnView:
    """The same hub seen from the CDN port (only ``/lfs/<oid>`` is served there)."""

    is_cdn = True

    def __init__(self, hub: "HubServer") -> None:
        self._hub = hub

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hub, name)


class HubServer:
    """Two loopback listeners sharing one :class:`HubState`: the Hub itself and its LFS "CDN".

    Use as a context manager, or ``start()`` / ``stop()``. ``endpoint`` is what ``HF_ENDPOINT``
    must be set to.
    """

    is_cdn = False

    def __init__(self, tokens: dict[str, User] | None = None) -> None:
        self.state = HubState(tokens)
        self._secret = secrets.token_bytes(16)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.endpoint = self.cdn_endpoint = ""

    def sign(self, oid: str) -> str:
        return hmac.new(self._secret, oid.encode(), hashlib.sha256).hexdigest()[:32]

    def start(self) -> "HubServer":
        for is_cdn in (False, True):
            server = _Server(self, is_cdn)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                      name=f"test-hub{'-cdn' if is_cdn else ''}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.endpoint = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn_endpoint = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- inspection helpers for tests (read the state directly, not through the client)

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo | None:
        return self.state.repos.get((repo_type, repo_id))

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """Path -> content of a revision, LFS content resolved."""
        repo = self.repo(repo_id, repo_type)
        if repo is None:
            raise KeyError(repo_id)
        commit = repo.resolve(revision)
        assert commit is not None, revision
        return {p: (e.data if e.data is not None else self.state.lfs[e.lfs_oid or ""])
                for p, e in commit.files.items()}

    def commit_count(self, repo_id: str, repo_type: str = "model") -> int:
        repo = self.repo(repo_id, repo_type)
        return 0 if repo is None else len(repo.commits)

    def lfs_paths(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[str]:
        repo = self.repo(repo_id, repo_type)
        commit = repo.resolve(revision) if repo else None
        return sorted(p for p, e in (commit.files.items() if commit else ()) if e.lfs_oid)


if __name__ == "__main__":  # pragma: no cover - manual use
    with HubServer() as hub:
        print(f"HF_ENDPOINT={hub.endpoint}  (LFS CDN at {hub.cdn_endpoint})")
        for token, user in hub.state.tokens.items():
            print(f"  {user.name:6} {user.role:5} token {token}")
        print("set HF_HUB_DISABLE_XET=1 in clients; Ctrl-C to stop")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
