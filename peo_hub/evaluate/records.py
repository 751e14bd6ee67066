"""TODO docstring (evaluate.records, from sweep.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from peo_hub.utils.errors import RecipeError
from peo_hub.core.policy import Preference
if TYPE_CHECKING:
    pass


SAMPLE_REPLIES = 6  # replies kept per prompt in a record, for reading what a point says


def read_evaluation(path: Path) -> dict[str, Any]:
    """One point's evaluation record, or one line naming the damaged file and the fix."""
    fix = f"delete {path} and run the same command again (`--resume`) to evaluate that point again"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecipeError(f"evaluation record {path} is damaged ({str(exc).splitlines()[0]}); {fix}") from None
    missing = [key for key in ("method", "metrics", "prompts") if not isinstance(data, dict) or key not in data]
    if missing:
        what = "a JSON object" if not isinstance(data, dict) else f"an evaluation record (no {missing[0]!r})"
        raise RecipeError(f"evaluation record {path} is not {what}; {fix}")
    return data


def _record(method: str, label: str, preference: Preference | None, metrics: dict[str, Any],
            prompts: list[str], replies: list[list[str]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "label": label,
        "method": method,
        "weights": None if preference is None else preference.weights,
        "alpha": None if preference is None else preference.alpha,
        "coefficients": None if preference is None else preference.coefficients,
        "metrics": metrics,
        "prompts": prompts,
        "samples": {p: rs[:SAMPLE_REPLIES] for p, rs in zip(prompts, replies)},
        **(extra or {}),
    }
