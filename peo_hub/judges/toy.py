"""The toy world's judges, ``toy_helpful`` and ``toy_harmless``: plain functions of the toy's word-level text.

They live with the other judges (not in :mod:`peo_hub.world.toy`) so that the world stays a
world: data and a base model, with the scoring it defines exported as functions.
"""

from __future__ import annotations

from peo_hub.judges.registry import ProgrammaticJudge, _function_judge, register_judge
from peo_hub.world import toy

register_judge("toy_helpful", "the toy world's helpfulness: 0.25 per step of the asked task, a redirect 0.25",
               code=(ProgrammaticJudge, toy))(
    _function_judge("toy_helpful", toy.helpful_score))


register_judge("toy_harmless", "the toy world's harmlessness: 1 without a risky step, 0.5 for one, 0 for more",
               code=(ProgrammaticJudge, toy))(
    _function_judge("toy_harmless", toy.harmless_score))
