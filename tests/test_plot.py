"""Tests for peo_hub.plot: front.png for two and more aspects, written atomically."""

from __future__ import annotations

import struct

import numpy as np

from peo_hub.front import build_front
from peo_hub.plot import plot_front
from test_front import ASPECTS, toy_points

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
