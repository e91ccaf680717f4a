"""A re-irradiation plan from its config (issue 18): the built-in vertebral case after 30 Gy in
10 fractions to the spine, with a cumulative-EQD2 cord limit that binds.

The plan's cumulative cord metric is recomputed here from its seeds (an independent TG-43
dose at the cord's voxels), the prior RT Dose read and resampled anew, and the EQD2 formulas
written out; the config refuses what cannot be planned.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml
from independent_tg43 import IndependentTG43

from seedopt.backend import cpu_backend
from seedopt.errors import SeedoptError
from seedopt.metrics import Structure
from seedopt.plan_config import PlanSpec, load_plan_spec
from seedopt.planning import plan_case
from seedopt.reirradiation import limited_volume, phantom_frame_uid

CASES = Path(str(resources.files("seedopt.configs").joinpath("cases")))
CONFIG = CASES / "vertebral_reirradiation.yaml"
CORD_LIMIT = 50.0


def implant_dose_gy(points_mm, seeds_mm, axes, source) -> np.ndarray:
    """Total dose (Gy) of the permanent implant at ``points_mm``: TG-43U1 2D dose rate from
    the independent code times the mean life (T_half / ln 2)."""
    ref = IndependentTG43(source.model.model_id)
    mean_life_h = source.half_life_d * 24.0 / np.log(2.0)
    out = np.zeros(len(points_mm))
    for s, a in zip(seeds_mm, axes, strict=True):
        v = (points_mm - s) / 10.0  # cm
        r = np.linalg.norm(v, axis=1)
        theta = np.degrees(np.arccos(np.clip(v @ a / r, -1.0, 1.0)))
        out += [ref.rate_2d(ri, ti) for ri, ti in zip(r, theta, strict=True)]
    return out * source.air_kerma_strength_u * mean_life_h / 100.0


@pytest.fixture(scope="module")
def planned():
    spec = load_plan_spec(CONFIG)
    return spec, plan_case(spec, cpu_backend(), cache_dir=None)


def test_the_committed_prior_course_is_what_make_prior_writes() -> None:
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "make_prior.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "is current" in r.stdout, r.stdout + r.stderr


def test_the_cumulative_cord_metric_recomputed_from_the_seeds_and_the_prior(planned) -> None:
    """Implant dose at the cord's voxels from the plan's seeds (independent TG-43 code), its
    EQD2 by Dale's formula, the prior's EQD2 from the RT Dose resampled with SciPy: the
    hottest 0.1 cc of the sum equals the reported value within 1 %."""
    from scipy.interpolate import RegularGridInterpolator

    from seedopt.dicom.prior_dose import read_prior_dose

    spec, plan = planned
    case = plan.case
    mask = case.masks["SpinalCord"] > 0
    points = case.grid.points_mm(mask)
    implant = implant_dose_gy(points, plan.seeds_mm, plan.seed_axes, plan.source)
    lam = np.log(2) / (59.4 * 24)
    mu = np.log(2) / 1.5
    implant_eqd2 = implant * (1 + lam / (mu + lam) * implant / 2.0) / (1 + 2 / 2.0)
    prior = read_prior_dose(spec.prior.dose, phantom_frame_uid(case.name))
    grid = RegularGridInterpolator((prior.z_mm, prior.y_mm, prior.x_mm), prior.gy)
    d = grid(points[:, ::-1])
    prior_eqd2 = d * (d / 10 + 2.0) / (2 + 2.0)
    k = int(np.ceil(0.1 / case.grid.voxel_cc - 1e-9))
    expected = np.sort(implant_eqd2 + prior_eqd2)[-k]
    reported = plan.metrics.structures["SpinalCord"]["D0.1cc_eqd2_cumulative_gy"]
    assert reported == pytest.approx(expected, rel=0.01)
    goal = next(g for g in plan.metrics.goals if g.name.startswith("SpinalCord"))
    assert goal.name == "SpinalCord D0.1cc <= 50 Gy (cumulative EQD2)"
    assert goal.met and goal.value == reported
    from seedopt.report import format_report

    line = next(x for x in format_report(plan.metrics).splitlines() if "EQD2 (Gy)" in x)
    assert line.startswith("SpinalCord D0.1cc EQD2 (Gy): physical ") and "prior 37.5" in line


def test_the_plan_meets_the_cumulative_limit_that_the_physical_plan_breaks(planned) -> None:
    spec, plan = planned
    # the same case planned on physical dose: the default limits, and no price on organ dose
    # below them (a plan that knows nothing of the prior dose has no reason to spare the cord)
    data = spec_with(goals={"weights": {"organ_per_pct": 0.0}})
    for key in ("prior", "radiobiology"):
        del data[key]
    physical = PlanSpec.model_validate(data, context={"base_dir": CASES})
    alone = plan_case(physical, cpu_backend(), cache_dir=None)
    cumulative = spec.hard_limits("Skin")[0]  # the cord's, evaluated on the physical plan
    assert (cumulative.quantity, cumulative.max_gy) == ("eqd2_cumulative", CORD_LIMIT)
    vol = limited_volume(spec, plan.case, plan.source, cumulative, alone.dose_gy)
    cord = Structure.from_mask(vol, plan.case.masks["SpinalCord"], plan.case.grid.voxel_cc)
    assert cord.dose_at_volume_cc(0.1) > CORD_LIMIT  # the physical plan breaks it
    assert plan.metrics.goals_met and alone.metrics.goals_met  # each meets its own goals


def spec_with(**changes) -> dict:
    data = yaml.safe_load(CONFIG.read_text())
    data = copy.deepcopy(data)
    data.update(changes)
    return data


def test_a_cumulative_limit_without_a_prior_course_is_refused_naming_the_key() -> None:
    data = spec_with()
    del data["prior"]
    with pytest.raises(Exception, match=r"goals\.hard\.0\.quantity: eqd2_cumulative needs"):
        PlanSpec.model_validate(data, context={"base_dir": CASES})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"prior": {"dose": "x.dcm", "fractions": 10, "recovery": 1.0}}, r"recovery must be"),
        ({"prior": {"dose": "x.dcm", "fractions": 0}}, r"prior\.fractions"),
        ({"radiobiology": {"alpha_beta_gy": {"Cord": 2}}}, r"no structure named 'Cord'"),
        ({"radiobiology": {"alpha_beta_gy": {"GTV": -1}}}, r"alpha_beta_gy\.GTV"),
    ],
)
def test_bad_prior_and_radiobiology_settings_name_the_key(changes, match) -> None:
    with pytest.raises(Exception, match=match):
        PlanSpec.model_validate(spec_with(**changes), context={"base_dir": CASES})


def test_a_prior_dose_on_another_frame_of_reference_is_refused(tmp_path) -> None:
    import pydicom

    ds = pydicom.dcmread(CASES / "vertebral_reirradiation_prior.dcm")
    ds.FrameOfReferenceUID = "1.2.3"
    ds.save_as(tmp_path / "other.dcm")
    data = spec_with(prior={"dose": str(tmp_path / "other.dcm"), "fractions": 10})
    spec = PlanSpec.model_validate(data, context={"base_dir": CASES})
    with pytest.raises(SeedoptError, match=r"frame of reference 1\.2\.3, not the case's"):
        plan_case(spec, cpu_backend(), cache_dir=None)


def test_the_reirradiation_benchmark_writes_its_table(tmp_path) -> None:
    """The cohort benchmark on one small case: a generated prior course, both plans, both
    cumulative metrics in the table."""
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [
            sys.executable,
            str(root / "benchmarks" / "bench_reirradiation.py"),
            "--cases",
            "head_neck_20",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    table = next(tmp_path.glob("*-reirradiation.md")).read_text()
    rows = [line for line in table.splitlines() if line.startswith("| head_neck_20 |")]
    assert [row.split(" | ")[1] for row in rows] == ["physical", "cumulative EQD2"]
    assert all("(50)" in row and "(80)" in row for row in rows)


def test_an_eqd2_prescription_aims_at_the_physical_d90_with_that_eqd2() -> None:
    """120 Gy EQD2 to the GTV (alpha/beta 10) is the implant dose D with
    D (1 + 1.05108e-3 D / 10) / 1.2 = 120, i.e. D + 1.05108e-4 D^2 = 144: D = 141.88 Gy."""
    from seedopt.pipeline import prepare

    data = spec_with(prescription_quantity="eqd2")
    spec = PlanSpec.model_validate(data, context={"base_dir": CASES})
    prepared = prepare(spec, cpu_backend())
    assert prepared.problem.prescription_gy == pytest.approx(141.88, rel=1e-3)


def test_a_prior_dose_that_leaves_part_of_the_cord_outside_is_refused_saying_how_much(
    tmp_path,
) -> None:
    import pydicom

    ds = pydicom.dcmread(CASES / "vertebral_reirradiation_prior.dcm")
    frames = int(ds.NumberOfFrames)
    keep = frames // 2  # the lower half of the frames: z up to about 0 mm
    pixels = ds.pixel_array[:keep]
    ds.PixelData = pixels.tobytes()
    ds.NumberOfFrames = keep
    ds.GridFrameOffsetVector = list(ds.GridFrameOffsetVector)[:keep]
    ds.save_as(tmp_path / "half.dcm")
    data = spec_with(prior={"dose": str(tmp_path / "half.dcm"), "fractions": 10})
    spec = PlanSpec.model_validate(data, context={"base_dir": CASES})
    with pytest.raises(
        SeedoptError,
        match=r"does not cover SpinalCord: \d+ of its \d+ voxels "
        r"\(\d+\.\d %\) lie outside the RT Dose grid",
    ) as err:
        plan_case(spec, cpu_backend(), cache_dir=None)
    assert "\n" not in str(err.value)


def test_the_dvh_figure_draws_the_cumulative_curve_beside_the_physical_ones(
    planned, tmp_path, monkeypatch
) -> None:
    from seedopt import figures

    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path, dpi: drawn.setdefault("fig", fig))
    figures.dvh_figure(planned[1], tmp_path / "dvh.png")
    ax = drawn["fig"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "SpinalCord" in labels and "SpinalCord cumulative EQD2" in labels
    assert "EQD2" in ax.get_xlabel()


def test_tumour_repopulation_raises_the_physical_dose_an_eqd2_prescription_needs() -> None:
    from seedopt.pipeline import prepare
    from seedopt.radiobiology import ImplantEqd2, Repopulation

    data = spec_with(prescription_quantity="eqd2")
    data["radiobiology"]["repopulation"] = {"GTV": {"alpha_per_gy": 0.3, "t_pot_days": 20}}
    spec = PlanSpec.model_validate(data, context={"base_dir": CASES})
    rx = prepare(spec, cpu_backend()).problem.prescription_gy
    expected = ImplantEqd2(10.0, 59.4, 1.5, Repopulation(0.3, 20.0)).dose_for_eqd2(120.0)
    assert rx == pytest.approx(expected, rel=1e-9) and rx > 141.9  # more than without
    bad = spec_with(radiobiology={"repopulation": {"GTV": {"alpha_per_gy": 0.3}}})
    with pytest.raises(Exception, match=r"radiobiology\.repopulation\.GTV\.t_pot_days"):
        PlanSpec.model_validate(bad, context={"base_dir": CASES})


def test_a_saved_case_keeps_its_prior_course(tmp_path) -> None:
    """The prior dose on the grid and its highest dose beyond the grid (the bound beyond-grid
    goals use) survive the case file."""
    from seedopt.case import Case
    from seedopt.pipeline import load_case

    case, _ = load_case(load_plan_spec(CONFIG))
    assert case.prior_beyond_max_gy is not None and 0 < case.prior_beyond_max_gy <= 30.0
    case.save_h5(tmp_path / "case.h5")
    back = Case.load_h5(tmp_path / "case.h5")
    assert back.prior_beyond_max_gy == case.prior_beyond_max_gy
    np.testing.assert_allclose(back.prior_dose_gy, case.prior_dose_gy, rtol=1e-6)
