"""Plan metrics as a type: a NaN never passes a goal, a Dcc of a structure smaller than its
volume is the value the objective optimised, and a limited organ cut by the dose grid is
judged on what is known about the dose outside it (docs/planning.md, "Metrics")."""

from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedopt.optimizer import HardLimit
from seedopt.optimizer.objective import dose, limit_value
from test_cli import one_line_error, seedopt
from test_planning import SMALL, write_config

from seedopt.backend import cpu_backend
from seedopt.case import Case
from seedopt.dose import dose_at_points
from seedopt.errors import SeedoptError
from seedopt.metrics import Structure
from seedopt.pipeline import limited_outside, prepare
from seedopt.plan_config import PlanSpec
from seedopt.plan_metrics import Goal, PlanMetrics, evaluate
from seedopt.planning import finish_plan, plan_case
from seedopt.report import format_report

QUICK = {"method": "anneal", "options": {"iterations": 300, "chains": 8}}


def small_spec(**changes) -> PlanSpec:
    config = copy.deepcopy(SMALL)
    config["optimizer"] = QUICK
    for key, value in changes.items():
        config[key] = value
    return PlanSpec.model_validate(config)


# --- a NaN never passes ---------------------------------------------------------------------


@given(
    value=st.floats(allow_nan=True, allow_infinity=True),
    limit=st.floats(min_value=1e-3, max_value=1e4),
    at_least=st.booleans(),
)
def test_a_goal_is_met_only_by_a_finite_value_on_the_right_side_of_its_limit(
    value: float, limit: float, at_least: bool
) -> None:
    g = Goal("g", value, limit, at_least)
    right_side = value >= limit * (1 - 1e-6) if at_least else value <= limit * (1 + 1e-6)
    assert g.met == (math.isfinite(value) and right_side)
    if not math.isfinite(value):
        assert not g.evaluated and g.to_json()["met"] is False
        assert g.to_json()["value"] is None and g.to_json()["not_evaluated"]


def test_a_file_that_claims_a_nan_passed_reads_back_as_not_evaluated() -> None:
    doc = plan_case(small_spec(), cpu_backend()).metrics.to_json()
    doc["goals"][1].update(value=None, met=True, miss=0.0)
    m = PlanMetrics.from_json(doc)
    assert not m.goals[1].met and not m.goals_met
    line = next(ln for ln in format_report(m).splitlines() if m.goals[1].name in ln)
    assert "n/a Gy  NOT EVALUATED (the value is not computable)" in line and "PASS" not in line


def test_metrics_json_keeps_its_keys_and_reads_back_unchanged(tmp_path: Path) -> None:
    m = plan_case(small_spec(), cpu_backend()).metrics
    doc = json.loads(json.dumps(m.to_json(), allow_nan=False))  # strict JSON: no NaN
    assert {
        "prescription_gy", "target", "structures", "indices", "goals", "n_needles", "n_seeds",
        "notes", "dose_matrix_dtype", "method", "objective", "optimizer_message",
        "total_strength_u", "dose_matrix_cached", "n_candidate_seeds", "n_candidate_needles",
        "runtime_s",
    } <= set(doc)  # fmt: skip
    assert set(doc["goals"][0]) >= {"name", "value", "limit", "met", "miss", "miss_pct"}
    assert PlanMetrics.from_json(doc).to_json() == doc


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        (lambda d: d.pop("structures"), r"structures is missing"),
        (lambda d: d.update(structures=[1, 2]), r"structures: expected a mapping, got list"),
        (lambda d: d.update(n_seeds="ten"), r"n_seeds must be a number"),
        (lambda d: d["goals"][0].pop("limit"), r"goals\.0: limit is missing"),
        (lambda d: d.update(target="Liver"), r"target 'Liver' is not among its structures"),
    ],
)
def test_a_metrics_file_of_another_shape_is_refused_naming_the_key(damage, pattern) -> None:
    doc = plan_case(small_spec(), cpu_backend()).metrics.to_json()
    damage(doc)
    with pytest.raises(SeedoptError, match=pattern):
        PlanMetrics.from_json(doc, "metrics.json")


def test_evaluate_plan_with_a_metrics_file_of_another_shape_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, {**copy.deepcopy(SMALL), "optimizer": QUICK})
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("x_mm,y_mm,z_mm\n0,-8,0\n")
    pre = tmp_path / "pre"
    pre.mkdir()
    (pre / "metrics.json").write_text(json.dumps({"structures": [1, 2]}))
    r = seedopt("evaluate", str(config), "--seeds", str(seeds), "--out", str(tmp_path / "o"),
                "--plan", str(pre))  # fmt: skip
    one_line_error(r, r"--plan .*metrics\.json: structures: expected a mapping, got list")


# --- Dcc of a structure smaller than the volume asked ------------------------------------------


