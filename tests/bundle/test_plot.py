"""Tests for peo_hub.bundle.plot: front.png for two and more aspects, written atomically."""

from __future__ import annotations

import struct

import numpy as np

from peo_hub.bundle.front import build_front
from peo_hub.bundle.plot import plot_front
from fronts import ASPECTS, toy_points

# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_two_aspects_with_current(tmp_path) -> None:
    front = build_front(ASPECTS, toy_points())
    out = plot_front(front, tmp_path / "front.png", current={"helpful": 0.33, "harmless": 0.88})
    width, height = png_size(out)
    assert width >= 400 and height >= 300
    assert out.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["front.png"]


def test_plot_three_aspects_grid(tmp_path) -> None:
    rng = np.random.default_rng(5)
    aspects = ["helpful", "harmless", "honest"]
    points = [{"method": "base", "metrics": {a: 0.5 for a in aspects}}]
    points += [{"method": "peo", "alpha": 0.5, "metrics": {a: {"mean": float(rng.uniform(0.4, 1)), "ci": None} for a in aspects}}
               for _ in range(12)]
    small = plot_front(build_front(ASPECTS, toy_points()), tmp_path / "two.png")
    grid = plot_front(build_front(aspects, points), tmp_path / "three.png")
    assert png_size(grid)[0] > png_size(small)[0]  # three pairwise panels side by side


# --------------------------------------------------------------------------------------------
# readability
# --------------------------------------------------------------------------------------------


def crowded_points() -> list[dict]:
    """A front shaped like the toy world's: presets on neighbouring points, a point near the
    legend's old corner, and a flagged (babbling) point far below the front."""
    from test_front import make_point

    points = [make_point("base", 0.54, 0.68, None, None)]
    front = [(0.36, 0.98), (0.45, 0.93), (0.50, 0.90), (0.52, 0.89), (0.54, 0.885), (0.60, 0.80), (0.75, 0.54)]
    for k, (h, s) in enumerate(front):
        points.append(make_point("soup" if k % 2 else "peo", h, s, k / 10, 0.0 if k % 2 else 0.5))
    babble = make_point("peo", 0.25, 0.55, 1.0, 0.5)
    babble["guard"] = {"base_logprob": -5.0, "distinct_2": 0.9, "length": 30.0}
    points[0]["guard"] = {"base_logprob": -0.5, "distinct_2": 0.9, "length": 30.0}
    points.append(babble)
    points.append(make_point("morl", 0.53, 0.86, 0.5))
    return points


def test_labels_legend_and_points_never_overlap() -> None:
    """Every preset label's drawn box avoids every other label, the legend, every point marker and
    the axes edge (boxes measured with matplotlib's renderer, as they are drawn into front.png)."""
    from peo_hub.core.measures import GuardThresholds
    from peo_hub.bundle.plot import draw_front, text_box

    front = build_front(ASPECTS, crowded_points(), guard_thresholds=GuardThresholds())
    assert front.points[-2].flagged and len(front.presets) >= 4
    fig = draw_front(front)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    key = [t for t in ax.texts if t.get_text().startswith("presets")]
    labels = [t for t in ax.texts if t.get_text() and t not in key]
    assert len(labels) >= 3 and len(key) == 1
    for name in front.presets:
        assert name in key[0].get_text()
    boxes = [text_box(t, renderer) for t in labels]  # the text (a thin leader line may run to its point)
    legend = fig.legends[0].get_window_extent(renderer)
    frame = ax.get_window_extent(renderer)
    points_px = ax.transData.transform(front.means())
    for i, box in enumerate(boxes):
        assert not box.overlaps(legend), labels[i].get_text()
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), labels[i].get_text()
        for other in boxes[i + 1:]:
            assert not box.overlaps(other), (labels[i].get_text(), "overlaps another label")
        for px, py in points_px:
            assert not (box.x0 - 4 <= px <= box.x1 + 4 and box.y0 - 4 <= py <= box.y1 + 4), labels[i].get_text()
    assert not legend.overlaps(frame)  # the legend covers no point: it is outside the axes
    key_box = key[0].get_window_extent(renderer)
    assert not key_box.overlaps(frame) and not key_box.overlaps(legend)
    assert key_box.x1 <= fig.bbox.x1 and key_box.y0 >= fig.bbox.y0  # and it is inside the picture
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "flagged by the guard (babble)" in names
