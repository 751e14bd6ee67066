"""Phase 3 as an optimisation: for one weight vector, a bounded search over alpha.

The paper's third phase chooses how far to extrapolate; a fixed grid (``sweep.alpha``)
spends the same evaluations on every weight vector whether or not they help. The search
instead asks, for weights ``w``, which ``alpha`` in ``[low, high]`` maximises

    objective(alpha) = sum_i w_i * score_i(alpha)          (on the SELECTION prompts)

minus a penalty of 1 when the degeneration guard flags the policy (scores are in [0, 1], so
a flagged policy is worse than every unflagged one, and the search walks away from babble
instead of being drawn to a judge that babble happens to please). The linear scalarisation
with the point's own weights is what "the policy for preference w" means in PEO; each trial
is one policy evaluated on the selection prompts. ``scipy.optimize.minimize_scalar``
(``method="bounded"``: Brent's method, golden-section steps with parabolic interpolation)
runs the search; its budget is ``evaluations`` trials. The trial with the best objective is
kept, and the sweep then evaluates that alpha on every prompt, so it is reported on the
confirmation prompts like every grid point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Mapping

from scipy.optimize import minimize_scalar

#: What a trial returns: the policy's mean score per aspect on the selection prompts, and
#: whether the degeneration guard flags it.
Evaluate = Callable[[float], tuple[Mapping[str, float], bool]]


@dataclass
class Trial:
    alpha: float
    scores: dict[str, float]
    flagged: bool
    objective: float


def objective(weights: Mapping[str, float], scores: Mapping[str, float], flagged: bool) -> float:
    """The scalarised value a search MAXIMISES: ``sum w_i s_i``, minus 1 for a flagged policy."""
    total = sum(weights.values())
    return sum(w / total * float(scores[a]) for a, w in weights.items()) - (1.0 if flagged else 0.0)


def search_alpha(evaluate: Evaluate, weights: Mapping[str, float], bounds: tuple[float, float],
                 evaluations: int, xatol: float = 0.01) -> tuple[Trial, list[Trial]]:
    """The best trial and every trial, for at most ``evaluations`` policies evaluated.

    Alphas are rounded to 1e-3 (a search finer than that measures noise, and rounded values
    give readable point labels); a repeated alpha is not evaluated twice.
    """
    if evaluations < 1:
        raise ValueError("the search needs at least one evaluation")
    trials: dict[float, Trial] = {}

    def negative(alpha: float) -> float:
        alpha = round(float(alpha), 3)
        if alpha not in trials:
            if len(trials) >= evaluations:
                raise _Budget
            scores, flagged = evaluate(alpha)
            trials[alpha] = Trial(alpha, dict(scores), bool(flagged), objective(weights, scores, flagged))
        return -trials[alpha].objective

    try:
        # Brent's bounded method evaluates once to start, then once per iteration.
        minimize_scalar(negative, bounds=bounds, method="bounded", options={"maxiter": evaluations, "xatol": xatol})
    except _Budget:
        pass
    history = list(trials.values())
    best = max(history, key=lambda t: (t.objective, -t.alpha))
    return best, history


class _Budget(Exception):
    """Raised inside the objective when the evaluation budget is spent (stops scipy's loop)."""


def trials_json(history: list[Trial]) -> list[dict[str, object]]:
    return [asdict(t) for t in history]
