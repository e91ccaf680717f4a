"""The TG-43U1 dose of one seed, model by model (Rivard et al., Med Phys 31:633, 2004)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import polar_points_mm, transverse_points_mm
from hypothesis import given
from hypothesis import strategies as st
from independent_tg43 import IndependentTG43

from seedopt.dose import dose_at_points
from seedopt.dose.tg43 import (
    SEED_HALF_LENGTH_CM,
    SEED_RADIUS_CM,
    atan2_nonneg,
    geometry_factor,
)
from seedopt.sources import Source, get_model

ORIGIN = np.zeros((1, 3))
PLUS_Z = [0.0, 0.0, 1.0]
FLOAT32_REL = 2e-6


def rate(model, points_mm, backend=None, formalism="2d", axis=PLUS_Z):
    return dose_at_points(
        points_mm, ORIGIN, axis, Source(model, 1.0), rate=True, formalism=formalism, backend=backend
    )


def outside_capsule(r_cm, theta_deg):
    th = np.radians(theta_deg)
    return (np.abs(r_cm * np.cos(th)) >= SEED_HALF_LENGTH_CM) | (
        r_cm * np.sin(th) >= SEED_RADIUS_CM
    )


def test_dose_rate_at_the_reference_point_equals_lambda(model, backend) -> None:
    got = rate(model, transverse_points_mm([1.0]), backend)
    assert got[0] == pytest.approx(model.dose_rate_constant, rel=FLOAT32_REL)
    got_1d = rate(model, transverse_points_mm([1.0]), backend, "1d")
    phi_r0 = np.interp(1.0, model.phi_an_r_cm, model.phi_an)
    assert got_1d[0] == pytest.approx(model.dose_rate_constant * phi_r0, rel=FLOAT32_REL)


def test_radial_dose_function_is_reproduced_at_its_nodes(model, backend) -> None:
    r = model.gL_r_cm
    geometry = np.array([geometry_factor(model.active_length_cm, x, 90.0) for x in r])
    g0 = geometry_factor(model.active_length_cm, 1.0, 90.0)
    g = rate(model, transverse_points_mm(r), backend) / (model.dose_rate_constant * geometry / g0)
    np.testing.assert_allclose(g, model.gL, rtol=FLOAT32_REL)


def test_anisotropy_function_is_reproduced_at_its_nodes(model, backend) -> None:
    rr, tt = np.meshgrid(model.F_r_cm, model.F_theta_deg, indexing="ij")
    length = model.active_length_cm
    geometry = np.vectorize(lambda a, b: geometry_factor(length, a, b))(rr, tt)
    g = np.interp(rr, model.gL_r_cm, model.gL)
    expected_rate = model.dose_rate_constant * geometry / geometry_factor(length, 1, 90) * g
    got = rate(model, polar_points_mm(rr, tt).reshape(-1, 3), backend).reshape(rr.shape)
    keep = outside_capsule(rr, tt)
    np.testing.assert_allclose((got / expected_rate)[keep], model.F.T[keep], rtol=FLOAT32_REL)


def test_matches_an_independent_float64_implementation(model) -> None:
    ref = IndependentTG43(model.model_id)
    rng = np.random.default_rng(7)
    r = rng.uniform(0.1, 14.0, 3000)
    theta = rng.uniform(0.0, 180.0, 3000)
    keep = outside_capsule(r, theta)
    r, theta = r[keep], theta[keep]
    got2 = rate(model, polar_points_mm(r, theta))
    got1 = rate(model, polar_points_mm(r, theta), formalism="1d")
    want2 = np.array([ref.rate_2d(a, b) for a, b in zip(r, theta, strict=True)])
    want1 = np.array([ref.rate_1d(a) for a in r])
    np.testing.assert_allclose(got2, want2, rtol=1e-5)
    np.testing.assert_allclose(got1, want1, rtol=1e-5)


def test_inverse_square_far_from_the_seed(model) -> None:
    """For r >> L, G_L -> 1/r^2: r^2 Ddot / g_L(r) tends to Lambda / G_L(r0, theta0)."""
    r = np.array([5.0, 6.0, 8.0, 10.0, 12.0])
    ref = IndependentTG43(model.model_id)
    got = rate(model, transverse_points_mm(r)) * r**2 / np.array([ref.gL(x) for x in r])
    limit = model.dose_rate_constant / geometry_factor(model.active_length_cm, 1.0, 90.0)
    np.testing.assert_allclose(got, limit, rtol=(model.active_length_cm / 5.0) ** 2 / 12 + 1e-6)


def test_radial_dose_is_log_linear_beyond_the_table(model) -> None:
    r = np.array([10.0, 11.0, 12.0, 13.0])
    got = rate(model, transverse_points_mm(r)) * r**2
    ratios = got[1:] / got[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-4)  # constant decrement per cm


def test_nearest_anisotropy_inside_and_beyond_the_table(model) -> None:
    ref = IndependentTG43(model.model_id)
    r_far = model.F_r_cm[-1] + 2.0
    for theta in (0.0, 30.0, 60.0):
        got = rate(model, polar_points_mm(np.array([r_far]), np.array([theta])))[0]
        want = (
            ref.lam
            * ref.G(r_far, theta)
            / ref.G(1, 90)
            * ref.gL(r_far)
            * ref.Fa(model.F_r_cm[-1], theta)
        )
        assert got == pytest.approx(want, rel=1e-5)


@given(
    rho=st.floats(0.05, 8.0),
    z=st.floats(0.0, 8.0),
    phi=st.floats(0.0, 2 * math.pi),
    model_id=st.sampled_from(["6711", "2301", "I25.S06", "IAI-125A"]),
)
def test_symmetric_about_the_transverse_plane_and_the_axis(rho, z, phi, model_id) -> None:
    m = get_model(model_id)
    pts = (
        np.array(
            [
                [rho * math.cos(phi), rho * math.sin(phi), z],
                [rho * math.cos(phi), rho * math.sin(phi), -z],
                [rho, 0.0, z],
            ]
        )
        * 10.0
    )
    d = rate(m, pts)
    assert d[1] == pytest.approx(d[0], rel=1e-6)
    assert d[2] == pytest.approx(d[0], rel=1e-5)


def test_dose_is_finite_everywhere_including_inside_the_seed(model) -> None:
    pts = np.array(
        [
            [0, 0, 0],
            [0, 0, 0.5],
            [0, 0, 1.5],
            [0, 0, 2.25],
            [0.1, 0, 1.0],
            [0.4, 0, 0],
            [0, 0, 2.26],
            [1.0, 0, 0],
        ],
        dtype=float,
    )
    d = rate(model, pts)
    assert np.all(np.isfinite(d)) and np.all(d > 0)
    # inside the capsule: the value on its surface at the same height along the axis
    np.testing.assert_allclose(d[0], d[5], rtol=1e-6)
    np.testing.assert_allclose(d[4], rate(model, np.array([[0.4, 0, 1.0]]))[0], rtol=1e-6)


def test_geometry_factor_reference_value() -> None:
    """G_L(1 cm, 90 deg) for L = 0.3 cm is 0.99259965 cm^-2 (also TPOR's unit test)."""
    assert geometry_factor(0.3, 1.0, 90.0) == pytest.approx(0.99259965, abs=1e-8)


def test_one_d_and_two_d_agree_on_the_transverse_axis_within_the_phi_an_spread(model) -> None:
    r = np.linspace(0.5, 7.0, 40)
    ratio = rate(model, transverse_points_mm(r), formalism="1d") / rate(
        model, transverse_points_mm(r)
    )
    np.testing.assert_allclose(ratio, np.interp(r, model.phi_an_r_cm, model.phi_an), rtol=1e-5)
    spread = np.abs(model.phi_an - 1.0).max()
    assert np.all(np.abs(ratio - 1.0) <= spread + 1e-6)


def test_total_dose_of_1u_6711_at_the_reference_point_is_1984_72_cgy() -> None:
    d = dose_at_points(transverse_points_mm([1.0]), ORIGIN, PLUS_Z, Source(get_model("6711"), 1.0))
    assert d[0] * 100.0 == pytest.approx(1984.72, abs=0.01)


def test_polynomial_arctangent_is_float32_accurate() -> None:
    rng = np.random.default_rng(3)
    y = rng.uniform(1e-6, 10.0, 200_000).astype(np.float32)
    x = rng.uniform(-10.0, 10.0, 200_000).astype(np.float32)
    x[:1000] = 0.0
    got = atan2_nonneg(np, y, x)
    want = np.arctan2(y.astype(np.float64), x.astype(np.float64))
    assert got.dtype == np.float32
    assert np.max(np.abs(got / want - 1.0)) < 3e-7
