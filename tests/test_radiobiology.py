"""EQD2 of a fractionated course and of a permanent I-125 implant (``seedopt.radiobiology``)
against values computed by hand.

Hand calculation of the implant values: lambda = ln 2 / (59.4 d x 24 h) = 4.8621e-4 /h,
mu = ln 2 / 1.5 h = 0.46210 /h, lambda / (mu + lambda) = 1.05108e-3; then
BED = D (1 + 1.05108e-3 D / (a/b)) and EQD2 = BED / (1 + 2 / (a/b)).
"""

from __future__ import annotations

import numpy as np
import pytest

from seedopt.errors import SeedoptError
from seedopt.radiobiology import ImplantEqd2, Radiobiology, Repopulation, eqd2_fractionated


@pytest.mark.parametrize(
    ("dose", "fractions", "ab", "eqd2"),
    [
        (30.0, 10, 2.0, 37.5),  # 30 (3 + 2) / (2 + 2): the classic palliative spine course
        (30.0, 10, 10.0, 32.5),  # 30 (3 + 10) / 12
        (20.0, 5, 3.0, 28.0),  # 20 (4 + 3) / 5
        (50.0, 25, 3.0, 50.0),  # 2 Gy per fraction is its own EQD2
        (8.0, 1, 2.0, 20.0),  # 8 (8 + 2) / 4: a single fraction
    ],
)
def test_fractionated_eqd2_by_hand(dose, fractions, ab, eqd2) -> None:
    assert eqd2_fractionated(dose, fractions, ab) == pytest.approx(eqd2, rel=1e-12)


@pytest.mark.parametrize(
    ("dose", "ab", "bed", "eqd2"),
    [
        (145.0, 3.0, 152.366, 91.420),  # 145 (1 + 0.050802); / (5/3)
        (100.0, 2.0, 105.255, 52.628),  # 100 (1 + 0.052554); / 2
        (200.0, 10.0, 204.204, 170.170),  # 200 (1 + 0.021022); / 1.2
        (10.0, 3.0, 10.035, 6.021),  # 10 (1 + 0.0035036); / (5/3)
        (60.0, 2.0, 61.892, 30.946),  # 60 (1 + 0.031533); / 2
    ],
)
def test_permanent_implant_eqd2_by_hand(dose, ab, bed, eqd2) -> None:
    model = ImplantEqd2(ab, half_life_d=59.4, repair_half_time_h=1.5)
    assert model.coefficient == pytest.approx(1.05108e-3, rel=1e-5)
    assert model.bed(dose) == pytest.approx(bed, rel=1e-5)
    assert model.eqd2(dose) == pytest.approx(eqd2, rel=1e-5)
    assert model.dose_for_eqd2(model.eqd2(dose)) == pytest.approx(dose, rel=1e-12)


def test_the_implant_eqd2_is_per_voxel_increasing_and_convex() -> None:
    model = ImplantEqd2(2.0, 59.4)
    d = np.linspace(0.0, 300.0, 301)
    e = model.eqd2(d)
    assert e[0] == 0.0 and np.all(np.diff(e) > 0) and np.all(np.diff(e, 2) > 0)


def test_a_source_that_barely_decays_gives_no_quadratic_term() -> None:
    """As lambda / mu -> 0 the quadratic term vanishes: EQD2 -> D / (1 + 2 / (a/b))."""
    slow = ImplantEqd2(3.0, half_life_d=1e9, repair_half_time_h=1.5)
    assert slow.eqd2(120.0) == pytest.approx(120.0 / (1 + 2 / 3.0), rel=1e-8)


def test_parameters_per_structure_fall_back_to_the_default() -> None:
    bio = Radiobiology({"default": 3.0, "GTV": 10.0, "SpinalCord": 2.0}, {"default": 1.5})
    assert bio.alpha_beta("SpinalCord") == 2.0 and bio.alpha_beta("Skin") == 3.0
    assert bio.implant("GTV", 59.4) == ImplantEqd2(10.0, 59.4, 1.5)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: eqd2_fractionated(30.0, 0, 2.0),
        lambda: eqd2_fractionated(30.0, 2.5, 2.0),
        lambda: eqd2_fractionated(30.0, 10, -1.0),
        lambda: ImplantEqd2(0.0, 59.4),
        lambda: ImplantEqd2(3.0, float("nan")),
        lambda: ImplantEqd2(3.0, 59.4, 0.0),
    ],
)
def test_impossible_parameters_are_refused(bad) -> None:
    with pytest.raises(SeedoptError):
        bad()


# --- tumour repopulation ----------------------------------------------------------------------

FAST = Repopulation(alpha_per_gy=0.3, t_pot_days=5.0)
"""K = ln 2 / (0.3 /Gy x 120 h) = 0.019254 Gy/h."""


def test_without_repopulation_the_protracted_integral_gives_dales_closed_form() -> None:
    model = ImplantEqd2(3.0, 59.4)
    assert model.bed_until(145.0, 1e9) == pytest.approx(float(model.bed(145.0)), rel=1e-9)


def test_the_repopulating_bed_is_the_largest_bed_over_the_treatment_time() -> None:
    """Against an independent computation: the BED integral by scipy's quad and its
    maximum over T by a bounded scalar search."""
    from scipy import integrate, optimize

    model = ImplantEqd2(10.0, 59.4, 1.5, FAST)
    lam, mu, k = model.decay_per_h, model.repair_per_h, FAST.rate_gy_per_h
    r0 = 145.0 * lam

    def inner(t: float) -> float:  # the dose still unrepaired at t, Gy
        return integrate.quad(lambda s: r0 * np.exp(-lam * s - mu * (t - s)), 0, t)[0]

    def bed(t_h: float) -> float:
        quad = integrate.quad(lambda t: r0 * np.exp(-lam * t) * inner(t), 0, t_h, limit=200)[0]
        return r0 * (1 - np.exp(-lam * t_h)) / lam + 2 * quad / 10.0 - k * t_h

    best = optimize.minimize_scalar(lambda t: -bed(t), bounds=(500, 6000), method="bounded")
    assert float(model.bed(145.0)) == pytest.approx(-best.fun, rel=1e-6)
    assert model.effective_time_h(145.0) == pytest.approx(best.x, rel=1e-3)


def test_the_effective_time_is_near_where_the_dose_rate_meets_repopulation() -> None:
    """By hand: R0 = 145 x 4.8621e-4 = 0.070501 Gy/h, ln(R0 / K) / lambda = ln(3.6616) /
    4.8621e-4 /h = 2669 h = 111.2 days; the quadratic term's extra killing makes it a little
    later."""
    model = ImplantEqd2(10.0, 59.4, 1.5, FAST)
    t_eff_d = model.effective_time_h(145.0) / 24
    assert 111.2 < t_eff_d < 111.2 * 1.01


def test_an_implant_slower_than_repopulation_gives_no_bed_and_the_inverse_holds() -> None:
    model = ImplantEqd2(10.0, 59.4, 1.5, FAST)
    slow_gy = 0.9 * FAST.rate_gy_per_h / model.decay_per_h  # R0 just below K
    assert model.effective_time_h(slow_gy) == 0.0 and float(model.bed(slow_gy)) == 0.0
    assert model.dose_for_eqd2(float(model.eqd2(200.0))) == pytest.approx(200.0, rel=1e-9)
    assert model.dose_for_eqd2(120.0) > ImplantEqd2(10.0, 59.4).dose_for_eqd2(120.0)
