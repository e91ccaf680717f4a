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
from seedopt.radiobiology import ImplantEqd2, Radiobiology, eqd2_fractionated


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
