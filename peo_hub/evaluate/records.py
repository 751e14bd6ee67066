"""Evaluation records: ``evaluations/<kind>-<label>.json``, one per evaluated policy, and their one owner.

A record is what the sweep learned about one point of the family (or one baseline): every
judge score grouped by prompt, a few sample replies to read, the degeneration guard's
measures, and the stamp of the evaluation that made it. The front is computed from records
alone, so a stopped sweep resumes point by point: :meth:`RecordStore.finished` says which
points are done, and a record that was damaged (truncated, not a record, changed since
peo-hub wrote it) is named in one line with the fix, never read half.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from peo_hub.core.policy import Preference
from peo_hub.utils.errors import RecipeError, first_line
from peo_hub.utils.fsutil import atomic_write_json, ledger_of

SAMPLE_REPLIES = 6  # replies kept per prompt in a record, for reading what a point says
REQUIRED = ("method", "metrics", "prompts")


def read_evaluation(path: Path) -> dict[str, Any]:
    """One point's evaluation record, or one line naming the damaged file and the fix."""
    fix = f"delete {path} and run the same command again (`--resume`) to evaluate that point again"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecipeError(f"evaluation record {path} is damaged ({first_line(exc)}); {fix}") from None
    missing = [key for key in REQUIRED if not isinstance(data, dict) or key not in data]
    if missing:
        what = "a JSON object" if not isinstance(data, dict) else f"an evaluation record (no {missing[0]!r})"
        raise RecipeError(f"evaluation record {path} is not {what}; {fix}")
    return data


def make_record(method: str, label: str, preference: Preference | None, metrics: dict[str, Any],
                prompts: list[str], replies: list[list[str]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A record's common fields; the sweep adds the guard's measures and the stamp."""
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


class RecordStore:
    """The ``evaluations/`` folder of a bundle: where each point's record lives, and whether it is done.

    ``kind`` is the record's method (``base``, ``soup``, ``peo``, ``morl``) or a prefix for
    records that are not front points (``search-trial``, ``search``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, kind: str, label: str) -> Path:
        return self.folder / f"{kind}-{label}.json"

    def finished(self, kind: str, label: str) -> bool:
        """Whether the record is on disk and still as written (a changed one is evaluated again,
        which only ``--overwrite`` lets through: otherwise the run refused the folder up front)."""
        path = self.path(kind, label)
        if not path.is_file():
            return False
        ledger = ledger_of(path.parent)
        return ledger is None or ledger.intact(path)

    def read(self, kind: str, label: str) -> dict[str, Any]:
        return read_evaluation(self.path(kind, label))

    def write(self, kind: str, label: str, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path(kind, label), record)

    def paths(self) -> Iterator[Path]:
        """Every record file, in name order."""
        return iter(sorted(self.folder.glob("*.json")))
