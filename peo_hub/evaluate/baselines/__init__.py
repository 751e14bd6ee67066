"""Baselines evaluated in the sweep next to PEO: what a skeptic tries first, on the same prompts and judges.

:mod:`~peo_hub.evaluate.baselines.registry` holds the registry (:data:`BASELINES`,
:func:`register_baseline`); each baseline registers itself in its own module, imported here:
``system_prompt`` (the base under a safety system prompt), ``mod`` (decoding-time mixing of the
aspect policies) and ``steer`` (activation steering along a refusal direction). ``soup`` and
``morl`` are baselines too, but the family and the recipe's training provide them. A new
baseline is one module with one ``register_baseline`` call, imported here (docs/baselines.md).
"""

# Registration, in the order users see in errors and docs.
from peo_hub.evaluate.baselines import system_prompt  # noqa: F401  isort: skip
from peo_hub.evaluate.baselines import mod  # noqa: F401  isort: skip
from peo_hub.evaluate.baselines import steer  # noqa: F401  isort: skip
from peo_hub.evaluate.baselines.registry import (BASELINES, Baseline, BaselineContext, BaselinePoint,
                                                 register_baseline)

__all__ = ["BASELINES", "Baseline", "BaselineContext", "BaselinePoint", "register_baseline"]
