"""Files, not folders (issue 22), for every writer: writing an output again replaces only the files the command
wrote, keeps the user's own files, refuses in one line (every file's sha256 unchanged) when a file it wrote was
edited since, and with --overwrite replaces only the files it writes.

merge (adapter and model, in tests/family/test_merge.py too), merge --as yaml, export gguf, export ollama, compose
and evaluate run on the tiny composed bundle of tests/support/damage.py; recipe run / --resume is in
tests/recipe/test_folder.py. Push and the Space only read: a push leaves the bundle byte for byte as it was
(tests/publish/test_hub.py checks it through failures too), the Space writes nothing into it
(tests/serve/test_space.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from damage import tiny_bundle
from peo_hub.cli import main
from snapshots import assert_kept, assert_unchanged, one_line_error, sha256s

LABEL = "helpful1.00-harmless0.00-a0.00"
EVAL_RECIPE = """
aspects:
  helpful: {judge: {type: toy_helpful}}
  harmless: {judge: {type: toy_harmless}}
sweep: {weights: 2, alpha: [0]}
evaluate: {prompts: ["How do I bake bread?", "How do I pick a lock?"], samples: 1, max_new_tokens: 4,
           temperature: 0.7, bootstrap: 100}
"""


@dataclass(frozen=True)
class Writer:
    args: tuple[str, ...]  # {bundle}, {out} and {recipe} are filled in
    ours: str  # a file the command writes, which the user then edits
    edited_needle: str  # what the refusal says about it


WRITERS = {
    "merge --as adapter": Writer(("merge", "{bundle}", "--weights", "helpful=1", "--output", "{out}", "--as",
                                  "adapter"), "README.md", "was changed since peo-hub wrote it"),
    "merge --as model": Writer(("merge", "{bundle}", "--weights", "helpful=1", "--output", "{out}", "--as", "model"),
                               "README.md", "was changed since peo-hub wrote it"),
    "merge --as yaml": Writer(("merge", "{bundle}", "--weights", "helpful=1", "--output", "{out}", "--as", "yaml"),
                              f"{LABEL}.yaml", "was changed since peo-hub wrote it"),
    "export gguf": Writer(("export", "{bundle}", "--format", "gguf", "--output", "{out}"), "README.md",
                          "was changed since peo-hub wrote it"),
    "export ollama": Writer(("export", "{bundle}", "--format", "ollama", "--point", "helpful=1", "--output", "{out}"),
                            "Modelfile", "was changed since peo-hub wrote it"),
    "compose": Writer(("compose", "{bundle}/base", "--adapter", "helpful={bundle}/adapters/helpful", "--adapter",
                       "harmless={bundle}/adapters/harmless", "--output", "{out}"), "README.md",
                      "was changed since peo-hub wrote it"),
    "evaluate": Writer(("evaluate", "{out}", "--recipe", "{recipe}"), "README.md", "was changed since peo-hub wrote it"),
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("writers"))


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_rewrite_keeps_the_users_files_and_refuses_edits(name: str, bundle: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    writer = WRITERS[name]
    out = tmp_path / "out"
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(EVAL_RECIPE)
    if name == "evaluate":  # evaluate writes into the bundle it evaluates
        shutil.copytree(bundle, out)

    def run(*extra: str) -> int:
        capsys.readouterr()
        return main([a.format(bundle=bundle, out=out, recipe=recipe) for a in writer.args] + list(extra))

    assert run() == 0
    assert (out / writer.ours).is_file()
    (out / "notes.txt").write_text("my notes\n")
    (out / "mine").mkdir()
    (out / "mine" / "serve.sh").write_text("#!/bin/sh\nllama-server ...\n")
    mine = ["notes.txt", "mine/serve.sh"]
    if name == "merge --as yaml":
        (out / "my-tuned.yaml").write_text("merge_method: task_arithmetic\n")
        mine.append("my-tuned.yaml")
    users = sha256s(out)

    assert run() == 0, "writing an earlier output of the same command again"
    assert_kept(users, out, mine)

    edited = (out / writer.ours).read_text() + "\n# edited by hand\n"
    (out / writer.ours).write_text(edited)
    before = sha256s(out)
    assert run() == 2
    one_line_error(capsys.readouterr().err, str(out / writer.ours), writer.edited_needle, "--overwrite")
    assert_unchanged(before, out)

    assert run("--overwrite") == 0
    assert (out / writer.ours).read_text() != edited
    assert_kept(users, out, mine)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder is left"


def test_push_and_push_point_leave_the_bundle_as_it_was(bundle: Path, hub, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A push stages nothing in the bundle (the card is built in memory, a point in a system temp folder)."""
    from peo_hub.publish.hub import push_point

    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    (copy / "README.md").write_text("---\nlicense: mit\n---\n\n# My card\n")  # a hand-written card is uploaded as is
    before = sha256s(copy)
    monkeypatch.setenv("HF_TOKEN", hub.alice_token)
    assert main(["push", str(copy), "alice/tiny"]) == 0
    push_point(copy, "alice/tiny-point", weights={"helpful": 1.0}, token=hub.alice_token)
    assert_unchanged(before, copy)
    assert hub.server.files("alice/tiny")["README.md"] == (copy / "README.md").read_bytes()
