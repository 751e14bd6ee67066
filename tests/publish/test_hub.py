"""Publishing against the loopback Hub (tests/support/hub_server.py): real client, real HTTP, real cache.

The end-to-end check pushes with the CLI, then loads everything back in a *fresh process*
with an empty cache (as a user on another machine would) and compares logits with the
local bundle. Failure paths check the one-line error, the exit code, that nothing was
published, and that the local bundle is byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from fakes import make_fake_bundle
from hub_fixture import HubEnv

from peo_hub.cli import main
from peo_hub.utils.errors import BundleError, HubError, PEOError

REPO = "alice/peo-toy"
POINT_REPO = "alice/peo-toy-point"
ASPECTS = ("helpful", "harmless")
PREFERENCE = ({"helpful": 0.7, "harmless": 0.3}, 0.5)
IDS = [[1, 5, 7, 9, 3, 2, 8]]
PEO_CLI = Path(sys.executable).with_name("peo-hub")


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with the sha256 of files: equal snapshots = byte-identical trees."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


def error_line(stderr: str) -> str:
    """The CLI's one error line (progress bars may precede it on stderr; a traceback may not)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed ``peo-hub`` executable, as a user runs it."""
    return subprocess.run([str(PEO_CLI), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_bundle(tmp_path_factory.mktemp("bundle") / "b", aspects=ASPECTS)


@pytest.fixture
def fresh_bundle(bundle: Path, tmp_path: Path) -> Path:
    """A private copy, for tests that break or inspect the bundle."""
    return Path(shutil.copytree(bundle, tmp_path / "b"))


# --------------------------------------------------------------------------- end to end

CHILD = r"""
import json, sys, traceback
from pathlib import Path
import torch
torch.set_num_threads(1)
out, repo, point_repo, aspects = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split(",")
weights, alpha = json.loads(sys.argv[5]), float(sys.argv[6])
ids = torch.tensor(json.loads(sys.argv[7]))
result, logits = {"errors": {}}, {}

def section(name, fn):
    try:
        fn()
    except Exception:
        result["errors"][name] = traceback.format_exc()

from transformers import AutoModelForCausalLM
from peft import PeftModel

def base():
    return AutoModelForCausalLM.from_pretrained(repo, subfolder="base").eval()

def adapters():
    logits["base"] = base()(ids).logits
    for aspect in aspects:
        model = PeftModel.from_pretrained(base(), repo, subfolder=f"adapters/{aspect}").eval()
        logits[aspect] = model(ids).logits

def info():
    from huggingface_hub import HfApi
    i = HfApi().model_info(repo)
    result["info"] = {"tags": i.tags, "private": i.private, "library_name": i.library_name,
                      "relation": getattr(i.card_data, "base_model_relation", None),
                      "siblings": sorted(s.rfilename for s in i.siblings)}

def peo():
    from peo_hub.family.model import PEOModel
    m = PEOModel.from_pretrained(repo)
    m.set_preference(weights, alpha)
    logits["peo"] = m.model(ids).logits
    result["peo_coefficients"] = m.coefficients

def point():
    model = PeftModel.from_pretrained(base(), point_repo).eval()
    logits["point"] = model(ids).logits

with torch.no_grad():
    for name, fn in (("adapters", adapters), ("info", info), ("peo", peo), ("point", point)):
        section(name, fn)
torch.save(logits, out / "logits.pt")
(out / "result.json").write_text(json.dumps(result))
"""


@pytest.fixture(scope="module")
def published(module_hub: HubEnv, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Push the bundle with the CLI and one point with push_point, then load both in a fresh process."""
    from peo_hub.publish.hub import push_point

    before = snapshot(bundle)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", module_hub.alice_token)
        rc = main(["push", str(bundle), REPO])
    assert rc == 0
    after_push = snapshot(bundle)
    commits_after_push = module_hub.server.commit_count(REPO)
    point_url = push_point(bundle, POINT_REPO, weights=PREFERENCE[0], alpha=PREFERENCE[1],
                           token=module_hub.alice_token, bundle_repo_id=REPO)

    out = tmp_path_factory.mktemp("child")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), REPO, POINT_REPO, ",".join(ASPECTS), json.dumps(PREFERENCE[0]),
         str(PREFERENCE[1]), json.dumps(IDS)],
        env=module_hub.env(token=module_hub.alice_token, home=out / "hf_home"),
        capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    return {
        "hub": module_hub, "before": before, "after_push": after_push, "point_url": point_url,
        "commits_after_push": commits_after_push, "child_home": out / "hf_home",
        "result": json.loads((out / "result.json").read_text()),
        "logits": torch.load(out / "logits.pt"),
    }


def _local_logits(bundle: Path) -> dict[str, torch.Tensor]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor(IDS)
    result = {}
    with torch.no_grad():
        result["base"] = AutoModelForCausalLM.from_pretrained(bundle / "base").eval()(ids).logits
        for aspect in ASPECTS:
            base = AutoModelForCausalLM.from_pretrained(bundle / "base").eval()
            result[aspect] = PeftModel.from_pretrained(base, bundle / "adapters" / aspect).eval()(ids).logits
    return result


def test_push_uploads_everything_in_one_commit(published: dict[str, Any], bundle: Path) -> None:
    server = published["hub"].server
    assert published["commits_after_push"] == 2  # the repo's initial commit + exactly one push
    files = server.files(REPO)
    local = {p for p, h in published["before"].items() if h != "dir"}
    assert local | {"README.md", ".gitattributes"} == set(files)
    for path in local:
        assert files[path] == (bundle / path).read_bytes(), path
    # both upload paths were exercised: regular (json, md) and LFS (safetensors)
    assert {"base/model.safetensors", "adapters/helpful/adapter_model.safetensors"} <= set(server.lfs_paths(REPO))
    assert "peo_config.json" not in server.lfs_paths(REPO)
    # the push wrote nothing locally
    assert published["after_push"] == published["before"]
    assert not (bundle / "README.md").exists()


def test_adapters_load_from_the_hub_in_a_fresh_process(published: dict[str, Any], bundle: Path) -> None:
    assert "adapters" not in published["result"]["errors"], published["result"]["errors"].get("adapters")
    remote, local = published["logits"], _local_logits(bundle)
    for name in ("base", *ASPECTS):
        assert torch.allclose(remote[name], local[name], atol=1e-6), name
    for aspect in ASPECTS:  # each adapter really changes the model, so the comparison means something
        assert not torch.allclose(local[aspect], local["base"], atol=1e-3)
    # the child had an empty cache: everything came over HTTP, LFS blobs via the CDN redirect
    snapshots = list((published["child_home"] / "hub").glob("models--alice--peo-toy/snapshots/*"))
    assert len(snapshots) == 1
    server = published["hub"].server
    assert server.state.unhandled == [], "clients called routes the test Hub does not speak"
    assert server.state.cdn_auth_leaks == [], "the client sent its token to the LFS CDN"


def test_model_info_shows_the_card(published: dict[str, Any]) -> None:
    info = published["result"].get("info")
    assert info is not None, published["result"]["errors"].get("info")
    for tag in ("peo", "lora", "dpo", "trl", "mergekit", "peft"):
        assert tag in info["tags"]
    assert info["library_name"] == "peo-hub"  # not peft: the adapters live in subfolders
    assert info["private"] is False
    assert info["relation"] is None  # the base ships inside the bundle: no Hub base_model to point at
    assert "README.md" in info["siblings"]
    card = published["hub"].server.files(REPO)["README.md"].decode()
    assert 'subfolder="adapters/helpful"' in card and f'PEOModel.from_pretrained("{REPO}")' in card


def test_peomodel_loads_the_pushed_bundle_by_repo_id(published: dict[str, Any], bundle: Path) -> None:
    from peo_hub.family.model import PEOModel

    assert "peo" not in published["result"]["errors"], published["result"]["errors"].get("peo")
    local = PEOModel.from_pretrained(bundle)
    local.set_preference(*PREFERENCE)
    with torch.no_grad():
        expected = local.model(torch.tensor(IDS)).logits
    assert published["result"]["peo_coefficients"] == pytest.approx({"helpful": 1.05, "harmless": 0.45})
    assert torch.allclose(published["logits"]["peo"], expected, atol=1e-5)


def test_pushed_point_is_a_standard_adapter_of_that_preference(published: dict[str, Any], bundle: Path) -> None:
    from peo_hub.family.model import PEOModel

    assert "point" not in published["result"]["errors"], published["result"]["errors"].get("point")
    local = PEOModel.from_pretrained(bundle)
    local.set_preference(*PREFERENCE)
    with torch.no_grad():
        expected = local.model(torch.tensor(IDS)).logits
    assert torch.allclose(published["logits"]["point"], expected, atol=1e-4)
    files = published["hub"].server.files(POINT_REPO)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    card = files["README.md"].decode()
    assert REPO in card and "1.05" in card and "0.45" in card and "alpha (extrapolation) = 0.5" in card
    assert published["point_url"].endswith("/" + POINT_REPO)


# --------------------------------------------------------------------------- refusals


def test_wrong_token_is_refused_with_one_line_and_exit_code_3(hub: HubEnv, bundle: Path) -> None:
    proc = run_cli(["push", str(bundle), REPO], hub.env(token="hf_not_a_real_token"))
    assert proc.returncode == HubError.exit_code == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "refused the token (401" in lines[0] and "HF_TOKEN" in lines[0]
    assert hub.server.repo(REPO) is None


def test_missing_token_says_how_to_log_in(hub: HubEnv, bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", str(bundle), REPO]) == 3
    err = error_line(capsys.readouterr().err)
    assert "no Hugging Face token found" in err and "hf auth login" in err and "HF_TOKEN" in err
    assert hub.state.requests == []  # refused before any network call


def test_private_repo_is_invisible_to_other_users(hub: HubEnv, bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    from peo_hub.bundle.pull import download_bundle

    monkeypatch.setenv("HF_TOKEN", hub.alice_token)
    assert main(["push", str(bundle), REPO, "--private"]) == 0
    assert HfApi(token=hub.alice_token).model_info(REPO).private is True
    for token in (hub.bob_token, False):  # another user, and anonymous
        with pytest.raises(RepositoryNotFoundError):
            HfApi(token=token).model_info(REPO)
    with pytest.raises(HubError, match="not found"):
        download_bundle(REPO, token=hub.bob_token)
    # bob cannot write into alice's namespace, a read-only token cannot write at all
    capsys.readouterr()
    for token in (hub.bob_token, hub.alice_read_token):
        monkeypatch.setenv("HF_TOKEN", token)
        assert main(["push", str(bundle), "alice/other"]) == 3
        assert "no permission to write to alice/other (403" in error_line(capsys.readouterr().err)
    assert hub.server.repo("alice/other") is None
    # asking for --private on an existing public repo is refused, not silently ignored
    monkeypatch.setenv("HF_TOKEN", hub.alice_token)
    assert main(["push", str(bundle), "alice/public"]) == 0
    assert main(["push", str(bundle), "alice/public", "--private"]) == 3
    assert "already exists and is public" in error_line(capsys.readouterr().err)


def test_network_failure_mid_upload_publishes_nothing(hub: HubEnv, fresh_bundle: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(fresh_bundle)
    monkeypatch.setenv("HF_TOKEN", hub.alice_token)
    hub.state.fail_next("commit")  # the server resets the connection once the commit body has arrived
    assert main(["push", str(fresh_bundle), REPO]) == 3
    err = error_line(capsys.readouterr().err)
    assert "network failure" in err and "nothing was published" in err
    assert hub.server.repo(REPO) is None  # the repo this push created is removed again: no empty repo left
    assert snapshot(fresh_bundle) == before
    # the same command then succeeds (LFS blobs already uploaded are not sent again)
    assert main(["push", str(fresh_bundle), REPO]) == 0
    assert hub.server.commit_count(REPO) == 2 and "peo_config.json" in hub.server.files(REPO)
    assert snapshot(fresh_bundle) == before


def test_unreachable_hub_is_one_clear_line(hub: HubEnv, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from huggingface_hub import constants

    from peo_hub.publish.hub import push_bundle

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    with pytest.raises(HubError, match="network failure talking to http://127.0.0.1") as err:
        push_bundle(bundle, REPO, token=hub.alice_token)
    assert "\n" not in str(err.value)


def test_broken_bundle_is_refused_before_any_network_call(hub: HubEnv, fresh_bundle: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from peo_hub.bundle.manifest import validate_bundle

    monkeypatch.setenv("HF_TOKEN", hub.alice_token)
    weights = fresh_bundle / "adapters" / "harmless" / "adapter_model.safetensors"
    saved = weights.read_bytes()
    weights.unlink()
    assert main(["push", str(fresh_bundle), REPO]) == BundleError.exit_code
    assert "aspect 'harmless'" in error_line(capsys.readouterr().err)
    weights.write_bytes(saved)
    validate_bundle(fresh_bundle)  # whole again
    manifest = json.loads((fresh_bundle / "peo_config.json").read_text())
    manifest["base_model"] = "/somewhere/else"
    (fresh_bundle / "peo_config.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="base model '/somewhere/else' is neither a folder inside the bundle"):
        validate_bundle(fresh_bundle)
    assert hub.state.requests == []


# --------------------------------------------------------------------------- pull


def test_download_bundle_errors_and_offline_cache(hub: HubEnv, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi, constants

    from peo_hub.bundle.pull import bundle_folder as resolve_bundle
    from peo_hub.bundle.pull import download_bundle
    from peo_hub.publish.hub import push_bundle

    with pytest.raises(HubError, match="alice/missing was not found"):
        download_bundle("alice/missing")
    with pytest.raises(HubError, match="revision 'nope' does not exist"):
        push_bundle(bundle, REPO, token=hub.alice_token)
        download_bundle(REPO, revision="nope")
    api = HfApi(token=hub.alice_token)
    api.create_repo("alice/not-a-bundle")
    api.upload_file(path_or_fileobj=b"# hello\n", path_in_repo="notes.md", repo_id="alice/not-a-bundle")
    with pytest.raises(BundleError, match="not a PEO bundle"):
        download_bundle("alice/not-a-bundle")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 is set and alice/other is not in the local cache"):
        download_bundle("alice/other")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    online = resolve_bundle(REPO)  # repo ids go through download_bundle
    assert (online / "peo_config.json").read_bytes() == (bundle / "peo_config.json").read_bytes()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert download_bundle(REPO) == online  # offline, from the cache


def test_push_to_a_branch_leaves_main_alone(hub: HubEnv, bundle: Path) -> None:
    from peo_hub.bundle.pull import download_bundle
    from peo_hub.publish.hub import push_bundle

    push_bundle(bundle, REPO, token=hub.alice_token)
    main_files = hub.server.files(REPO)
    url = push_bundle(bundle, REPO, token=hub.alice_token, revision="dev", commit_message="dev build")
    assert url.endswith(f"/{REPO}/tree/dev")
    assert hub.server.files(REPO) == main_files
    repo = hub.server.repo(REPO)
    assert repo is not None and "dev" in repo.branches
    assert (download_bundle(REPO, revision="dev") / "peo_config.json").is_file()


def test_hand_written_readme_is_kept_and_generated_one_refreshed(hub: HubEnv, fresh_bundle: Path) -> None:
    from peo_hub.bundle.card import write_model_card
    from peo_hub.publish.hub import push_bundle

    write_model_card(fresh_bundle)  # generated locally without a repo id
    assert "<user>/<repo>" in (fresh_bundle / "README.md").read_text()
    push_bundle(fresh_bundle, REPO, token=hub.alice_token)
    pushed = hub.server.files(REPO)["README.md"].decode()
    assert f'PEOModel.from_pretrained("{REPO}")' in pushed and "<user>/<repo>" not in pushed
    mine = "---\nlicense: mit\ntags: [peo]\n---\n\n# My own card\n"
    (fresh_bundle / "README.md").write_text(mine)
    push_bundle(fresh_bundle, REPO, token=hub.alice_token)
    assert hub.server.files(REPO)["README.md"].decode() == mine
    commits = hub.server.commit_count(REPO)
    (fresh_bundle / "README.md").write_text("---\nlicense: [1, 2]\n---\n\n# Broken metadata\n")
    with pytest.raises(HubError, match="rejected the metadata of README.md .*license.*nothing was published"):
        push_bundle(fresh_bundle, REPO, token=hub.alice_token)
    assert hub.server.commit_count(REPO) == commits


# --------------------------------------------------------------------------- Space


def test_push_space_points_at_the_bundle(hub: HubEnv, tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    from peo_hub.publish.hub import push_space

    template = tmp_path / "peo-demo"
    template.mkdir()
    (template / "app.py").write_text("import gradio as gr\n")
    (template / "requirements.txt").write_text("peo-hub\n")
    (template / "README.md").write_text("---\ntitle: old\n---\n\n# Demo body\n")
    url = push_space("alice/peo-demo", REPO, token=hub.alice_token, space_dir=template)
    assert url == f"{hub.endpoint}/spaces/alice/peo-demo"
    files = hub.server.files("alice/peo-demo", repo_type="space")
    assert json.loads(files["peo_space.json"]) == {"bundle": REPO}
    # the package travels with the Space, so the Space runs the peo-hub that wrote the bundle
    assert "peo_hub/serve/space.py" in files and "peo_hub/family/model.py" in files
    assert not [name for name in files if "__pycache__" in name]
    readme = files["README.md"].decode()
    assert "sdk: gradio" in readme and f"- {REPO}" in readme and "# Demo body" in readme and "title: old" not in readme
    assert files["app.py"] == b"import gradio as gr\n"
    info = HfApi(token=hub.alice_token).space_info("alice/peo-demo")
    assert info.sdk == "gradio"
    with pytest.raises(PEOError, match="Space template .* is missing"):
        push_space("alice/peo-demo", REPO, token=hub.alice_token, space_dir=tmp_path / "nowhere")


# --------------------------------------------------------------------------- nothing published half-way


def test_a_bad_space_id_is_refused_before_the_bundle_is_published(hub: HubEnv, bundle: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_TOKEN", hub.alice_token)
    assert main(["push", str(bundle), REPO, "--space", "bad space!!"]) == 2
    assert "not a valid Space id" in error_line(capsys.readouterr().err)
    assert hub.server.repo(REPO) is None, "the model repo must not be published first"


def test_a_file_that_disappears_during_the_push_leaves_no_repo(hub: HubEnv, fresh_bundle: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import HfApi

    original = HfApi.create_commit

    def delete_then_commit(self, *args, **kwargs):  # the library's upload, with a file gone under it
        (fresh_bundle / "adapters" / "helpful" / "adapter_model.safetensors").unlink()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", delete_then_commit)
    monkeypatch.setenv("HF_TOKEN", hub.alice_token)
    assert main(["push", str(fresh_bundle), REPO]) == 2
    err = error_line(capsys.readouterr().err)
    assert "changed or disappeared during the push" in err and "nothing was published" in err
    assert hub.server.repo(REPO) is None, "the repo this push created is removed again"


def test_a_truncated_adapter_is_never_pushed(hub: HubEnv, fresh_bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    weights = fresh_bundle / "adapters" / "harmless" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    monkeypatch.setenv("HF_TOKEN", hub.alice_token)
    assert main(["push", str(fresh_bundle), REPO]) == 2
    assert "truncated or corrupt" in error_line(capsys.readouterr().err)
    assert hub.server.repo(REPO) is None and not hub.state.requests, "checked before any request"


# --------------------------------------------------------------------------- re-push: the repo is the bundle as it is now


def _hub_files(hub: HubEnv, revision: str = "main") -> set[str]:
    return set(hub.server.files(REPO, revision=revision))


def test_repush_deletes_stale_bundle_files_in_the_same_commit(hub: HubEnv, fresh_bundle: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import HfApi

    from peo_hub.publish.hub import push_bundle

    (fresh_bundle / "evaluations").mkdir()
    (fresh_bundle / "evaluations" / "peo-old.json").write_text("{}")
    (fresh_bundle / "merges").mkdir()
    (fresh_bundle / "merges" / "old.yaml").write_text("merge_method: task_arithmetic\n")
    push_bundle(fresh_bundle, REPO, token=hub.alice_token)
    api = HfApi(token=hub.alice_token)  # a person adds files of their own on the Hub
    api.upload_file(path_or_fileobj=b"my notes\n", path_in_repo="notes.md", repo_id=REPO)
    api.upload_file(path_or_fileobj=b"extra\n", path_in_repo="extra/data.txt", repo_id=REPO)
    assert {"evaluations/peo-old.json", "merges/old.yaml", "notes.md", "extra/data.txt"} <= _hub_files(hub)
    commits = hub.server.commit_count(REPO)
    capsys.readouterr()

    shutil.rmtree(fresh_bundle / "merges")
    (fresh_bundle / "evaluations" / "peo-old.json").unlink()
    (fresh_bundle / "evaluations" / "peo-new.json").write_text('{"new": true}')
    push_bundle(fresh_bundle, REPO, token=hub.alice_token)

    files = hub.server.files(REPO)
    assert "evaluations/peo-old.json" not in files and "merges/old.yaml" not in files
    assert files["evaluations/peo-new.json"] == b'{"new": true}'
    assert files["notes.md"] == b"my notes\n" and "extra/data.txt" in files and ".gitattributes" in files
    assert hub.server.commit_count(REPO) == commits + 1  # uploads and deletions: one commit
    out = capsys.readouterr().out
    assert "deleted 2 files from the repo that the bundle does not have" in out and "merges/old.yaml" in out
    push_bundle(fresh_bundle, REPO, token=hub.alice_token)  # nothing stale: nothing said
    assert "deleted" not in capsys.readouterr().out


def test_a_readme_edited_on_the_hub_is_replaced_and_the_push_says_so(hub: HubEnv, fresh_bundle: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import HfApi

    from peo_hub.bundle.card import card_is_intact
    from peo_hub.publish.hub import push_bundle

    push_bundle(fresh_bundle, REPO, token=hub.alice_token)
    generated = hub.server.files(REPO)["README.md"].decode()
    assert card_is_intact(generated)
    assert "README.md" not in capsys.readouterr().out  # a new repo's placeholder is not an edit
    edited = generated.replace("## Usage", "Edited on the Hub.\n\n## Usage")
    HfApi(token=hub.alice_token).upload_file(path_or_fileobj=edited.encode(), path_in_repo="README.md",
                                             repo_id=REPO)
    push_bundle(fresh_bundle, REPO, token=hub.alice_token)
    assert hub.server.files(REPO)["README.md"].decode() == generated
    out = capsys.readouterr().out
    assert "README.md in alice/peo-toy was edited after peo-hub wrote it" in out and "replaced by the bundle's" in out
    (fresh_bundle / "merges").mkdir()  # the bundle changes, and with it its card (the Files line)
    (fresh_bundle / "merges" / "p.yaml").write_text("merge_method: task_arithmetic\n")
    push_bundle(fresh_bundle, REPO, token=hub.alice_token)  # an untouched generated card is replaced silently
    assert hub.server.files(REPO)["README.md"].decode() != generated
    assert "README.md" not in capsys.readouterr().out


def test_a_commit_made_on_the_hub_during_the_push_fails_it_and_deletes_nothing(
        hub: HubEnv, fresh_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi

    from peo_hub.publish.hub import push_bundle

    (fresh_bundle / "merges").mkdir()
    (fresh_bundle / "merges" / "old.yaml").write_text("x: 1\n")
    push_bundle(fresh_bundle, REPO, token=hub.alice_token)
    shutil.rmtree(fresh_bundle / "merges")
    original = HfApi.create_commit
    raced: list[bool] = []

    def someone_commits_first(self, *args, **kwargs):  # another client commits between our read and our commit
        if not raced:
            raced.append(True)
            HfApi(token=hub.alice_token).upload_file(path_or_fileobj=b"x", path_in_repo="merges/new.yaml",
                                                     repo_id=REPO)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", someone_commits_first)
    with pytest.raises(HubError, match="412.*nothing was published"):
        push_bundle(fresh_bundle, REPO, token=hub.alice_token)
    assert {"merges/old.yaml", "merges/new.yaml"} <= _hub_files(hub)  # the file we did not see is not deleted


def test_push_cli_revision_commit_message_and_token(hub: HubEnv, fresh_bundle: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bundle = fresh_bundle
    assert main(["push", str(bundle), REPO, "--token", hub.alice_token]) == 0  # no HF_TOKEN in the environment
    main_files = hub.server.files(REPO)
    (bundle / "evaluations").mkdir()
    (bundle / "evaluations" / "dev.json").write_text("{}")  # a change: an unchanged push makes no commit
    assert main(["push", str(bundle), REPO, "--token", hub.alice_token, "--revision", "dev",
                 "--commit-message", "dev build of the toy bundle"]) == 0
    assert f"/{REPO}/tree/dev" in capsys.readouterr().out
    repo = hub.server.repo(REPO)
    assert repo is not None and repo.commits[repo.branches["dev"]].title == "dev build of the toy bundle"
    assert "evaluations/dev.json" in hub.server.files(REPO, revision="dev")
    assert hub.server.files(REPO) == main_files
    assert main(["push", str(bundle), REPO, "--token", "hf_wrong"]) == 3
    assert "refused the token (401" in error_line(capsys.readouterr().err)


def test_a_pushed_point_names_the_hub_base_and_carries_its_license(hub: HubEnv, bundle: Path,
                                                                   tmp_path: Path) -> None:
    from huggingface_hub import HfApi, ModelCard

    from peo_hub.bundle.manifest import load_manifest, save_manifest
    from peo_hub.publish.hub import push_point

    bob = HfApi(token=hub.bob_token)
    bob.create_repo("bob/tiny-base")
    bob.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\n\n# Tiny\n", path_in_repo="README.md",
                    repo_id="bob/tiny-base")
    b = Path(shutil.copytree(bundle, tmp_path / "hb", ignore=shutil.ignore_patterns("base")))
    manifest = load_manifest(b)
    manifest.base_model = "bob/tiny-base"
    save_manifest(b, manifest)
    push_point(b, POINT_REPO, weights=PREFERENCE[0], alpha=PREFERENCE[1], token=hub.alice_token,
               bundle_repo_id=REPO)
    card = hub.server.files(POINT_REPO)["README.md"].decode()
    meta = ModelCard(card).data.to_dict()
    assert meta["base_model"] == "bob/tiny-base" and meta["base_model_relation"] == "adapter"
    assert meta["license"] == "mit"
    assert f"[`{REPO}`](https://huggingface.co/{REPO})" in card
    info = HfApi(token=hub.alice_token).model_info(POINT_REPO)
    assert "base_model:adapter:bob/tiny-base" in info.tags and "license:mit" in info.tags
