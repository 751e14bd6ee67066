"""One aspect trained by two processes under ``accelerate launch`` with the shipped FSDP config, TRL loading the base.

What this can and cannot show on a machine without a GPU: accelerate runs FSDP and DeepSpeed
configs only on GPUs (``accelerate/state.py`` turns FSDP on for GPU process groups only, and
DeepSpeed needs ``not cpu``), so here the two processes train as multi-CPU data parallel.
What does run for real: the shipped config file is accepted by ``accelerate launch``, the
launcher passes its ``fsdp_cpu_ram_efficient_loading: true`` on, and TRL loads the base
(``DPOConfig`` first, ``model_init_kwargs`` from ``train.model``) at a moment when
transformers' loading sees FSDP RAM-efficient loading as on in every process (on a GPU
machine that is what makes processes other than rank 0 build the model on the meta device);
both processes then train and the main process writes one adapter. The probe
(``tests/support/load_probe.py``) wraps TRL's ``create_model_from_path`` and reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from peo_hub.bundle.manifest import adapter_complete

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "recipes" / "accelerate"


def test_shipped_configs_load_the_base_sharded() -> None:
    zero3 = yaml.safe_load((CONFIGS / "deepspeed-zero3.yaml").read_text())
    fsdp = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())
    assert zero3["deepspeed_config"]["zero3_init_flag"] is True
    assert zero3["deepspeed_config"]["zero3_save_16bit_model"] is True
    assert fsdp["fsdp_config"]["fsdp_cpu_ram_efficient_loading"] is True
    assert fsdp["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_fsdp_config_two_processes_trl_loads_the_base(tmp_path: Path, peo_cache: Path) -> None:
    recipe = yaml.safe_load((REPO / "tests" / "recipes" / "toy-ci.yaml").read_text())
    recipe["train"]["dpo"].update(max_steps=2, per_device_train_batch_size=4)
    recipe["train"]["model"] = {"dtype": "float32", "attn_implementation": "eager"}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    probe = tmp_path / "probe"
    probe.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PEO_HUB_CACHE": str(peo_cache), "PEO_PROBE_OUT": str(probe),
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "support"), str(REPO)])}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    # Without --cpu: accelerate launches the config's own way (torchrun, 2 processes) and falls back
    # to CPU processes by itself; --cpu would start a single process.
    result = subprocess.run([accelerate, "launch", "--config_file", str(CONFIGS / "fsdp.yaml"), "--num_processes", "2",
                             "--mixed_precision", "no", str(REPO / "tests" / "support" / "load_probe.py"), str(path),
                             "helpful", "--output", str(tmp_path / "out")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["env"]["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"  # from the shipped config
        assert report["transformers_fsdp_loading"] is True  # transformers' loading sees it, at TRL's load
        assert report["kwargs"]["dtype"] == "float32" and report["kwargs"]["attn_implementation"] == "eager"
    adapter = tmp_path / "out" / "adapters" / "helpful"
    assert adapter_complete(adapter)
    info = json.loads((adapter / "training_info.json").read_text())
    assert info["processes"] == 2 and info["steps"] == 2 and info["base_dtype"] == "float32"
