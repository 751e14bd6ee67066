"""One check of weights, used by every reader (issue 29): the same NaN, truncated and deleted files, swept over
every path that reads adapter or base weights. Each refuses in one line naming the file (and the tensor, for a
NaN) and the fix, never blames the user's coefficients, writes nothing, and leaves the bundle byte for byte as
it was. (`recipe run --resume` over a damaged run folder: tests/recipe/test_folder.py.)"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

from damage import DAMAGES, damaged_copy, tiny_bundle
from peo_hub.cli import main
from peo_hub.utils.errors import BundleError
from snapshots import assert_unchanged, one_line_error, sha256s

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def damaged(whole: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, str | None]]:
    """One damaged copy per kind of damage, shared by every path (the paths only read)."""
    root = tmp_path_factory.mktemp("damaged")
    return {kind: damaged_copy(whole, root / kind, kind) for kind in DAMAGES}


def _space(bundle: Path, out: Path) -> int:
    """`peo-hub space` as the CLI runs it, but without blocking: a refusal is one line, a launch is closed again."""
    sys.path.insert(0, str(REPO / "docs"))
    from space_screenshot import free_port

    from peo_hub.serve.space import launch

    try:
        demo = launch(bundle, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    demo.close()
    return 0


def _load(bundle: Path, out: Path) -> int:
    from peo_hub import PEOModel

    try:
        PEOModel.from_pretrained(bundle)
    except BundleError as exc:  # the Python API raises the typed error the CLI prints
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _cli(*args: str) -> Callable[[Path, Path], int]:
    return lambda bundle, out: main([a.format(bundle=bundle, out=out) for a in args])


PATHS: dict[str, Callable[[Path, Path], int]] = {
    "PEOModel.from_pretrained": _load,
    "space": _space,
    "merge --as adapter": _cli("merge", "{bundle}", "--weights", "helpful=1", "--output", "{out}", "--as", "adapter"),
    "merge --as model": _cli("merge", "{bundle}", "--weights", "helpful=1", "--output", "{out}", "--as", "model"),
    "merge --as yaml": _cli("merge", "{bundle}", "--weights", "helpful=1", "--output", "{out}.yaml", "--as", "yaml"),
    "export gguf": _cli("export", "{bundle}", "--format", "gguf", "--output", "{out}"),
    "export gguf --base none": _cli("export", "{bundle}", "--format", "gguf", "--base", "none", "--output", "{out}"),
    "export ollama": _cli("export", "{bundle}", "--format", "ollama", "--point", "helpful=1", "--output", "{out}"),
    "compose": _cli("compose", "{bundle}/base", "--adapter", "helpful={bundle}/adapters/helpful", "--adapter",
                    "harmless={bundle}/adapters/harmless", "--output", "{out}"),
    "push": _cli("push", "{bundle}", "alice/never-published"),
}
# Paths that never read the base's tensors (only its headers): a NaN inside a whole base file is theirs to pass;
# a truncated or deleted one is still refused.
SKIPS_BASE_VALUES = {"merge --as adapter", "merge --as yaml", "export gguf --base none"}


@pytest.mark.parametrize("kind", DAMAGES)
@pytest.mark.parametrize("path", list(PATHS))
def test_every_reader_refuses_damaged_weights_in_one_line(path: str, kind: str, damaged, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    bundle, target, tensor = damaged[kind]
    before = sha256s(bundle)
    out = tmp_path / "out"
    capsys.readouterr()
    code = PATHS[path](bundle, out)
    err = capsys.readouterr().err
    if kind == "nan-base" and path in SKIPS_BASE_VALUES:
        assert code == 0, err
        return
    assert code == 2, err
    line = one_line_error(err)
    if kind.startswith("deleted"):
        assert target.name in line and str(target.parent) in line, line
    else:
        assert str(target) in line, line
    if tensor is not None:
        assert f"NaN values (tensor {tensor!r})" in line
    assert "coefficient" not in line, "a damaged file must be named, not blamed on the coefficients"
    assert not [p for p in tmp_path.iterdir()], "nothing may be written when the input is refused"
    assert_unchanged(before, bundle)


@pytest.mark.parametrize("path", [p for p in PATHS if p not in ("push", "space", "compose", "export gguf")])
def test_the_whole_bundle_passes_every_reader(path: str, whole: Path, tmp_path: Path) -> None:
    """The control: the same paths take the undamaged bundle (so the refusals above are about the damage)."""
    assert PATHS[path](whole, tmp_path / "out") == 0


def test_a_coefficient_overflow_of_finite_inputs_is_blamed_on_the_coefficients(whole: Path, tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]
                                                                               ) -> None:
    """Only where every input is finite does the message speak of the coefficients."""
    import torch
    from safetensors.torch import load_file, save_file

    bundle = tmp_path / "huge"
    import shutil

    shutil.copytree(whole, bundle)
    weights = bundle / "adapters" / "helpful" / "adapter_model.safetensors"
    tensors = {k: torch.full_like(v, 3e38) for k, v in load_file(str(weights)).items()}  # finite, but c*B overflows
    save_file(tensors, str(weights), metadata={"format": "pt"})
    capsys.readouterr()
    assert main(["merge", str(bundle), "--coefficients", "helpful=3", "--output", str(tmp_path / "a")]) == 2
    one_line_error(capsys.readouterr().err, "overflow", "although every adapter is finite")
