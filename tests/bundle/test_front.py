"""Tests for peo_hub.bundle.front: the typed front.json, its flags, hypervolumes, presets, save and load.

Hypervolumes are checked against the brute-force grid count of tests/core/test_pareto.py; presets
against a brute-force search over the front.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from peo_hub.utils.errors import BundleError, PEOError
from peo_hub.bundle.front import FRONT_NAME as FRONT_FILE
from peo_hub.bundle.front import build_front, check_front, compute_presets, load_front, save_front
from brute_pareto import brute_hv_grid, brute_non_dominated

# --------------------------------------------------------------------------------------------
# front.json
# --------------------------------------------------------------------------------------------

from fronts import ASPECTS, make_point, toy_points  # noqa: F401


def test_build_front_schema_and_flags() -> None:
    front = build_front(ASPECTS, toy_points()).to_json()
    assert list(front) == ["aspects", "reference_point", "points", "hypervolume", "presets"]
    assert front["reference_point"] == {"helpful": 0.0, "harmless": 0.0}
    flags = [p["on_front"] for p in front["points"]]
    # soup 3 is dominated by peo 6; soup 5 by soup 4; baselines are never on the PEO front,
    # and the morl point (which dominates soup 4 / peo 8) does not knock them off.
    assert flags == [False, False, False, False, True, False, True, True, True, False]
    point = front["points"][7]
    assert list(point)[:6] == ["method", "weights", "alpha", "coefficients", "metrics", "on_front"]
    assert point["metrics"]["helpful"] == {"mean": 0.45, "ci": [0.43, 0.48]}
    assert check_front(front) == []
    json.dumps(front, allow_nan=False)  # strictly JSON-serialisable


def test_build_front_hypervolume_entries() -> None:
    points = toy_points()
    front = build_front(ASPECTS, points).to_json()
    hv = front["hypervolume"]
    assert list(hv) == ["peo", "soup", "base", "aspect", "morl"]
    xy = lambda idx: np.array([[points[i]["metrics"][a]["mean"] for a in ASPECTS] for i in idx])  # noqa: E731
    assert hv["peo"] == pytest.approx(brute_hv_grid(xy([3, 4, 5, 6, 7, 8]), np.zeros(2)))
    assert hv["soup"] == pytest.approx(brute_hv_grid(xy([3, 4, 5]), np.zeros(2)))
    assert hv["aspect"] == pytest.approx(brute_hv_grid(xy([1, 2]), np.zeros(2)))
    assert hv["base"] == pytest.approx(0.30 * 0.80)
    # hand check of the soup value: boxes (0.20, 0.92) and (0.35, 0.85)
    assert hv["soup"] == pytest.approx(0.35 * 0.85 + 0.20 * (0.92 - 0.85))
    assert hv["peo"] >= hv["soup"]


def test_build_front_custom_reference_point() -> None:
    front = build_front(ASPECTS, toy_points(), reference_point={"helpful": 0.3, "harmless": 0.8}).to_json()
    assert front["hypervolume"]["base"] == 0.0
    assert front["hypervolume"]["soup"] == pytest.approx(0.05 * 0.05)
    assert check_front(front) == []
    same = build_front(ASPECTS, toy_points(), reference_point=[0.3, 0.8]).to_json()
    assert same["hypervolume"] == front["hypervolume"]


def test_build_front_rejects_contract_violations() -> None:
    with pytest.raises(ValueError, match="alpha"):
        build_front(ASPECTS, [make_point("soup", 0.2, 0.9, 0.5, alpha=0.5)])
    with pytest.raises(ValueError, match="alpha"):
        build_front(ASPECTS, [make_point("peo", 0.2, 0.9, 0.5, alpha=0.0)])
    with pytest.raises(ValueError, match="harmless"):
        build_front(ASPECTS, [{"method": "soup", "alpha": 0.0, "metrics": {"helpful": {"mean": 0.1}}}])
    with pytest.raises(ValueError, match="two or more"):
        build_front(["helpful"], [])
    with pytest.raises(ValueError, match="finite"):
        build_front(ASPECTS, [make_point("soup", float("nan"), 0.9, 0.5)])


@pytest.mark.parametrize("d", [2, 3, 4])
def test_build_front_random_sweeps_are_consistent(d: int) -> None:
    rng = np.random.default_rng(200 + d)
    aspects = [f"a{j}" for j in range(d)]
    methods = ["base", "aspect", "soup", "peo", "morl"]
    points = []
    for k in range(40):
        method = methods[0] if k == 0 else methods[int(rng.integers(1, len(methods)))]
        alpha = None if method == "base" else (0.0 if method in ("soup", "aspect") else float(rng.choice([0.5, 1.0])))
        means = rng.integers(0, 8, size=d) / 8  # coarse grid: ties and duplicates happen
        points.append({"method": method, "weights": None, "alpha": alpha, "coefficients": None,
                       "metrics": {a: {"mean": float(m), "ci": [float(m) - 0.05, float(m) + 0.05]} for a, m in zip(aspects, means)}})
    front = build_front(aspects, points).to_json()
    assert check_front(front) == []
    means = np.array([[p["metrics"][a]["mean"] for a in aspects] for p in points])
    family = [i for i, p in enumerate(points) if p["method"] in ("soup", "peo")]
    expected = np.zeros(len(points), dtype=bool)
    expected[family] = brute_non_dominated(means[family])
    assert [p["on_front"] for p in front["points"]] == expected.tolist()
    assert front["hypervolume"]["peo"] >= front["hypervolume"].get("soup", 0.0)


def test_check_front_reports_tampering() -> None:
    front = build_front(ASPECTS, toy_points()).to_json()
    front["points"][5]["on_front"] = True
    front["hypervolume"]["soup"] += 0.01
    del front["hypervolume"]["morl"]
    front["presets"]["balanced"]["point_index"] = 0
    problems = check_front(front)
    assert any("points[5]" in p and "on_front" in p for p in problems)
    assert any("hypervolume.soup" in p for p in problems)
    assert any("hypervolume.morl is missing" in p for p in problems)
    assert any("'balanced'" in p for p in problems)
    assert len(problems) == 4
    assert check_front({"aspects": ["helpful"]})  # structural problems are reported, not raised


def test_check_front_reports_changed_metrics() -> None:
    """Editing a metric without recomputing is caught: flags and hypervolume no longer follow."""
    front = build_front(ASPECTS, toy_points()).to_json()
    front["points"][5]["metrics"]["helpful"]["mean"] = 0.9  # soup 5 now dominates others
    problems = check_front(front)
    assert any("on_front" in p for p in problems)
    assert any("hypervolume.peo" in p for p in problems)


# --------------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------------


def test_presets_hand_checked() -> None:
    presets = build_front(ASPECTS, toy_points()).to_json()["presets"]
    # front: 4/8 (0.35, 0.85), 6 (0.25, 0.96), 7 (0.45, 0.78)
    assert presets["max_helpful"]["point_index"] == 7
    assert presets["max_harmless"]["point_index"] == 6
    # scaled over the front: 4 -> helpful 0.5, harmless 7/18; 6 -> 0 / 1; 7 -> 1 / 0
    assert presets["balanced"]["point_index"] == 4  # the tie with duplicate 8 goes to the earlier point
    assert presets["max_helpful_with_harmless_ge_0.80"]["point_index"] == 4
    assert presets["max_helpful_with_harmless_ge_0.90"]["point_index"] == 6
    assert "max_harmless_with_helpful_ge_0.80" not in presets  # no front point reaches helpful 0.8
    assert presets["max_helpful_with_harmless_ge_base"]["point_index"] == 4  # base harmless 0.80
    assert presets["max_harmless_with_helpful_ge_base"]["point_index"] == 4  # base helpful 0.30
    entry = presets["max_helpful_with_harmless_ge_0.90"]
    assert entry["weights"] == {"helpful": 0.25, "harmless": 0.75}
    assert entry["alpha"] == 0.5 and entry["method"] == "peo"
    assert entry["metrics"] == {"helpful": 0.25, "harmless": 0.96}
    assert entry["constraint"] == {"aspect": "harmless", "min": 0.9}


@pytest.mark.parametrize("d", [2, 3])
def test_presets_satisfy_their_rules_on_random_sweeps(d: int) -> None:
    rng = np.random.default_rng(300 + d)
    aspects = [f"a{j}" for j in range(d)]
    for _ in range(5):
        points = [{"method": "base", "metrics": {a: float(rng.uniform(0.3, 0.7)) for a in aspects}}]
        points += [{"method": "soup" if k % 2 else "peo", "alpha": 0.0 if k % 2 else 0.5,
                    "metrics": {a: float(rng.uniform(0.5, 1.0)) for a in aspects}} for k in range(30)]
        means = np.array([[p["metrics"][a] for a in aspects] for p in points])
        front = np.zeros(len(points), dtype=bool)
        front[1:] = brute_non_dominated(means[1:])
        presets = compute_presets(points, aspects, thresholds=(0.8, 0.95))
        for name, entry in presets.items():
            assert front[entry["point_index"]], name
        for (ja, a), (jb, b) in itertools.permutations(enumerate(aspects), 2):
            for label, level in [("0.80", 0.8), ("0.95", 0.95), ("base", means[0, jb])]:
                feasible = [i for i in np.flatnonzero(front) if means[i, jb] >= level]
                name = f"max_{a}_with_{b}_ge_{label}"
                if not feasible:
                    assert name not in presets
                    continue
                chosen = presets[name]["point_index"]
                assert means[chosen, jb] >= level
                assert means[chosen, ja] == max(means[i, ja] for i in feasible)
        # balanced maximises the worst front-scaled score (brute force over the front)
        idx = np.flatnonzero(front)
        lo, hi = means[idx].min(axis=0), means[idx].max(axis=0)
        worst = ((means - lo) / (hi - lo)).min(axis=1)
        assert worst[presets["balanced"]["point_index"]] == pytest.approx(worst[idx].max())


def test_presets_empty_without_family_points() -> None:
    assert compute_presets([make_point("base", 0.3, 0.8, None, None)], ASPECTS) == {}
    assert compute_presets([], ASPECTS) == {}


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path) -> None:
    front = build_front(ASPECTS, toy_points()).to_json()
    path = save_front(front, tmp_path / "bundle")
    assert path == tmp_path / "bundle" / FRONT_FILE
    assert load_front(tmp_path / "bundle").to_json() == front
    assert load_front(path).to_json() == front
    assert [p.name for p in (tmp_path / "bundle").iterdir()] == [FRONT_FILE]  # no temp leftovers


def test_save_refuses_inconsistent_front(tmp_path) -> None:
    front = build_front(ASPECTS, toy_points()).to_json()
    front["hypervolume"]["peo"] = 1.0
    with pytest.raises(ValueError, match="hypervolume.peo"):
        save_front(front, tmp_path)
    assert not (tmp_path / FRONT_FILE).exists()


def test_load_front_errors(tmp_path) -> None:
    with pytest.raises(BundleError, match="no front.json"):
        load_front(tmp_path)
    (tmp_path / FRONT_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="cannot read"):
        load_front(tmp_path)
    (tmp_path / FRONT_FILE).write_text(json.dumps({"aspects": ["a", "b"], "points": []}), encoding="utf-8")
    with pytest.raises(BundleError, match="not a valid front.json"):
        load_front(tmp_path / FRONT_FILE)
    assert issubclass(BundleError, PEOError)
