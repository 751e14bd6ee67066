"""The PEO formulation, in one place.

Every PEO policy is ``θ₀ + Σᵢ cᵢ Δᵢ`` where ``Δᵢ`` is aspect ``i``'s LoRA task vector.
Phase 2 (interpolation) picks normalised preference weights ``w`` (``wᵢ ≥ 0``,
``Σ wᵢ = 1``): ``θ_gen = θ₀ + Σ wᵢ Δᵢ``. Phase 3 (extrapolation) moves further along the
same direction: ``θ = θ_gen + α (θ_gen − θ₀)``, hence ``cᵢ = (1 + α) wᵢ``.
``α = 0`` is a rewarded soup; a one-hot ``w`` with ``α > 0`` is ExPO.

Keeping this a single small function is deliberate: another reading of the paper (for
instance a short generalist fine-tune from ``θ_gen`` before extrapolating) becomes a second
entry in :data:`FORMULATIONS`, and everything downstream (live scales, exported adapters,
mergekit YAML) only ever sees coefficients.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from peo_hub.utils.errors import PreferenceError

DEFAULT_FORMULATION = "extrapolated_soup"
#: Coefficients with |c| above this were never evaluated by any default sweep; the policy is
#: still exact, but may be far off the measured front (a warning, not an error).
MAX_SAFE_COEFFICIENT = 3.0
#: Beyond this a coefficient is no policy at all: c·s·B overflows or swamps the base weights.
MAX_COEFFICIENT = 1000.0
#: A sweep grid larger than this is a typo (``sweep.weights: 1e9``), not a plan.
MAX_GRID_POINTS = 10_000


def _extrapolated_soup(weights: Mapping[str, float], alpha: float) -> dict[str, float]:
    """``cᵢ = (1 + α) wᵢ``: interpolate with ``w``, then extrapolate away from the base by ``α``."""
    return {name: (1.0 + alpha) * w for name, w in weights.items()}


FORMULATIONS: dict[str, Callable[[Mapping[str, float], float], dict[str, float]]] = {
    DEFAULT_FORMULATION: _extrapolated_soup,
}


@dataclass(frozen=True)
class Preference:
    """A point of the PEO family: normalised weights, alpha, and the coefficients they give.

    When built from raw coefficients (task arithmetic), ``weights`` is the normalised
    direction of ``coefficients`` and ``alpha`` the matching extrapolation, when the
    coefficients are non-negative with a positive sum; otherwise both are ``None``.
    """

    coefficients: dict[str, float]
    weights: dict[str, float] | None = None
    alpha: float | None = None
    formulation: str = DEFAULT_FORMULATION

    def label(self) -> str:
        """A short, file-name-safe name such as ``helpful0.70-harmless0.30-a0.50``, unique per point.

        Two decimals keep the usual grids readable; when a value needs more (``alpha: 0.501``,
        ``weights: 201``), a hash of the exact values is appended, so two distinct points can
        never share a label (their evaluation records and front entries are keyed by it).
        """
        if self.weights is not None and self.alpha is not None:
            values = [*self.weights.values(), self.alpha]
            text = "-".join(f"{k}{v:.2f}" for k, v in self.weights.items()) + f"-a{self.alpha:.2f}"
        else:
            values = list(self.coefficients.values())
            text = "c-" + "-".join(f"{k}{v:.2f}" for k, v in self.coefficients.items())
        if any(float(f"{v:.2f}") != v for v in values):
            exact = repr([float(v) for v in values]).encode()
            text += "-x" + hashlib.sha256(exact).hexdigest()[:8]
        return text


def _check_finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise PreferenceError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise PreferenceError(f"{name} must be a finite number, got {value}")
    return value


def _check_aspects(given: Iterable[str], aspects: Sequence[str]) -> None:
    unknown = [a for a in given if a not in aspects]
    if unknown:
        raise PreferenceError(
            f"unknown aspect {unknown[0]!r}; this model's aspects are: {', '.join(aspects)}"
        )


def normalise_weights(weights: Mapping[str, float], aspects: Sequence[str]) -> dict[str, float]:
    """Validate preference weights and scale them to sum to one, in ``aspects`` order.

    Aspects left out get weight 0. Negative, non-finite or all-zero weights are refused:
    they do not describe a trade-off (use raw coefficients for task arithmetic).
    """
    if not aspects:
        raise PreferenceError("the model has no aspects; train at least one adapter first")
    _check_aspects(weights, aspects)
    values = {a: _check_finite(f"weight for {a!r}", weights.get(a, 0.0)) for a in aspects}
    negative = [a for a, v in values.items() if v < 0]
    if negative:
        raise PreferenceError(
            f"weight for {negative[0]!r} is negative ({values[negative[0]]}); preference weights "
            "must be >= 0 (use raw coefficients for task arithmetic)"
        )
    largest = max(values.values())
    if largest <= 0:
        raise PreferenceError(
            "all preference weights are zero; give at least one aspect a positive weight, "
            f"e.g. {aspects[0]}=1"
        )
    # Scale by the largest first: 1e308 + 1e308 overflows, 1 + 1 does not.
    scaled = {a: v / largest for a, v in values.items()}
    total = sum(scaled.values())
    return {a: v / total for a, v in scaled.items()}


def make_preference(
    aspects: Sequence[str],
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.0,
    coefficients: Mapping[str, float] | None = None,
    formulation: str = DEFAULT_FORMULATION,
) -> Preference:
    """Build a :class:`Preference` from weights + alpha, or from raw coefficients."""
    if formulation not in FORMULATIONS:
        raise PreferenceError(
            f"unknown formulation {formulation!r}; known: {', '.join(FORMULATIONS)}"
        )
    if weights is None and coefficients is None:
        raise PreferenceError(
            "no preference given; give weights (e.g. helpful=0.7,harmless=0.3) or raw coefficients"
        )
    if weights is not None and coefficients is not None:
        raise PreferenceError("give either preference weights or raw coefficients, not both")
    if coefficients is not None:
        if alpha != 0:
            raise PreferenceError(
                f"alpha={alpha} applies to preference weights only; with raw coefficients fold the "
                "extrapolation into them (c = (1 + alpha) * w)"
            )
        _check_aspects(coefficients, aspects)
        coefs = {a: _check_finite(f"coefficient for {a!r}", coefficients.get(a, 0.0)) for a in aspects}
        _check_bounded(coefs)
        total = sum(coefs.values())
        if total > 0 and all(c >= 0 for c in coefs.values()) and formulation == DEFAULT_FORMULATION:
            return Preference(
                coefficients=coefs,
                weights={a: c / total for a, c in coefs.items()},
                alpha=total - 1.0,
                formulation=formulation,
            )
        return Preference(coefficients=coefs, formulation=formulation)
    alpha = _check_finite("alpha", alpha)
    if alpha < -1.0:
        raise PreferenceError(
            f"alpha={alpha} flips every adapter's sign; use alpha >= -1 (0 = soup, > 0 extrapolates)"
        )
    if alpha > MAX_COEFFICIENT - 1:
        raise PreferenceError(f"alpha={alpha:g} is beyond {MAX_COEFFICIENT - 1:g}; the coefficients (1 + alpha) * w "
                              "would swamp the base weights, use a smaller alpha")
    normalised = normalise_weights(weights, aspects)  # type: ignore[arg-type]
    coefs = FORMULATIONS[formulation](normalised, alpha)
    _check_bounded(coefs)
    return Preference(coefficients=coefs, weights=normalised, alpha=alpha, formulation=formulation)


def _check_bounded(coefficients: Mapping[str, float]) -> None:
    far = {a: c for a, c in coefficients.items() if abs(c) > MAX_COEFFICIENT}
    if far:
        a, c = next(iter(far.items()))
        raise PreferenceError(f"coefficient for {a!r} is {c:g}; |c| must be at most {MAX_COEFFICIENT:g} "
                              f"(beyond about {MAX_SAFE_COEFFICIENT:g} outputs degrade, beyond that the weights overflow)")


def coefficient_warning(coefficients: Mapping[str, float],
                        evaluated: tuple[float, float] | None = None) -> str | None:
    """One line when coefficients leave a sane range or the range a sweep evaluated, else ``None``."""
    far = {a: c for a, c in coefficients.items() if abs(c) > MAX_SAFE_COEFFICIENT}
    if far:
        a, c = next(iter(far.items()))
        return (f"coefficient {a}={c:g} is beyond |c| <= {MAX_SAFE_COEFFICIENT:g}; the policy is exact "
                "but far from anything evaluated, expect degraded outputs")
    if evaluated is not None:
        lo, hi = evaluated
        outside = {a: c for a, c in coefficients.items() if c < lo - 1e-9 or c > hi + 1e-9}
        if outside:
            a, c = next(iter(outside.items()))
            return (f"coefficient {a}={c:g} is outside the evaluated range [{lo:g}, {hi:g}] of this "
                    "bundle's sweep; its quality was never measured")
    return None


def parse_assignments(text: str, what: str = "weights") -> dict[str, float]:
    """Parse ``"helpful=0.7,harmless=0.3"`` into a dict, with a clear error for bad syntax or repeats."""
    result: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise PreferenceError(
                f"cannot read {what} item {item!r}; write them as name=value pairs, e.g. helpful=0.7,harmless=0.3"
            )
        if name.strip() in result:
            raise PreferenceError(f"{what} name {name.strip()!r} is given twice; give each aspect once")
        result[name.strip()] = _check_finite(f"{what} for {name.strip()!r}", value)
    if not result:
        raise PreferenceError(f"no {what} given; write e.g. helpful=0.7,harmless=0.3")
    return result


def weight_grid(aspects: Sequence[str], points_per_edge: int) -> list[dict[str, float]]:
    """All weight vectors on the simplex lattice with ``points_per_edge`` values per axis.

    For two aspects and 5 points: (0, 1), (0.25, 0.75), ..., (1, 0). For N aspects the
    lattice has ``C(points_per_edge + N - 2, N - 1)`` points, corners included.
    """
    if points_per_edge < 2:
        raise PreferenceError("sweep.weights must be >= 2 (the two corners at least)")
    size = grid_size(len(aspects), points_per_edge)
    if size > MAX_GRID_POINTS:
        raise PreferenceError(f"sweep.weights {points_per_edge} gives {size:,} weight vectors for {len(aspects)} aspects; "
                              f"keep the grid at most {MAX_GRID_POINTS:,} (e.g. weights: 5)")
    steps = points_per_edge - 1
    grid = [{a: k / steps for a, k in zip(aspects, combo)} for combo in _compositions(steps, len(aspects))]
    grid.sort(key=lambda w: tuple(-w[a] for a in aspects))
    return grid


def _compositions(total: int, parts: int) -> Iterable[tuple[int, ...]]:
    """Every tuple of ``parts`` non-negative integers summing to ``total`` (the lattice, no waste)."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def grid_size(n_aspects: int, points_per_edge: int) -> int:
    """How many weight vectors :func:`weight_grid` makes: ``C(points_per_edge + N - 2, N - 1)``."""
    return math.comb(points_per_edge + n_aspects - 2, n_aspects - 1)
