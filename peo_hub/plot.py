"""``front.png``: every evaluated point by method, the intervals, the PEO front, presets, the base.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch), so it is
safe inside a server (the Space redraws it per slider setting) or a notebook; the file is
written to a temporary sibling and renamed, never half-written.
"""

from __future__ import annotations

import itertools
import math
import os
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from peo_hub.front import Front, FrontPoint
from peo_hub.fsutil import atomic_file
from peo_hub.pareto import non_dominated_mask

PLOT_NAME = "front.png"

_STYLE: dict[str, dict[str, Any]] = {
    "base": {"marker": "*", "color": "black", "s": 160, "label": "base"},
    "soup": {"marker": "s", "color": "tab:blue", "s": 40, "label": "soup (alpha = 0)"},
    "peo": {"marker": "o", "color": "tab:orange", "s": 40, "label": "PEO (alpha != 0)"},
}
_OTHER_COLORS = ["tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]


def _style(method: str, others: list[str]) -> dict[str, Any]:
    if method in _STYLE:
        return _STYLE[method]
    if method not in others:
        others.append(method)
    color = _OTHER_COLORS[(others.index(method)) % len(_OTHER_COLORS)]
    return {"marker": "^", "color": color, "s": 50, "label": method}


def _errors(points: Sequence[FrontPoint], aspect: str) -> np.ndarray:
    """``(2, n)`` asymmetric error bars from the CIs (zero where a point has none)."""
    out = np.zeros((2, len(points)))
    for k, point in enumerate(points):
        metric = point.metrics[aspect]
        if metric.ci is not None:
            out[0, k] = max(0.0, metric.mean - metric.ci[0])
            out[1, k] = max(0.0, metric.ci[1] - metric.mean)
    return out


def _preset_labels(front: Front, panel: Sequence[str]) -> dict[int, str]:
    """Preset names grouped by point, for the presets whose rule lives in this panel's axes.

    With more than two aspects, ``max_a_with_b_ge_x`` only makes sense in the (a, b) panel;
    showing every preset everywhere buries the points. At most two names per label.
    """
    by_point: dict[int, list[str]] = {}
    for name, entry in front.presets.items():
        if entry.point_index is None:
            continue
        named = {entry.maximise, (entry.constraint or {}).get("aspect")} - {None}
        if named <= set(panel):
            by_point.setdefault(entry.point_index, []).append(name)
    labels = {}
    for index, names in by_point.items():
        names = sorted(names, key=lambda n: (n != "balanced", len(n)))
        extra = f" (+{len(names) - 2})" if len(names) > 2 else ""
        labels[index] = "\n".join(names[:2]) + extra
    return labels


def _draw_panel(ax: Any, front: Front, x: str, y: str, current: Mapping[str, float] | None) -> None:
    points = front.points
    means = front.means()
    jx, jy = front.aspects.index(x), front.aspects.index(y)
    others: list[str] = []
    for method in dict.fromkeys(p.method for p in points):
        idx = [i for i, p in enumerate(points) if p.method == method]
        sub = [points[i] for i in idx]
        style = _style(method, others)
        on_top = 6 if method == "base" else 3  # the base often coincides with a corner point
        ax.errorbar(means[idx, jx], means[idx, jy], xerr=_errors(sub, x), yerr=_errors(sub, y),
                    fmt="none", ecolor=style["color"], alpha=0.35, lw=1, zorder=1)
        ax.scatter(means[idx, jx], means[idx, jy], marker=style["marker"], c=style["color"],
                   s=style["s"], label=style["label"], zorder=on_top, edgecolors="white", linewidths=0.5)
    family = [i for i, p in enumerate(points) if p.in_family]
    if family:
        proj = means[family][:, [jx, jy]]
        nd = proj[non_dominated_mask(proj)]
        nd = nd[np.argsort(nd[:, 0], kind="stable")]
        label = "PEO front" if len(front.aspects) == 2 else "PEO front (projection)"
        ax.step(nd[:, 0], nd[:, 1], where="pre", color="tab:red", lw=1.5, zorder=2, label=label)
        # rings keep a one-point front visible (a step line through one point draws nothing)
        ax.scatter(nd[:, 0], nd[:, 1], s=120, facecolors="none", edgecolors="tab:red", linewidths=1.0, zorder=2)
    for index, text in _preset_labels(front, (x, y)).items():
        if 0 <= index < len(points):
            ax.annotate(text, (means[index, jx], means[index, jy]), xytext=(6, 6), textcoords="offset points",
                        fontsize=7, color="tab:red", zorder=4)
    if current is not None and x in current and y in current:
        ax.scatter([float(current[x])], [float(current[y])], marker="X", s=220, c="red",
                   edgecolors="black", linewidths=1.0, zorder=5, label="current")
    ax.margins(x=0.12, y=0.12)  # room for the preset labels
    ax.set_xlabel(f"{x} (higher is better)")
    ax.set_ylabel(f"{y} (higher is better)")
    ax.grid(True, alpha=0.3)


def plot_front(front: Front, path: str | os.PathLike[str], current: Mapping[str, float] | None = None) -> Path:
    """Draw ``front.png``: every point by method, CIs, the PEO front, presets, the base.

    One panel for two aspects, a grid of pairwise panels for more (the drawn front is then
    the family's non-dominated set in that projection). ``current`` (aspect -> score) is
    highlighted, for the Space to show the user's live preference.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    aspects = list(front.aspects)
    pairs = list(itertools.combinations(aspects, 2))
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.6 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (x, y) in zip(axes, pairs):
        _draw_panel(ax, front, x, y, current)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    summary = ", ".join(f"{k} {v:.3f}" for k, v in front.hypervolume.items())
    summary = textwrap.fill(f"hypervolume: {summary}", width=60 * ncols) if summary else ""
    fig.suptitle(f"Pareto front of {' vs '.join(aspects)}\n{summary}".strip(), fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0].legend(unique.values(), unique.keys(), fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
