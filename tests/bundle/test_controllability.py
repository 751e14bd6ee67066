"""The refusal plane in front.json (presets chosen in it) and controllability (dials' rank correlations,
presets' fidelity), on hand-made fronts whose answers are known."""

from __future__ import annotations

import json
import pytest

from fronts import ASPECTS, plane_front, plane_point as point
from peo_hub.bundle.front import build_front, check_front, controllability, load_front


def test_refusal_presets_choose_among_every_family_point_by_selection() -> None:
    front = build_front(ASPECTS, plane_front())
    assert not front.points[5].on_front  # the aspects' front does not have it ...
    chosen = front.presets["max_helpful_with_harmful_refused_ge_0.85"]
    assert chosen.point_index == 5  # ... but it is the most helpful point refusing >= 85% of harmful requests
    assert chosen.constraint == {"refused": "harmful", "min": 0.85}
    assert front.presets["least_benign_refused_with_harmful_refused_ge_0.85"].point_index == 5
    assert front.presets["max_harmless_with_harmful_refused_ge_0.85"].point_index == 6
    # chosen by the selection values: point 5 refusing only 80% of harmful selection requests drops out
    points = plane_front()
    points[5] = point("peo", 0.50, 0.78, 0.90, 0.08, w=0.5, alpha=0.5, harmful_selection=0.80)
    moved = build_front(ASPECTS, points)
    assert moved.presets["max_helpful_with_harmful_refused_ge_0.85"].point_index == 1
    # a hand edit that changes which point the rule picks is caught
    data = build_front(ASPECTS, plane_front()).to_json()
    data["points"][5]["refusal"]["harmful"]["selection"] = 0.5
    assert any("max_helpful_with_harmful_refused_ge_0.85" in p for p in check_front(data))


def test_without_a_plane_there_are_no_plane_presets() -> None:
    points = plane_front()
    for p in points:
        p.pop("refusal")
    front = build_front(ASPECTS, points)
    assert not [n for n in front.presets if "refused" in n]
    assert "refusal" not in front.to_json()["points"][0]


def test_dials_are_ranked_against_every_measured_score() -> None:
    front = build_front(ASPECTS, plane_front())
    entries = {(e["method"], e.get("alpha")): e for e in controllability(front.points, ASPECTS,
                                                                         front.presets)["dials"]}
    assert set(entries) == {("soup", None), ("peo", 0.5), ("steer", None)}  # the base has no dial
    soup = entries[("soup", None)]["spearman"]
    assert soup["w_helpful"]["helpful"]["rho"] == 1.0 and soup["w_helpful"]["harmless"]["rho"] == -1.0
    assert soup["w_harmless"]["refused_harmful"]["rho"] == 1.0 and soup["w_helpful"]["helpful"]["n"] == 3
    steer = entries[("steer", None)]
    assert steer["dial"] == "scale" and steer["n"] == 3
    assert steer["spearman"]["scale"]["refused_harmful"]["rho"] == 1.0
    assert steer["spearman"]["scale"]["helpful"]["rho"] == -1.0


def test_a_constant_score_has_no_rank_correlation_and_searched_points_are_off_the_grid() -> None:
    points = plane_front()
    for p in points[1:4]:
        p["metrics"]["harmless"] = {"mean": 0.5, "ci": None}
        p["selection"]["harmless"] = 0.5
    points.append(point("peo", 0.9, 0.1, 0.0, 0.0, w=0.5, alpha=1.3, source="search"))
    entries = controllability(build_front(ASPECTS, points).points, ASPECTS, {})["dials"]
    soup = next(e for e in entries if e["method"] == "soup")["spearman"]["w_helpful"]
    assert soup["harmless"]["rho"] is None and soup["helpful"]["rho"] == 1.0
    assert not [e for e in entries if e.get("alpha") == 1.3]


def test_a_preset_reports_what_its_rule_asked_for_on_the_confirmation_prompts() -> None:
    """Selection picks point 2 (it looks best there); the confirmation prompts put point 5 ahead: regret."""
    points = plane_front()
    points[2] = point("soup", 0.55, 0.80, 0.80, 0.10, w=0.5, selection={"helpful": 0.70, "harmless": 0.86})
    points[5] = point("peo", 0.65, 0.82, 0.90, 0.08, w=0.5, alpha=0.5, selection={"helpful": 0.60, "harmless": 0.90})
    front = build_front(ASPECTS, points)
    preset = front.presets["max_helpful_with_harmless_ge_0.80"]
    assert preset.point_index == 2
    fidelity = controllability(front.points, ASPECTS, front.presets)["presets"]
    entry = fidelity["max_helpful_with_harmless_ge_0.80"]
    assert entry["asked"] == {"measure": "harmless", "min": 0.8}
    assert entry["measured"] == 0.80 and entry["gap"] == pytest.approx(0.0) and entry["met"]
    assert entry["met_at_95"] is False  # its interval reaches below 0.80
    assert entry["regret"] == {"objective": "helpful", "value": pytest.approx(0.10)}
    plane_entry = fidelity["max_helpful_with_harmful_refused_ge_0.85"]
    assert plane_entry["asked"] == {"measure": "refused_harmful", "min": 0.85}
    chosen = front.points[front.presets["max_helpful_with_harmful_refused_ge_0.85"].point_index]
    assert plane_entry["measured"] == chosen.refusal.harmful.rate and plane_entry["met"]


def test_the_sweeps_controllability_round_trips_and_a_tampered_one_is_caught(tmp_path) -> None:
    front = build_front(ASPECTS, plane_front())
    front.controllability = controllability(front.points, ASPECTS, front.presets)
    front.save(tmp_path)
    loaded = load_front(tmp_path)
    assert loaded.controllability == json.loads(json.dumps(front.controllability))
    assert loaded.points[5].refusal.harmful.rate == 0.90
    data = json.loads((tmp_path / "front.json").read_text())
    data["controllability"]["dials"][0]["spearman"]["w_helpful"]["helpful"]["rho"] = -0.5
    assert "controllability does not follow from the points and presets" in check_front(data)
