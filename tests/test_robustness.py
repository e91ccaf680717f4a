"""Plans under needle errors (issue 19, ``seedopt.robustness``): the scenario sampler and the
scenarios' doses.

Zero error gives the plan's seeds and dose exactly; moving every needle by one vector moves
the dose field with it; the sampler's magnitudes have the model's mean and spread and its
directions no preference; the same seed gives the same scenarios.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from test_planning import SMALL

from seedopt.backend import cpu_backend
from seedopt.errors import SeedoptError
from seedopt.plan_config import PlanSpec
from seedopt.planning import plan_case
from seedopt.robustness import (
    ERROR_MODELS,
    ErrorModel,
    Implant,
    evaluate_robustness,
    gamma_magnitudes,
    sample_scenarios,
    scenario_doses,
)

ZERO = ErrorModel(0.0, 0.0, 0.0, 0.0, 0.0)


def plan_folder(tmp_path: Path, plan) -> Path:
    """A plan folder of the small case: its config and the plan.json that records it."""
    import json

    import yaml

    from seedopt.export import plan_document

    cfg = tmp_path / "case.yaml"
    cfg.write_text(yaml.safe_dump(copy.deepcopy(SMALL)))
    folder = tmp_path / "plan"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(plan_document(plan, cfg)))
    return folder


@pytest.fixture(scope="module")
def planned():
    spec = PlanSpec.model_validate(copy.deepcopy(SMALL))
    plan = plan_case(spec, cpu_backend(), cache_dir=None)
    from seedopt.export import plan_document

    return spec, plan, Implant.from_plan_document(plan_document(plan))


def test_the_implant_of_plan_json_is_the_plans_seeds(planned) -> None:
    _, plan, implant = planned
    np.testing.assert_array_equal(
        np.sort(implant.seeds_mm, 0), np.sort(np.round(plan.seeds_mm, 3), 0)
    )
    assert implant.n_needles == len(plan.used_needles())


def test_zero_error_gives_the_plans_seeds_and_dose_exactly(planned) -> None:
    spec, plan, implant = planned
    seeds, axes = sample_scenarios(implant, ZERO, 3, seed=1)
    for k in range(3):
        np.testing.assert_array_equal(seeds[k], implant.seeds_mm)
        np.testing.assert_array_equal(axes[k], implant.axes)
    points = plan.case.grid.points_mm(plan.case.masks[plan.case.target])
    d = scenario_doses(points, seeds, axes, plan.source)
    nominal = scenario_doses(points, implant.seeds_mm[None], implant.axes[None], plan.source)
    np.testing.assert_array_equal(d, np.repeat(nominal, 3, axis=0))
    # and it is the plan's own dose at the target's voxel centres (float32 grid, seeds
    # rounded to 1 um in plan.json)
    grid_dose = plan.dose_gy[plan.case.masks[plan.case.target] > 0]
    np.testing.assert_allclose(nominal[0], grid_dose, rtol=2e-3)


def test_moving_every_needle_by_one_vector_moves_the_dose_field_with_it(planned) -> None:
    _, plan, implant = planned
    shift = np.array([1.7, -2.3, 0.9])
    n, s = implant.n_needles, implant.seeds_mm.shape[0]
    seeds, axes = implant.moved(
        np.tile(shift, (n, 1)), np.tile([1.0, 0.0, 0.0], (n, 1)), np.zeros(n), np.zeros(s)
    )
    points = plan.case.grid.points_mm(plan.case.masks[plan.case.target])[::7]
    moved = scenario_doses(points + shift, seeds[None], axes[None], plan.source)
    still = scenario_doses(points, implant.seeds_mm[None], implant.axes[None], plan.source)
    np.testing.assert_allclose(moved, still, rtol=1e-5)


def test_a_tilt_keeps_the_tip_and_the_seed_distances_from_it(planned) -> None:
    _, _, implant = planned
    n, s = implant.n_needles, implant.seeds_mm.shape[0]
    axis = np.cross(implant.directions, [0.0, 0.0, 1.0])
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    seeds, axes = implant.moved(np.zeros((n, 3)), axis, np.full(n, np.radians(3.0)), np.zeros(s))
    tips = implant.tips_mm[implant.needle_of]
    np.testing.assert_allclose(
        np.linalg.norm(seeds - tips, axis=1), np.linalg.norm(implant.seeds_mm - tips, axis=1)
    )
    cos = np.einsum("si,si->s", axes, implant.axes)
    np.testing.assert_allclose(cos, np.cos(np.radians(3.0)), rtol=1e-12)


def test_the_samplers_magnitudes_have_the_models_mean_and_spread() -> None:
    rng = np.random.default_rng(0)
    m = gamma_magnitudes(rng, 4.4, 2.9, 200_000)
    assert m.min() >= 0 and m.mean() == pytest.approx(4.4, rel=0.01)
    assert m.std() == pytest.approx(2.9, rel=0.01)
    # whole scenarios: tip displacements and tilt angles of a straight implant
    implant = Implant(
        seeds_mm=np.array([[0.0, 0.0, -10.0]] * 1),
        axes=np.array([[0.0, 0.0, 1.0]]),
        needle_of=np.array([0]),
        tips_mm=np.zeros((1, 3)),
        directions=np.array([[0.0, 0.0, 1.0]]),
    )
    model = ERROR_MODELS["template-3d-printed"]
    seeds, axes = sample_scenarios(implant, ErrorModel(4.4, 2.9, 0.0, 0.0, 0.0), 20_000, seed=2)
    shift = seeds[:, 0] - implant.seeds_mm[0]
    length = np.linalg.norm(shift, axis=1)
    assert length.mean() == pytest.approx(4.4, rel=0.02) and length.std() == pytest.approx(
        2.9, rel=0.03
    )
    np.testing.assert_allclose(shift.mean(axis=0), 0.0, atol=0.1)  # no preferred direction
    _, axes = sample_scenarios(implant, ErrorModel(0.0, 0.0, 2.8, 1.7, 0.0), 20_000, seed=3)
    angle = np.degrees(np.arccos(np.clip(axes[:, 0, 2], -1, 1)))
    assert angle.mean() == pytest.approx(2.8, rel=0.02) and angle.std() == pytest.approx(
        1.7, rel=0.03
    )
    seeds, _ = sample_scenarios(implant, ErrorModel(0.0, 0.0, 0.0, 0.0, 0.5), 20_000, seed=4)
    assert (seeds[:, 0, 2] + 10.0).std() == pytest.approx(0.5, rel=0.03)
    assert model.tip_mean_mm == 4.4


def test_the_same_seed_gives_the_same_scenarios(planned) -> None:
    _, _, implant = planned
    model = ERROR_MODELS["freehand"]
    a, b = (sample_scenarios(implant, model, 5, seed=7) for _ in range(2))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], sample_scenarios(implant, model, 5, seed=8)[0])


def evaluated(planned, model: str, scenarios: int, seed: int, source=None):
    """``evaluate_robustness`` of the small plan under error model ``model`` (with the
    plan's source unless ``source`` is given)."""
    spec, plan, implant = planned
    return evaluate_robustness(
        spec,
        plan.case,
        source or plan.source,
        implant,
        ERROR_MODELS[model],
        model_name=model,
        scenarios=scenarios,
        seed=seed,
    )


def test_the_evaluation_reports_each_goals_probability_and_the_nominal_plan(planned) -> None:
    spec, plan, implant = planned
    r = evaluated(planned, "freehand", 40, 0)
    assert r.values["D90_gy"].shape == (40,) and r.target_doses.shape[0] == 40
    d90 = plan.metrics.structures[plan.case.target]["D90_gy"]
    assert r.nominal["D90_gy"] == pytest.approx(d90, rel=0.02)
    summary = r.summary()
    p = summary["probability"][f"D90_gy >= {plan.metrics.prescription_gy:g}"]
    assert p == pytest.approx(np.mean(r.values["D90_gy"] >= plan.metrics.prescription_gy))
    assert 0 <= summary["probability_all_goals"] <= p
    zero = evaluate_robustness(
        spec, plan.case, plan.source, implant, ZERO, model_name="none", scenarios=2, seed=0
    )
    assert zero.values["D90_gy"].tolist() == [zero.nominal["D90_gy"]] * 2


def test_the_strength_factor_is_what_reevaluating_with_stronger_seeds_gives(planned) -> None:
    """Dose is linear in the seeds' strength: the least factor k with P(every goal) >= 50 %,
    found from one evaluation, is confirmed by evaluating again with every seed k times (and
    0.1 % less than k times) as strong, on the same scenarios."""
    import dataclasses

    plan = planned[1]
    r = evaluated(planned, "template-3d-printed", 60, 3)
    k = r.strength_factor(0.5)
    assert k is not None and k > 1  # the plan as planned: D90 >= Rx in few scenarios

    def p_all(factor: float) -> float:
        s = dataclasses.replace(
            plan.source, air_kerma_strength_u=plan.source.air_kerma_strength_u * factor
        )
        return float(evaluated(planned, "template-3d-printed", 60, 3, s).all_hold().mean())

    assert p_all(k) >= 0.5 > p_all(k * 0.999)
    assert r.summary()["strength_factor_90"] == r.strength_factor(0.9)
    with pytest.raises(ValueError, match="probability must be in"):
        r.strength_factor(0.0)


def test_no_strength_factor_where_a_limit_binds_before_the_target_is_covered(planned) -> None:
    import dataclasses

    r = evaluated(planned, "freehand", 20, 0)
    name, limit, _ = r.goals[1]
    tight = dataclasses.replace(r, goals=[r.goals[0], (name, limit * 1e-6, False)])
    assert tight.strength_factor(0.5) is None
    assert dataclasses.replace(r, linear=False).strength_factor(0.5) is None


@pytest.mark.parametrize(
    ("needles", "match"),
    [
        ([{"tip_mm": [0, 0, 0]}], r"needles\.0: expected entry_mm, tip_mm, seeds_mm"),
        ([{"tip_mm": [0, 0], "entry_mm": [0, 0, 9], "seeds_mm": []}], r"needles\.0\.tip_mm"),
        (
            [{"tip_mm": [0, 0, 0], "entry_mm": [0, 0, 9], "seeds_mm": [[0, 0, "a"]]}],
            r"needles\.0\.seeds_mm\.0: expected three finite numbers",
        ),
        ([{"tip_mm": [0, 0, 0], "entry_mm": [0, 0, 0], "seeds_mm": []}], r"tip at its entry"),
        ([{"tip_mm": [0, 0, 0], "entry_mm": [0, 0, 9], "seeds_mm": []}], r"loads no seed"),
    ],
)
def test_a_plan_json_of_another_shape_is_refused_naming_the_entry(needles, match) -> None:
    with pytest.raises(SeedoptError, match=match):
        Implant.from_plan_document({"needles": needles})


def test_impossible_error_models_are_refused() -> None:
    with pytest.raises(SeedoptError, match="tip_sd_mm must be a finite number >= 0"):
        ErrorModel(1.0, -1.0, 0.0, 0.0, 0.0)
    with pytest.raises(SeedoptError, match="needs a positive mean"):
        ErrorModel(0.0, 1.0, 0.0, 0.0, 0.0)


def test_the_robustness_command_writes_its_tables_and_figure(planned, tmp_path) -> None:
    """seedopt robustness PLAN_DIR --out DIR on the small case (the config plan.json records):
    a summary JSON whose probabilities are those of the CSV's rows, an HDF5 of the same
    values, the DVH band."""
    import csv
    import json

    import h5py
    from test_cli import one_line_error, seedopt

    plan_dir = plan_folder(tmp_path, planned[1])

    def robustness(out: Path):  # 30 scenarios of the 3D-printed-template model
        args = ["--scenarios", "30", "--approach", "template-3d-printed", "--backend", "cpu"]
        return seedopt("robustness", str(plan_dir), "--out", str(out), *args)

    out = tmp_path / "rob"
    r = robustness(out)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "robustness.json").read_text())
    rows = list(csv.DictReader((out / "robustness.csv").open()))
    assert summary["scenarios"] == len(rows) == 30
    ok = np.array([row["all_goals"] == "True" for row in rows])
    assert summary["probability_all_goals"] == pytest.approx(ok.mean())
    with h5py.File(out / "robustness.h5") as f:
        np.testing.assert_allclose(f["metrics/D90_gy"][:], [float(x["D90_gy"]) for x in rows])
    assert (out / "dvh_band.png").stat().st_size > 0
    assert "P(every goal)" in r.stdout
    again = robustness(tmp_path / "rob2")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "rob2" / "robustness.csv").read_text() == (
        out / "robustness.csv"
    ).read_text()
    one_line_error(
        seedopt("robustness", str(tmp_path), "--out", str(tmp_path / "x")),
        r"plan\.json: cannot read it",
    )
    one_line_error(
        seedopt("robustness", str(plan_dir), "--out", str(tmp_path / "z"), "--seed", "-1"),
        r"a seed is a whole number",
    )
    one_line_error(
        seedopt(
            "robustness",
            str(plan_dir),
            "--out",
            str(tmp_path / "y"),
            "--tip-mm",
            "0",
            "2",
        ),
        r"needs a positive mean",
    )
