"""The refusal plane, the baselines' costs and controllability, as text for people.

Why a module: the model card (:mod:`peo_hub.bundle.card`) and the Space
(:mod:`peo_hub.serve.space`) say the same things about a point ("at this setting it refused 91%
of harmful and 6% of benign evaluation requests"), so they say them with the same words.
Everything is read from front.json (:class:`~peo_hub.bundle.front.Front`): ``refusal`` per
point, ``method_cost``, ``hypervolume_difference``, ``controllability``.
"""

from __future__ import annotations

from typing import Any, Mapping

from peo_hub.bundle.front import Front, FrontPoint


def percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def rate_text(rate: Any) -> str:
    """``91% [85%, 96%]``: a refusal rate and its 95% interval."""
    if rate is None:
        return "–"
    ci = f" [{percent(rate.ci[0])}, {percent(rate.ci[1])}]" if rate.ci is not None else ""
    return percent(rate.rate) + ci


def refusal_sentence(point: FrontPoint) -> str | None:
    """"it refused 91% of harmful and 6% of benign evaluation requests (95% CI ...)", or ``None``."""
    plane = point.refusal
    if plane is None or (plane.harmful is None and plane.benign is None):
        return None
    parts = [f"{percent(rate.rate)} of {kind}" for kind, rate in (("harmful", plane.harmful), ("benign", plane.benign))
             if rate is not None]
    cis = [f"{kind} {percent(rate.ci[0])}–{percent(rate.ci[1])}" for kind, rate in
           (("harmful", plane.harmful), ("benign", plane.benign)) if rate is not None and rate.ci is not None]
    return f"it refused {' and '.join(parts)} evaluation requests" + (f" (95% CI {', '.join(cis)})" if cis else "")


def _setting(point: FrontPoint) -> str:
    """A point's place on its own dial, in a few characters."""
    dial = (point.model_extra or {}).get("dial")
    if isinstance(dial, Mapping):
        return f"{dial.get('name')} {dial.get('value'):g}"
    parts = []
    if point.weights:
        parts.append("w " + "/".join(f"{v:g}" for v in point.weights.values()))
    if point.alpha is not None:
        parts.append(f"α {point.alpha:g}")
    return ", ".join(parts) or "–"


def refusal_lines(front: Front) -> list[str]:
    """The card's refusal plane: every point's share of harmful and benign evaluation requests refused."""
    points = [(i, p) for i, p in enumerate(front.points) if p.refusal is not None]
    if not points:
        return []
    lines = ["## Refusal plane", "",
             "Share of the harmful and of the benign **confirmation** requests each point refused (the project's "
             "refusal detector on its replies; 95% prompt-level intervals). A useful safety dial refuses the first "
             "and answers the second.", "",
             "| # | method | setting | harmful refused | benign refused |", "|---|---|---|---|---|"]
    for i, point in points:
        lines.append(f"| {i} | {point.method} | {_setting(point)} | {rate_text(point.refusal.harmful)} | "
                     f"{rate_text(point.refusal.benign)} |")
    return lines + [""]


def baseline_lines(front: Front) -> list[str]:
    """What each method costs and how it compares with PEO (front.json ``method_cost``, ``hypervolume_difference``)."""
    cost = (front.model_extra or {}).get("method_cost") or {}
    if not cost:
        return []
    differences = front.hypervolume_difference or {}
    lines = ["## Methods and baselines", "",
             "Every method on the same evaluation prompts and judges. Training runs: the DPO runs its points rest on "
             "(PEO's aspect adapters serve soup, PEO and MOD alike); forward passes per generated token, each of the "
             "base model's size.", "",
             "| method | hypervolume | hv(PEO) − hv(method), 95% CI | training runs | forward passes / token | dial |",
             "|---|---|---|---|---|---|"]
    for method, entry in cost.items():
        diff = differences.get(f"peo_minus_{method}")
        diff_text = "–" if diff is None else f"{diff.estimate:+.3g} " + (
            f"[{diff.ci[0]:+.3g}, {diff.ci[1]:+.3g}] {diff.verdict}" if diff.ci else diff.verdict)
        volume = front.hypervolume.get(method)
        lines.append(f"| {method} | {'–' if volume is None else f'{volume:.3g}'} | {diff_text} | "
                     f"{entry.get('training_runs', '–')} | {entry.get('forward_passes_per_token', 0):.3g} | "
                     f"{str(entry.get('dial', '')).split(':')[0] or '–'} |")
    return lines + [""]


def _rho(cell: Mapping[str, Any] | None) -> str:
    return "–" if not cell or cell.get("rho") is None else f"{cell['rho']:+.2f}"


def controllability_lines(front: Front) -> list[str]:
    """Spearman rank correlations between each method's dial and its measured scores; each preset's fidelity."""
    data = front.controllability or {}
    dials, fidelity = data.get("dials") or [], data.get("presets") or {}
    if not dials and not fidelity:
        return []
    measures = list(front.aspects) + [m for m in ("refused_harmful", "refused_benign")
                                      if any(m in cells for d in dials for cells in d["spearman"].values())]
    lines = ["## Controllability", "",
             "Does the measured behaviour follow the dial? Spearman's ρ between each method's dial and each measured "
             "score over its grid (confirmation prompts; +1 or −1: the score never goes back as the dial turns; n: "
             "points on the grid).", "",
             "| method | dial | n | " + " | ".join(f"ρ {m.replace('_', ' ')}" for m in measures) + " |",
             "|---|---|---|" + "---|" * len(measures)]
    for entry in dials:
        where = entry["method"] + (f" (α {entry['alpha']:g})" if entry.get("alpha") is not None else "")
        for dial, cells in entry["spearman"].items():
            lines.append(f"| {where} | {dial} | {entry['n']} | " + " | ".join(_rho(cells.get(m)) for m in measures)
                         + " |")
    if fidelity:
        lines += ["", "Does a preset deliver its rule? Chosen on the selection prompts, measured on the confirmation "
                  "prompts: the constraint as measured, and the regret (how far the chosen point falls behind the best "
                  "the rule could have chosen, on the confirmation prompts).", "",
                  "| preset | asked | measured [95% CI] | met | regret |", "|---|---|---|---|---|"]
        for name, entry in fidelity.items():
            asked = entry.get("asked")
            asked_text = "–" if not asked else f"{asked['measure'].replace('_', ' ')} ≥ {asked['min']:.3g}"
            ci = entry.get("ci")
            measured = "–" if "measured" not in entry else f"{entry['measured']:.3g}" + (
                f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
            met = "–" if "met" not in entry else ("yes" if entry["met"] else "no") + (
                " (at 95%)" if entry.get("met_at_95") else "")
            regret = entry.get("regret")
            lines.append(f"| {name} | {asked_text} | {measured} | {met} | "
                         + ("–" if not regret else f"{regret['value']:.3g} ({regret['objective']})") + " |")
    return lines + [""]
