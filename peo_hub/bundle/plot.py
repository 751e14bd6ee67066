"""``front.png``: every evaluated point by method, the intervals, the PEO front, presets, the base.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch), so it is
safe inside a server (the Space redraws it per slider setting) or a notebook; the file is
written to a temporary sibling and renamed, never half-written.

Readability is measured, not hoped for: the legend sits below the axes and the preset names
in a key beside them, so neither can cover a point; each preset point gets a numbered tag,
placed at the first of a ring of candidate offsets whose box (as the renderer draws it)
overlaps no other tag, no point and no axes edge (:func:`place_labels`).
Points the degeneration guard flagged get a grey cross over their marker.
"""

from __future__ import annotations

import itertools
import math
import os
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from peo_hub.bundle.front import Front, FrontPoint
from peo_hub.utils.fsutil import atomic_file
from peo_hub.core.pareto import non_dominated_mask

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


def _preset_labels(front: Front, panel: Sequence[str]) -> dict[int, list[str]]:
    """Preset names grouped by point, for the presets whose rule lives in this panel's axes.

    With more than two aspects, ``max_a_with_b_ge_x`` only makes sense in the (a, b) panel;
    showing every preset everywhere buries the points.
    """
    by_point: dict[int, list[str]] = {}
    for name, entry in front.presets.items():
        if entry.point_index is None or not 0 <= entry.point_index < len(front.points):
            continue
        named = {entry.maximise, (entry.constraint or {}).get("aspect")} - {None}
        if named <= set(panel):
            by_point.setdefault(entry.point_index, []).append(name)
    return {i: sorted(names, key=lambda n: (n != "balanced", len(n), n)) for i, names in by_point.items()}


def _draw_panel(ax: Any, front: Front, x: str, y: str, current: Mapping[str, float] | None
                ) -> list[tuple[str, tuple[float, float]]]:
    """Draw one panel; return its preset labels (placed once the layout is final)."""
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
    # The front the bundle offers: the points chosen on the selection prompts (on_front), drawn
    # at their reported scores; the step line is what they dominate there (what hypervolume.peo
    # measures). A chosen point that the confirmation prompts put behind another keeps its ring.
    family = [i for i, p in enumerate(points) if p.on_front] or [i for i, p in enumerate(points) if p.in_family]
    if family:
        proj = means[family][:, [jx, jy]]
        nd = proj[non_dominated_mask(proj)]
        nd = nd[np.argsort(nd[:, 0], kind="stable")]
        label = "PEO front" if len(front.aspects) == 2 else "PEO front (projection)"
        ax.step(nd[:, 0], nd[:, 1], where="pre", color="tab:red", lw=1.5, zorder=2, label=label)
        # rings mark every chosen point (and keep a one-point front visible)
        ax.scatter(proj[:, 0], proj[:, 1], s=120, facecolors="none", edgecolors="tab:red", linewidths=1.0, zorder=2)
    flagged = [i for i, p in enumerate(points) if p.flagged]
    if flagged:
        ax.scatter(means[flagged, jx], means[flagged, jy], marker="x", s=90, c="dimgray", linewidths=1.6,
                   zorder=7, label="flagged by the guard (babble)")
    if current is not None and x in current and y in current:
        ax.scatter([float(current[x])], [float(current[y])], marker="X", s=220, c="red",
                   edgecolors="black", linewidths=1.0, zorder=5, label="current")
    ax.margins(x=0.15, y=0.15)  # room for the preset labels
    ax.set_xlabel(f"{x} (higher is better)")
    ax.set_ylabel(f"{y} (higher is better)")
    ax.grid(True, alpha=0.3)
    # Each preset point gets a short numbered tag next to it; the names go into a key
    # beside the axes, where they have room and cover nothing.
    labels = _preset_labels(front, (x, y))
    order = sorted(labels, key=lambda i: (-means[i, jy], means[i, jx]))  # numbered top to bottom
    key = "\n".join(f"{k}  " + f"\n{' ' * (len(str(k)) + 2)}".join(labels[i]) for k, i in enumerate(order, 1))
    if key:
        ax.text(1.03, 1.0, "presets\n" + key, transform=ax.transAxes, va="top", ha="left", fontsize=7,
                color="tab:red", family="monospace")
    return [(str(k), (float(means[i, jx]), float(means[i, jy]))) for k, i in enumerate(order, 1)]


