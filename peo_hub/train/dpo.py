"""Phase 1: one LoRA adapter per aspect, trained with TRL's ``DPOTrainer`` from the same base.

TRL does the DPO (its losses, reference handling through the disabled adapter, logging,
progress bar); this module only turns a recipe section into a ``DPOConfig``, saves the
adapter atomically, and records what a reader of the bundle needs to trust it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from peo_hub.bundle.manifest import ADAPTER_CONFIG, ADAPTER_FILES, ADAPTER_WEIGHTS, TRAINING_INFO
from peo_hub.utils.errors import PEOError
from peo_hub.utils.fsutil import atomic_dir
from peo_hub.train.config import DPOSpec, LoraSpec

logger = logging.getLogger(__name__)


def _checkpointing_name(values: dict[str, Any]) -> None:
    """Pass the recipe's ``gradient_checkpointing`` under the name this transformers reads.

    transformers 5.x renamed ``gradient_checkpointing(_kwargs)`` to
    ``activation_checkpointing(_kwargs)`` and warns (FutureWarning) whenever the old name is
    set, which TRL's ``DPOConfig`` always does (its default is True). The new name, with the
    old one left unset, gives the same setting without a library warning in front of
    ``recipe validate``'s verdict. Older 5.x releases know only the old name: kept there.
    """
    from peo_hub.train.config import dpo_config_fields

    if "activation_checkpointing" not in dpo_config_fields():
        return
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if old in values:
            value = values.pop(old)
            values.setdefault(new, value)
        values[old] = None  # unset: TRL's default (True) would bring the warning back


def dpo_config(spec: DPOSpec, output_dir: str, seed: int) -> Any:
    """A TRL ``DPOConfig`` from the recipe, with device-dependent defaults resolved."""
    from trl import DPOConfig

    cuda = torch.cuda.is_available()
    values = spec.model_dump()
    if values["bf16"] == "auto":
        values["bf16"] = bool(cuda and torch.cuda.is_bf16_supported())
    if values["gradient_checkpointing"] == "auto":
        values["gradient_checkpointing"] = cuda
    _checkpointing_name(values)
    steps = values["max_steps"]
    values.setdefault("logging_steps", max(1, steps // 10) if steps > 0 else 10)
    values.setdefault("save_strategy", "no")
    values.setdefault("report_to", [])
    values.setdefault("use_cpu", not cuda)
    return DPOConfig(output_dir=output_dir, seed=seed, data_seed=seed, **values)


def _summary(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """Last logged DPO statistics; chosen/rejected log-probs show collapse (both falling)."""
    keys = ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")
    logged = [entry for entry in log_history if "loss" in entry]
    out: dict[str, float] = {}
    if logged:
        out.update({f"first/{k}": float(logged[0][k]) for k in keys if k in logged[0]})
        out.update({f"last/{k}": float(logged[-1][k]) for k in keys if k in logged[-1]})
    return out


def train_adapter(
    *,
    base_path: str,
    tokenizer: Any,
    dataset: Any,
    lora: LoraSpec,
    dpo: DPOSpec,
    output: str | os.PathLike[str],
    seed: int,
    base_model_id: str,
    base_revision: str | None = None,
    info: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train one DPO LoRA adapter on ``dataset`` (prompt/chosen/rejected) into ``output``.

    ``base_model_id`` is written into ``adapter_config.json`` as the base (a Hub id, or
    the bundle-relative folder), so that the adapter names the base a user can get, not
    the trainer's cache path. Returns the training record also saved as
    ``training_info.json``. ``callbacks`` (e.g. the run's progress view) replace the
    Trainer's own bar and printed metrics.
    """
    from transformers import AutoModelForCausalLM, set_seed
    from trl import DPOTrainer

    set_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_path, revision=base_revision, dtype=torch.float32)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peo-dpo-") as scratch:
        args = dpo_config(dpo, scratch, seed)
        if callbacks:
            args.disable_tqdm = True  # the caller shows progress
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora.to_peft(),
            callbacks=list(callbacks) or None,
        )
        if callbacks:
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # it prints every metrics dict to stdout
        trainer.train()
        seconds = time.perf_counter() - started
        # Under `accelerate launch` (DDP, FSDP, DeepSpeed) every process must take part in
        # save_model (FSDP and ZeRO-3 gather the sharded weights); only the main process
        # writes, into its own scratch folder, and then moves the adapter into place.
        saved = Path(scratch) / "final"
        trainer.save_model(str(saved))
        accelerator = trainer.accelerator
        record = {
            "train_seconds": round(seconds, 2),
            "pairs": int(dataset.num_rows),
            "steps": int(trainer.state.global_step),
            "metrics": _summary(trainer.state.log_history),
            **({"processes": accelerator.num_processes, "distributed_type": str(accelerator.distributed_type.value)}
               if accelerator.num_processes > 1 else {}),
            **dict(info or {}),
        }
        if accelerator.is_main_process:
            missing = [name for name in ADAPTER_FILES if not (saved / name).is_file()]
            if missing:
                raise PEOError(
                    f"DPO finished but the trainer saved no {missing[0]} (sharded weights were not gathered); with "
                    "FSDP set fsdp_state_dict_type: FULL_STATE_DICT, with DeepSpeed ZeRO-3 zero3_save_16bit_model: "
                    "true (see recipes/accelerate/)"
                )
            _refuse_non_finite(saved / ADAPTER_WEIGHTS, dpo)
            with atomic_dir(output) as tmp:
                for name in ADAPTER_FILES:  # not the tokenizer or training_args.bin save_model adds
                    shutil.copy2(saved / name, tmp / name)
                config_path = tmp / ADAPTER_CONFIG
                config = json.loads(config_path.read_text())
                config["base_model_name_or_path"] = base_model_id
                config["revision"] = base_revision
                config_path.write_text(json.dumps(config, indent=2) + "\n")
                (tmp / TRAINING_INFO).write_text(json.dumps(record, indent=2) + "\n")
        accelerator.wait_for_everyone()
    return record


def _refuse_non_finite(weights: Path, dpo: DPOSpec) -> None:
    """A DPO run that diverged (inf/nan weights) is an error, not an adapter to sweep."""
    from safetensors.torch import load_file

    if not all(bool(torch.isfinite(t).all()) for t in load_file(str(weights)).values()):
        raise PEOError(f"DPO diverged: the adapter has inf/nan weights (learning_rate {dpo.learning_rate}, beta "
                       f"{dpo.beta}); lower train.dpo.learning_rate and run again with --resume")


def mix_datasets(datasets: Mapping[str, Any], weights: Mapping[str, float], seed: int) -> Any:
    """MORL's training set for one weight vector: each aspect's pairs in proportion to its weight.

    The mixture keeps the size of one aspect's set, so a MORL run costs the same number of
    steps as one PEO aspect run: the comparison is per run, not per pair.
    """
    import datasets as hf_datasets

    size = min(ds.num_rows for ds in datasets.values())
    parts = []
    for aspect, ds in datasets.items():
        count = round(weights.get(aspect, 0.0) * size)
        if count:
            parts.append(ds.shuffle(seed=seed).select(range(min(count, ds.num_rows))))
    return hf_datasets.concatenate_datasets(parts).shuffle(seed=seed)
