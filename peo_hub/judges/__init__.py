"""Judges: what an aspect's score of a reply is, found by ``type`` in a recipe.

:mod:`~peo_hub.judges.registry` holds the registry, the recipe's ``judge:`` schema
(:class:`~peo_hub.judges.registry.JudgeSpec`) and :func:`~peo_hub.judges.registry.build_judge`.
Each built-in judge registers itself when its module is imported; importing this package
imports them all, so a recipe can name any of them: the toy world's (:mod:`.toy`), reward
and cost models (:mod:`.reward_model`) and the real-text judges (:mod:`.text`, built on the
refusal detector :mod:`.refusal`). A new judge is one module with one ``register_judge`` call,
imported here.
"""

# Registration, in the order users see in errors and docs: the toy world's, reward models, real text.
from peo_hub.judges import toy  # noqa: F401  isort: skip
from peo_hub.judges import reward_model  # noqa: F401  isort: skip
from peo_hub.judges import text  # noqa: F401  isort: skip
from peo_hub.judges.registry import JUDGES, Judge, JudgeSpec, build_judge, judge_code_hash, register_judge

__all__ = ["JUDGES", "Judge", "JudgeSpec", "build_judge", "judge_code_hash", "register_judge"]