def test_dcc_of_a_structure_smaller_than_the_volume_is_its_coldest_voxel() -> None:
    """Three voxels of 0.008 cc (0.024 cc) have no hottest 2 cc: D2cc is the dose all of the
    structure receives, its coldest voxel's, as the objective scores a D2cc limit."""
    doses = np.array([30.0, 12.0, 21.0])
    s = Structure.from_mask(doses, np.ones(3, bool), 0.008)
    by_hand = 12.0
    objective = float(limit_value(doses, HardLimit("nerve", "D2cc", 50.0), 0.008))
    assert s.dose_at_volume_cc(2.0) == objective == by_hand
    assert s.dose_at_volume_cc(0.1) == objective == by_hand  # 0.1 cc: also more than it has
    assert s.dose_at_volume_cc(0.016) == 21.0  # two voxels: the second hottest


def test_a_plans_d2cc_of_a_small_organ_is_the_value_the_optimizer_scored() -> None:
    """A 0.2 cc nerve with a D2cc limit: the reported D2cc equals the objective's (from the
    dose matrix) and the coldest voxel of the nerve's dose grid (by hand); the goal is judged
    on it, never NaN."""
    structures = {**SMALL["structures"], "Nerve": {
        "shape": "ellipsoid", "center_mm": [16, -8, 0], "radii_mm": [3, 3, 4]}}  # fmt: skip
    spec = small_spec(
        structures=structures,
        goals={"hard": [{"structure": "Nerve", "metric": "D2cc", "max_gy": 150}]},
    )
    prepared = prepare(spec, cpu_backend())
    from seedopt.optimizer import get_optimizer

    result = get_optimizer("anneal").solve(prepared.problem, rng=0, **QUICK["options"])
    plan = finish_plan(prepared, result, cpu_backend(), {})
    nerve = plan.case.masks["Nerve"]
    assert 0 < nerve.sum() * plan.case.grid.voxel_cc < 2.0
    reported = plan.metrics.structures["Nerve"]["D2cc_gy"]
    lim = prepared.problem.hard[0]
    optimised = float(limit_value(dose(prepared.problem.A_oar["Nerve"], result.x), lim, 0.008))
    assert reported == pytest.approx(optimised, rel=1e-5)
    assert reported == pytest.approx(float(plan.dose_gy[nerve].min()), rel=1e-6)
    goal = plan.metrics.goals[1]
    assert goal.evaluated and goal.value == reported and goal.met == (reported <= 150)


# --- organs beyond the dose grid ---------------------------------------------------------------

RIB = {"shape": "ellipsoid", "center_mm": [24, -8, 0], "radii_mm": [6, 4, 4]}
"""An organ cut by the grid's +x face (the grid's voxel centres reach x = 24 mm)."""


def rib_spec(metric: str = "Dmax", max_gy: float = 500.0) -> PlanSpec:
    return small_spec(
        structures={**SMALL["structures"], "Rib": RIB},
        goals={"hard": [{"structure": "Rib", "metric": metric, "max_gy": max_gy}]},
    )


@pytest.fixture(scope="module")
def rib_plan():
    return plan_case(rib_spec(), cpu_backend())


def wide_case(spec: PlanSpec) -> Case:
    """The case on the grid grown to x = 40 mm (same voxel centres)."""
    grid = spec.grid.model_copy(update={"max_mm": (40.0, *spec.grid.max_mm[1:])})
    return Case.from_spec(spec.model_copy(update={"grid": grid}))


def test_an_organ_cut_by_the_grid_reports_its_volume_inside_and_outside(rib_plan) -> None:
    b = rib_plan.metrics.beyond_grid["Rib"]
    whole = wide_case(rib_plan.spec).volume_cc("Rib")
    assert b.inside_cc == pytest.approx(rib_plan.case.volume_cc("Rib"))
    assert b.inside_cc + b.outside_cc == pytest.approx(whole)
    assert whole == pytest.approx(4 / 3 * math.pi * 6 * 4 * 4 / 1000, rel=0.15)
    assert 0 < b.outside_cc < b.inside_cc
    doc = rib_plan.metrics.to_json()["beyond_grid"]["Rib"]
    assert doc["outside_cc"] == pytest.approx(b.outside_cc)
    unbounded = rib_plan.metrics.to_json()["beyond_grid"]
    assert "Cord" not in unbounded  # not limited in this config: not looked at


def test_the_dose_bound_outside_the_grid_holds_the_dose_computed_there(rib_plan) -> None:
    wide = wide_case(rib_plan.spec)
    outside = wide.masks["Rib"] & (wide.grid.coordinates_mm()[0] > 25.0)
    pts = wide.grid.points_mm(outside)
    true = dose_at_points(pts, rib_plan.seeds_mm, rib_plan.seed_axes, rib_plan.source)
    bound = rib_plan.metrics.beyond_grid["Rib"].dose_outside_max_gy
    assert len(pts) and true.max() <= bound < 10 * true.max()


def skin_spec(max_gy: float) -> PlanSpec:
    return small_spec(goals={"hard": [{"structure": "Skin", "metric": "D2cc", "max_gy": max_gy}]})


