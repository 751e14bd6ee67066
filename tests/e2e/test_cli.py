"""peo_hub.cli: every user mistake is one line on stderr with exit code 2 (3 for Hub failures), no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fakes import make_fake_bundle
from peo_hub.cli import main


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_space_port_must_be_a_port(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["space", "runs/toy", "--port", port])
    assert info.value.code == 2
    assert "use 1-65535" in _one_line(capsys)


@pytest.mark.parametrize("args", [["push", "BUNDLE", "bad repo!!"], ["push", "BUNDLE", "alice/ok", "--space", "bad space!!"],
                                  ["push", "BUNDLE", "no-namespace"]])
def test_invalid_repo_ids_are_input_errors(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_unused")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no request may be made
    bundle = make_fake_bundle(tmp_path / "b")
    capsys.readouterr()
    assert main([str(bundle) if a == "BUNDLE" else a for a in args]) == 2
    assert "not a valid" in _one_line(capsys)


def test_space_on_a_corrupt_bundle_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_fake_bundle(tmp_path / "b")
    weights = bundle / "adapters" / "harmless" / "adapter_model.safetensors"
    weights.write_bytes(b"garbage" * 10)
    capsys.readouterr()
    assert main(["space", str(bundle), "--port", "7999"]) == 2
    assert "truncated or corrupt" in _one_line(capsys)


def test_errors_through_the_real_entry_point_have_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "peo_hub.cli", "merge", str(tmp_path / "missing"), "--weights",
                             "helpful=1", "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- habits of the ecosystem's CLIs


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    from peo_hub import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"peo-hub {__version__}"
    result = subprocess.run([sys.executable, "-m", "peo_hub.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"peo-hub {__version__}"


def test_env_reports_the_stack_device_and_caches(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from importlib.metadata import version

    import torch

    monkeypatch.setenv("PEO_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_never_printed")
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    lines = dict(line[2:].split(": ", 1) for line in out.splitlines() if line.startswith("- "))
    for name in ("torch", "transformers", "trl", "peft", "mergekit", "huggingface_hub", "datasets", "gradio",
                 "accelerate", "gguf"):
        assert lines[name] == version(name), name
    assert lines["llama-cpp-python"] in ("not installed", _installed("llama-cpp-python"))
    assert lines["peo-hub cache"] == str(tmp_path / "cache")
    assert lines["device"].startswith("cuda:0" if torch.cuda.is_available() else "cpu")
    assert lines["HF token"] == "found" and "hf_secret_value_never_printed" not in out
    assert main(["env", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == lines


def _installed(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:  # noqa: BLE001 - not installed
        return "not installed"


@pytest.fixture
def fake_bundle(tmp_path: Path) -> Path:
    return make_fake_bundle(tmp_path / "b")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(300)  # a link that is silently missing would serve (block) forever
def test_space_share_without_a_link_is_one_line_and_serves_nothing(fake_bundle: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import gradio.networking

    def offline(*args, **kwargs):  # what Gradio's tunnel set-up raises without the internet
        raise RuntimeError("Could not get share link from Gradio API Server.")

    monkeypatch.setattr(gradio.networking, "setup_tunnel", offline)
    port = _free_port()
    capsys.readouterr()
    assert main(["space", str(fake_bundle), "--share", "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert "--share could not open a public gradio.live link" in _one_line_of(captured.err)
    assert "Could not create share link" not in captured.out + captured.err  # Gradio's page of advice is not shown
    with socket.socket() as sock:  # the local server was closed again: "shared" never means "local only"
        sock.bind(("127.0.0.1", port))


@pytest.mark.timeout(300)
def test_space_share_prints_the_public_link(fake_bundle: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio
    import gradio.networking

    monkeypatch.setattr(gradio.networking, "setup_tunnel", lambda *a, **k: "https://peo-test.gradio.live")
    blocked: list[bool] = []
    monkeypatch.setattr(gradio.Blocks, "block_thread", lambda self: blocked.append(True))  # instead of serving forever
    try:
        assert main(["space", str(fake_bundle), "--share", "--port", str(_free_port())]) == 0
    finally:
        gradio.close_all()
    assert "Running on public URL: https://peo-test.gradio.live" in capsys.readouterr().out
    assert blocked == [True]  # the command then serves until interrupted, as without --share


def _one_line_of(err: str) -> str:
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


# --------------------------------------------------------------------------- recipe field overrides


TOY_CI = Path(__file__).resolve().parents[1] / "recipes" / "toy-ci.yaml"


def test_set_overrides_are_validated_like_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "validate", str(TOY_CI), "--schema-only", "--set", "train.dpo.max_steps=20",
                 "--set", "sweep.alpha=[0,0.5]"]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["recipe", "validate", str(TOY_CI), "--schema-only", "--set", "train.dpo.max_steps=lots"]) == 2
    line = _one_line_of(capsys.readouterr().err)
    assert "field 'train.dpo.max_steps'" in line and "with --set train.dpo.max_steps=lots" in line


@pytest.mark.parametrize("override, needle", [
    ("trian.dpo.max_steps=3", "unknown field 'trian' (did you mean 'train'?)"),
    ("max_steps", "write --set FIELD.PATH=VALUE"),
    ("sweep.alpha=[0,", "the value is not valid YAML"),
    ("train.dpo.max_steps.x=1", "train.dpo.max_steps is a value (80), not a section"),
    ("train..max_steps=1", "has an empty part"),
    ("seed=", "no value after '='"),
    ("train.dpo.seed=3", "'seed' is set by peo-hub"),
])
def test_bad_overrides_are_one_line_naming_them(override: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    for verb in (["validate", "--schema-only"], ["run"]):  # run refuses before its first write
        assert main(["recipe", verb[0], str(TOY_CI), *verb[1:], "--set", override]) == 2
        line = _one_line_of(capsys.readouterr().err)
        assert needle in line and override.split("=")[0] in line, line


def test_no_library_warning_before_the_verdict(peo_cache: Path) -> None:
    """`recipe validate` builds TRL's DPOConfig: transformers' FutureWarning about gradient_checkpointing is gone."""
    import os

    env = {**os.environ, "PEO_HUB_CACHE": str(peo_cache), "PYTHONWARNINGS": "always"}
    result = subprocess.run([sys.executable, "-m", "peo_hub.cli", "recipe", "validate", str(TOY_CI)],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")
    assert "Warning" not in result.stderr and "warn(" not in result.stderr, result.stderr


@pytest.mark.slow
def test_recipe_run_records_overrides_and_says_what_next(tmp_path: Path, peo_cache: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "run"
    overrides = ["train.dpo.max_steps=2", "sweep.weights=2", "sweep.alpha=[0]", "sweep.baselines=[soup]",
                 "evaluate.samples=1", "evaluate.max_new_tokens=8"]
    args = ["recipe", "run", str(TOY_CI), "--output", str(out)]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 0
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[-1] == (f"next: peo-hub space {out}   |   peo-hub merge {out} --weights helpful=0.5,harmless=0.5 "
                          f"--output {out}-point   |   peo-hub push {out} USER/REPO")
    record = json.loads((out / "peo_run.json").read_text())
    assert record["overrides"] == overrides and record["recipe"]["train"]["dpo"]["max_steps"] == 2
    manifest = json.loads((out / "peo_config.json").read_text())
    assert manifest["recipe"]["sweep"]["alpha"] == [0] and manifest["recipe"]["evaluate"]["max_new_tokens"] == 8
    # resuming with other overrides is another recipe: refused, naming the field
    assert main([*args[:-2], "--set", "evaluate.max_new_tokens=9", "--resume"]) == 2
    assert "evaluate" in _one_line_of(capsys.readouterr().err)


def test_merge_prints_no_library_deprecation_before_its_result(fake_bundle: Path, tmp_path: Path) -> None:
    """PEFT reads transformers' deprecated ``is_gradient_checkpointing`` on every adapter load."""
    import os

    env = {**os.environ, "PYTHONWARNINGS": "always"}
    result = subprocess.run([sys.executable, "-m", "peo_hub.cli", "merge", str(fake_bundle), "--weights",
                             "helpful=0.5,harmless=0.5", "--output", str(tmp_path / "point"), "--as", "model"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "is_gradient_checkpointing" not in result.stderr, result.stderr
