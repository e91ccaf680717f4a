"""DVH metrics against values worked out by hand and against analytic dose fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seedopt.metrics import (
    Structure,
    conformity_indices,
    parse_requested_metric,
    requested_metric,
    requested_metric_key,
)


def ten_voxels() -> Structure:
    """Ten 0.1 cc voxels with doses 10, 20, ..., 100 Gy (1 cc in all)."""
    return Structure.from_mask(np.arange(10, 101, 10.0), np.ones(10), 0.1)


def test_d90_is_the_dose_that_90_percent_of_the_volume_receives() -> None:
    s = ten_voxels()
    # 9 of 10 voxels (90 %) receive >= 20 Gy; 100 % receive >= 10 Gy.
    assert s.dose_at_percent(90) == 20.0
    assert s.dose_at_percent(100) == 10.0
    assert s.dose_at_percent(10) == 100.0
    assert s.dose_at_percent(95) == 10.0  # 95 % needs a tenth voxel


def test_absolute_volume_doses() -> None:
    s = ten_voxels()
    assert s.dose_at_volume_cc(0.1) == 100.0  # D0.1cc: the hottest voxel
    assert s.dose_at_volume_cc(0.3) == 80.0
    assert s.dose_at_volume_cc(0.25) == 80.0  # 0.25 cc needs a third voxel
    assert s.dose_at_volume_cc(2.0) == 10.0  # D2cc of a 1 cc structure: its coldest voxel
    assert math.isnan(Structure(np.zeros(0), np.zeros(0)).dose_at_volume_cc(0.1))  # no voxel


def test_volume_percent_mean_and_max() -> None:
    s = ten_voxels()
    assert s.percent_at_dose(50.0) == 60.0
    assert s.percent_at_dose(50.1) == 50.0
    assert s.volume_at_dose_cc(95.0) == pytest.approx(0.1)
    assert s.mean_gy() == 55.0
    assert s.max_gy() == 100.0


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("D80", "D80_gy", 30.0),  # 8 of 10 voxels receive >= 30 Gy
        ("D0.3cc", "D0.3cc_gy", 80.0),  # the third-hottest 0.1 cc voxel
        ("V120", "V120_pct", 50.0),  # prescription 50 Gy: >= 60 Gy in 5 of 10 voxels
        ("V75Gy", "V75Gy_pct", 30.0),
        ("V100%", "V100%_pct", 60.0),
    ],
)
def test_requested_dx_and_vx_by_hand(name: str, key: str, value: float) -> None:
    assert requested_metric(name, ten_voxels(), prescription_gy=50.0) == pytest.approx(value)
    assert requested_metric_key(name) == key


@pytest.mark.parametrize("name", ["X90", "D", "D90Gy", "V2cc", "D120", "d90", "V-5"])
def test_unknown_metric_names_are_refused_with_the_accepted_forms(name: str) -> None:
    with pytest.raises(ValueError, match="Dx / Vx metric|at most 100"):
        parse_requested_metric(name)


def test_partial_volume_weights_count_as_fractions_of_a_voxel() -> None:
    s = Structure.from_mask(np.array([10.0, 20.0, 30.0]), np.array([1.0, 0.5, 0.0]), 1.0)
    assert s.total_cc == 1.5
    assert s.mean_gy() == pytest.approx((10 + 0.5 * 20) / 1.5)
    assert s.percent_at_dose(15.0) == pytest.approx(100 / 3)


def test_cumulative_dvh_curve() -> None:
    levels, percent = ten_voxels().dvh(bin_gy=10.0)
    np.testing.assert_array_equal(levels, np.arange(0, 101, 10.0))
    np.testing.assert_allclose(percent, [100, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10], rtol=1e-12)


def test_indices_by_hand() -> None:
    """Target of 10 cc, 8 cc >= Rx, 3 cc >= 1.5 Rx; 4 cc of normal tissue >= Rx."""
    rx = 100.0
    target = Structure.from_mask(
        np.r_[np.full(3, 160.0), np.full(5, 120.0), np.full(2, 80.0)], np.ones(10), 1.0
    )
    normal = np.r_[np.full(4, 110.0), np.full(6, 20.0)]
    body = Structure.from_mask(np.r_[target.dose_gy, normal], np.ones(20), 1.0)
    idx = conformity_indices(target, body, rx)
    assert idx.CI == pytest.approx((8 / 10) * (8 / 12))
    assert idx.EI == pytest.approx((12 - 8) / 10)
    assert idx.HI == pytest.approx((8 - 3) / 8)


def test_metrics_of_a_radial_dose_field_match_the_analytic_dvh() -> None:
    """Dose D(r) = D0 (r0 / r)^2 in a sphere of radius R: the volume receiving >= d is the
    sphere of radius r0 sqrt(D0 / d), so D_x% = D0 r0^2 / (R^2 (x/100)^(2/3))."""
    R, r0, d0, h = 20.0, 10.0, 100.0, 0.4  # mm, mm, Gy, voxel size mm
    g = np.arange(-R - h, R + h, h) + h / 2
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z)
    dose = d0 * (r0 / np.maximum(r, 1e-3)) ** 2
    s = Structure.from_mask(dose, r <= R, (h / 10) ** 3)
    for x_pct in (90.0, 50.0, 10.0):
        analytic = d0 * r0**2 / (R**2 * (x_pct / 100) ** (2 / 3))
        assert s.dose_at_percent(x_pct) == pytest.approx(analytic, rel=0.01)
    for level in (50.0, 100.0, 200.0):
        analytic = 100.0 * min(1.0, (r0 * math.sqrt(d0 / level) / R) ** 3)
        assert s.percent_at_dose(level) == pytest.approx(analytic, abs=0.5)