@pytest.fixture(scope="module")
def skin_plan():
    """The small case's skin runs on beyond the grid's z faces with the body cylinder."""
    return plan_case(skin_spec(70.0), cpu_backend())


def test_a_limit_the_bound_cannot_confirm_is_judged_on_the_grid_grown_over_the_organ(
    skin_plan,
) -> None:
    inside = skin_plan.metrics.structures["Skin"]["D2cc_gy"]
    b = skin_plan.metrics.beyond_grid["Skin"]
    assert math.isinf(b.outside_cc) and b.dose_outside_max_gy > inside
    m = judged(skin_plan, skin_spec((inside + b.dose_outside_max_gy) / 2))
    g = m.goals[1]
    # the D2cc of more of the skin: no lower than the part inside's, no higher than the bound
    assert g.evaluated and inside <= g.value <= b.dose_outside_max_gy
    assert any("was evaluated on the grid grown" in n for n in m.notes)
    assert "Skin: 4.4 cc inside the dose grid, unbounded outside" in format_report(m)


def test_a_limit_nothing_can_confirm_is_not_evaluated_and_never_passes(
    skin_plan, monkeypatch
) -> None:
    import seedopt.beyond_grid

    monkeypatch.setattr(seedopt.beyond_grid, "GROW_STEPS_MM", (0.5,))  # no room to grow
    inside = skin_plan.metrics.structures["Skin"]["D2cc_gy"]
    bound = skin_plan.metrics.beyond_grid["Skin"].dose_outside_max_gy
    m = judged(skin_plan, skin_spec(inside + 0.3 * (bound - inside)))
    g = m.goals[1]
    assert not g.met and not g.evaluated and not m.goals_met and m.n_goals_missed == 1
    assert "extend grid.min_mm / grid.max_mm over Skin" in g.reason
    assert "NOT EVALUATED (Skin: 4.4 cc inside" in format_report(m)


def test_a_value_inside_the_grid_above_the_limit_fails_whatever_lies_outside(rib_plan) -> None:
    inside = rib_plan.metrics.structures["Rib"]["Dmax_gy"]
    g = judged(rib_plan, rib_spec("Dmax", inside / 2)).goals[1]
    assert g.evaluated and not g.met and g.miss_gy == pytest.approx(inside / 2)


def judged(plan, spec: PlanSpec) -> PlanMetrics:
    """``plan``'s dose judged by ``spec``'s goals."""
    outside = limited_outside(spec, plan.case, None)
    return evaluate(spec, plan.case, None, plan.dose_gy, plan.seeds_mm, plan.seed_axes,
                    len(plan.used_needles()), plan.source, "anneal", outside)  # fmt: skip


def test_the_clinical_strength_scale_reaches_the_plan_as_a_typed_field() -> None:
    spec = small_spec(optimizer={"method": "clinical", "options": {"scaling": "strength"}})
    plan = plan_case(spec, cpu_backend())
    scale = plan.result.strength_scale
    assert scale != 1.0 and "strength_scale" not in plan.result.extra
    base = spec.source.build().air_kerma_strength_u
    assert plan.source.air_kerma_strength_u == pytest.approx(base * scale)
    assert plan.metrics.strength_u == pytest.approx(base * scale)
    assert plan.metrics.target_metrics()["D90_gy"] == pytest.approx(spec.prescription_gy, rel=1e-3)


def test_a_batch_part_with_damaged_metrics_is_one_error_naming_the_task() -> None:
    from seedopt.studies.results import summary_row

    with pytest.raises(SeedoptError, match=r"task small__base: metrics_json: not JSON"):
        summary_row({"key": "small__base", "status": "ok", "metrics_json": "{cut"})


@functools.cache
def plan_doc() -> str:
    return json.dumps(plan_case(small_spec(), cpu_backend()).metrics.to_json())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
DAMAGED_KEYS = [
    ("structures",), ("structures", "GTV"), ("structures", "GTV", "D90_gy"), ("goals",),
    ("goals", 0), ("goals", 1, "value"), ("goals", 0, "sense"), ("goals", 0, "not_evaluated"),
    ("indices",), ("indices", "CI"), ("n_seeds",), ("source",), ("runtime_s",), ("notes",),
    ("beyond_grid",), ("beyond_grid", "Cord"), ("beyond_grid", "Cord", "outside_cc"),
    ("objective",), ("n_candidate_seeds",), ("target",), ("method",), ("pre_plan",),
]  # fmt: skip


@given(key=st.sampled_from(DAMAGED_KEYS), value=JSON_VALUES)
def test_any_damaged_metrics_file_reads_back_or_is_one_error(key: tuple, value) -> None:
    doc = json.loads(plan_doc())
    *parents, last = key
    node = doc
    for k in parents:
        node = node[k]
    node[last] = value
    try:
        m = PlanMetrics.from_json(doc, "metrics.json")
    except SeedoptError:
        return
    assert all(g.met == (g.evaluated and g.met) for g in m.goals)
    format_report(m)  # whatever was read prints
