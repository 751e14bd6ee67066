"""``python -m peo_hub.train_aspect``, with a look at the base TRL loads: for the ``accelerate launch`` tests.

Each process writes ``$PEO_PROBE_OUT/rank<R>.json`` right after TRL's ``create_model_from_path``
returns: the devices its parameters are on (``meta`` = the process built no weights, as FSDP's
RAM-efficient loading and ZeRO-3 intend), their dtypes, the keyword arguments TRL passed to
``from_pretrained``, the launcher's FSDP/DeepSpeed variables, and whether transformers'
loading saw FSDP RAM-efficient loading or ZeRO-3 init as on. The probe wraps TRL's own function and calls it; it changes nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import trl.trainer.dpo_trainer as dpo_trainer

_real = dpo_trainer.create_model_from_path


def _probe(model_id, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - TRL's signature
    model = _real(model_id, *args, **kwargs)
    from transformers.distributed.fsdp import is_fsdp_enabled
    from transformers.integrations import is_deepspeed_zero3_enabled

    rank = int(os.environ.get("RANK", "0"))
    report = {
        "env": {k: os.environ.get(k) for k in ("ACCELERATE_USE_FSDP", "FSDP_CPU_RAM_EFFICIENT_LOADING",
                                               "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO3_INIT")},
        "transformers_fsdp_loading": is_fsdp_enabled(),
        "transformers_zero3_init": is_deepspeed_zero3_enabled(),
        "rank": rank,
        "devices": sorted({p.device.type for p in model.parameters()}),
        "dtypes": sorted({str(p.dtype) for p in model.parameters()}),
        "kwargs": {k: str(v) for k, v in kwargs.items()},
    }
    Path(os.environ["PEO_PROBE_OUT"], f"rank{rank}.json").write_text(json.dumps(report))
    return model


dpo_trainer.create_model_from_path = _probe

if __name__ == "__main__":
    from peo_hub.train_aspect import main

    sys.exit(main())