#: Candidate label offsets in points, tried in order (near first, then further out).
_OFFSETS = [(dx * r, dy * r) for r in (7, 14, 24, 36)
            for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))]


def place_labels(ax: Any, labels: Sequence[tuple[str, tuple[float, float]]], points: np.ndarray,
                 marker_px: float = 9.0) -> list[Any]:
    """Annotate each ``(text, (x, y))`` at the first candidate offset whose drawn box avoids the rest.

    Avoided: the boxes of labels already placed, a square of ``marker_px`` pixels around
    every point, and the outside of the axes. When no candidate is free, the one with the
    least overlap is used (never silently on top of another label if any free spot exists).
    Returns the annotations (the test measures their boxes).
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    marks = [Bbox.from_extents(px - marker_px, py - marker_px, px + marker_px, py + marker_px)
             for px, py in (to_px(points) if len(points) else [])]
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    boxes: list[Any] = []
    for text, xy in labels:
        best, best_cost = None, math.inf
        for dx, dy in _OFFSETS:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
            note = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", fontsize=8, color="tab:red",
                               fontweight="bold", ha=ha, va=va, zorder=8,
                               arrowprops={"arrowstyle": "-", "color": "tab:red", "lw": 0.5, "alpha": 0.6})
            box = text_box(note, renderer)
            cost = sum(_overlap(box, other) for other in boxes + marks) + _outside(box, frame)
            if cost < best_cost:
                if best is not None:
                    best.remove()
                best, best_cost = note, cost
            else:
                note.remove()
            if cost == 0:
                break
        assert best is not None
        placed.append(best)
        boxes.append(text_box(best, renderer))
    return placed


def text_box(note: Any, renderer: Any) -> Any:
    """The drawn box of an annotation's text alone (matplotlib's own extent adds the leader line)."""
    from matplotlib.text import Text

    note.update_positions(renderer)  # an annotation computes where its text goes only when asked
    return Text.get_window_extent(note, renderer)


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Any, frame: Any) -> float:
    area = box.width * box.height
    return area - _overlap(box, frame) if area > 0 else 0.0


def plot_front(front: Front, path: str | os.PathLike[str], current: Mapping[str, float] | None = None) -> Path:
    """Draw ``front.png``: every point by method, CIs, the PEO front, presets, the base.

    One panel for two aspects, a grid of pairwise panels for more (the drawn front is then
    the family's non-dominated set in that projection). ``current`` (aspect -> score) is
    highlighted, for the Space to show the user's live preference.
    """
    fig = draw_front(front, current)
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _hv_text(front: Front) -> str:
    cis = front.hypervolume_ci or {}
    parts = []
    for key, value in front.hypervolume.items():
        ci = cis.get(key)
        parts.append(f"{key} {value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
    split = front.evaluation_split is not None and front.evaluation_split.selection_fraction > 0
    return ("hypervolume on the confirmation prompts (95% CI): " if split or cis else "hypervolume: ") + ", ".join(parts)


def draw_front(front: Front, current: Mapping[str, float] | None = None) -> Any:
    """The front's matplotlib ``Figure`` (Agg canvas), laid out and labelled; see :func:`plot_front`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    aspects = list(front.aspects)
    pairs = list(itertools.combinations(aspects, 2))
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(7.4 * ncols, 5.2 * nrows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    labels = [_draw_panel(ax, front, x, y, current) for ax, (x, y) in zip(axes, pairs)]
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    summary = textwrap.fill(_hv_text(front), width=100 * ncols) if front.hypervolume else ""
    fig.suptitle(f"Pareto front of {' vs '.join(aspects)}\n{summary}".strip(), fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    unique = dict(zip(names, handles))
    # outside the axes, so it can never cover a point or a preset label
    fig.legend(unique.values(), unique.keys(), fontsize=7, loc="outside lower center",
               ncols=min(4, len(unique)), frameon=False)
    fig.draw_without_rendering()  # run the layout, so the label boxes below are where they will be drawn
    fig.set_layout_engine("none")
    means = front.means()
    for ax, (x, y), panel in zip(axes, pairs, labels):
        place_labels(ax, panel, means[:, [front.aspects.index(x), front.aspects.index(y)]])
    return fig
