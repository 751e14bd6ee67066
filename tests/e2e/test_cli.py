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
