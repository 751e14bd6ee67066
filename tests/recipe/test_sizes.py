"""peo_hub.recipe.sizes: `recipe validate` refuses sizes that cannot run on this machine, showing the arithmetic
(issue 22: `evaluate.samples: 1e12` passed validation and failed deep in the sweep with a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from peo_hub.cli import main
from peo_hub.data.base import meta_model, resolve_base
from peo_hub.recipe.load import load_recipe
from peo_hub.recipe.sizes import GB, ModelShape, check_sizes, machine_memory, sweep_points
from peo_hub.utils.errors import RecipeError
from recipes import toy_recipe
from snapshots import one_line_error

def _recipe(tmp_path: Path, **changes: object) -> Path:
    return toy_recipe(tmp_path, **changes)


@pytest.fixture(scope="module")
def toy_skeleton(peo_cache: Path):
    return meta_model(resolve_base("embedded:toy"))


def test_the_arithmetic_is_the_recipes(tmp_path: Path, toy_skeleton) -> None:
    recipe = load_recipe(_recipe(tmp_path, **{"evaluate.samples": 10**6}))
    assert sweep_points(recipe) == 3 * 2 + 1  # weights 3 on two aspects, alphas {0, 0.5}, and the base
    rows = 7 * 50 * 10**6
    with pytest.raises(RecipeError) as info:
        check_sizes(recipe, toy_skeleton, prompt_tokens=20, n_prompts=50, memory=GB)
    message = str(info.value)
    assert message.startswith("evaluate.samples: the sweep evaluates at least 7 points x 50 prompts x 1e+06 samples")
    assert f"{rows:.3g} replies" in message and "x 24 bytes = " in message and "1 GB of memory" in message
    check_sizes(recipe, toy_skeleton, prompt_tokens=20, n_prompts=50, memory=64 * GB)  # fits a bigger machine


def test_the_kv_cache_of_one_generate_call(tmp_path: Path, toy_skeleton) -> None:
    recipe = load_recipe(_recipe(tmp_path, **{"evaluate.batch_size": 10**7, "evaluate.samples": 10**5}))
    shape = ModelShape.of(toy_skeleton)
    assert shape.kv_bytes_per_token == 2 * shape.layers * 2 * toy_skeleton.config.hidden_size  # K and V, 2 bytes
    with pytest.raises(RecipeError, match=r"^evaluate\.batch_size: one generate call of 1e\+07 rows x \(20 prompt \+ "
                                          rf"40 new\) tokens holds a KV cache of 1e\+07 x 60 x {shape.kv_bytes_per_token} "
                                          "bytes per token"):
        check_sizes(recipe, toy_skeleton, prompt_tokens=20, n_prompts=50, memory=64 * GB)
    # the rows of a call are never more than the sweep has: a huge batch_size on a small sweep fits
    small = load_recipe(_recipe(tmp_path, **{"evaluate.batch_size": 10**12, "evaluate.samples": 4}))
    check_sizes(small, toy_skeleton, prompt_tokens=20, n_prompts=50, memory=4 * GB)


def test_one_dpo_step(tmp_path: Path, toy_skeleton) -> None:
    recipe = load_recipe(_recipe(tmp_path, **{"train.dpo.per_device_train_batch_size": 10**8}))
    with pytest.raises(RecipeError, match=r"^train\.dpo\.per_device_train_batch_size: one DPO step on 100000000 pairs"):
        check_sizes(recipe, toy_skeleton, prompt_tokens=20, n_prompts=50, memory=4 * GB)


@pytest.mark.parametrize("change, needle", [
    ({"evaluate.samples": 10**12}, "evaluate.samples: the sweep evaluates at least 7 points x"),
    ({"evaluate.batch_size": 10**12, "evaluate.samples": 10**6}, "evaluate.batch_size: one generate call of"),
])
def test_validate_refuses_what_this_machine_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       change: dict, needle: str, peo_cache: Path) -> None:
    if machine_memory() <= 0:
        pytest.skip("this machine does not say how much memory it has")
    recipe = _recipe(tmp_path, **change)
    capsys.readouterr()
    assert main(["recipe", "validate", str(recipe)]) == 2
    one_line_error(capsys.readouterr().err, needle, "of memory (RAM and GPUs)")
    out = tmp_path / "out"
    assert main(["recipe", "run", str(recipe), "--output", str(out)]) == 2
    assert not out.exists()
