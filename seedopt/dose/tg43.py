"""TG-43U1 dose rate of one oriented seed, written once over an array module ``xp``.

2D line-source formalism (TG-43U1 eq. 1, Rivard et al. Med Phys 31:633, 2004)::

    Ddot(r, theta) = S_K * Lambda * G_L(r, theta) / G_L(r0, theta0) * g_L(r) * F(r, theta)

with the exact line-source geometry function written in a form that is stable on the long
axis: ``G_L = beta / (L rho)`` and ``beta = atan2(L rho, r^2 - L^2/4)``, where ``rho`` is the
distance from the seed axis and ``beta`` the angle the active length subtends at the point;
on the axis (rho = 0) it tends to ``1 / (r^2 - L^2/4)``, which ``RHO_FLOOR_CM`` reproduces.

1D formalism (TG-43U1 eq. 11 with X = L)::

    Ddot(r) = S_K * Lambda * G_L(r, theta0) / G_L(r0, theta0) * g_L(r) * phi_an(r)

This equals the point-source form ``(r0/r)^2 g_P(r) phi_an(r)`` identically, because
``g_P(r) = g_L(r) G_L(r, theta0) / G_L(r0, theta0) (r/r0)^2`` (TG-43U1 eq. 10).

Interpolation and extrapolation (documented choice, TG-43U1 Appendix C as commonly quoted):

* g_L(r): linear between nodes; nearest value below the first node; log-linear extrapolation
  from the last two nodes beyond the last one.
* F(r, theta): bilinear in (r, theta) inside the table; the nearest radius outside it.
  F(r, 180 - theta) = F(r, theta) (symmetric seeds), so theta is folded into 0-90 deg.
* phi_an(r): linear between nodes, nearest value outside.

Inside the seed: TG-43 is not defined within the capsule. Points inside the capsule (a
cylinder of radius ``SEED_RADIUS_CM`` and half-length ``SEED_HALF_LENGTH_CM``, the 0.8 x 4.5 mm
of these seeds) are evaluated on its curved surface (rho raised to the capsule radius at the
same z). This keeps every dose finite, including points on the axis within the active
length, and touches no point outside the capsule. In 1D, r is raised to the capsule radius.

Arctangents use a float32 polynomial (``atan2_nonneg``, relative error below 2e-7) instead
of libm's scalar ``atan2`` (25 ns per value on the CPU here, two per matrix entry); the CUDA
kernel evaluates the same polynomial in the same order, so both backends round alike.

All tables are resampled onto uniform grids whose step divides every node spacing, so
linear interpolation on the uniform grid reproduces the consensus piecewise-linear
interpolation exactly; the CUDA kernel (``seedopt.kernels.tg43``) uses the same grids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any, Literal, NamedTuple

import numpy as np

from ..sources import SourceModel

Formalism = Literal["2d", "1d"]
FORMALISMS: tuple[str, ...] = ("2d", "1d")

SEED_HALF_LENGTH_CM = 0.225
"""Half the outer length of the 4.5 mm seed capsule, cm."""
SEED_RADIUS_CM = 0.04
"""Outer radius of the 0.8 mm seed capsule, cm."""
ATAN_COEFFS = (
    1.0,
    -0.3333307206630707,
    0.1999261975288391,
    -0.14203649759292603,
    0.10640957206487656,
    -0.07504348456859589,
    0.04269220307469368,
    -0.01606907695531845,
    0.0028500084299594164,
)
"""atan(a)/a ~ P(a^2) on 0 <= a <= 1 (minimax in relative error, degree 8 in a^2); evaluated
in float32 the arctangent is within 2e-7 relative of the exact one (tests check this)."""
RHO_FLOOR_CM = 1e-7
"""Smallest distance from the seed axis used, cm: on the axis, G_L = beta/(L rho) then equals
its limit 1/(r^2 - L^2/4) to 1e-11 and theta is below 1e-4 deg, with no special case."""
R0_CM = 1.0
"""TG-43 reference distance, cm (theta0 = 90 deg)."""


@dataclass(frozen=True)
class UniformTable:
    """Values on a uniform grid ``x0 + k * dx`` (k = 0..n-1)."""

    x0: float
    dx: float
    values: np.ndarray  # float64, shape (n,) or (n_theta, n_r) for 2D tables

    @property
    def n(self) -> int:
        return int(self.values.shape[-1])


@dataclass(frozen=True)
class TG43Tables:
    """A model's TG-43 data resampled for fast, exact lookup (units: cm, deg, cGy/h/U).

    ``F`` is stored with theta on axis 0 (step ``F_dtheta_deg`` from 0 deg) and r on axis 1.
    """

    model_id: str
    dose_rate_constant: float
    active_length_cm: float
    G0: float  # G_L(r0, theta0), cm^-2
    gL: UniformTable
    gL_log_slope_per_cm: float  # d ln g_L / dr beyond the last node
    gL_r_max_cm: float
    F: UniformTable  # over r; values shape (n_theta, n_r)
    F_dtheta_deg: float
    phi_an: UniformTable


def _common_step(nodes: np.ndarray) -> float:
    """Largest step that divides every spacing of ``nodes`` (to 1e-6 of the unit)."""
    spacings = [Fraction(float(d)).limit_denominator(10**6) for d in np.diff(nodes)]
    num = math.gcd(*(s.numerator * (10**6 // s.denominator) for s in spacings))
    return num / 10**6


def _uniform(nodes: np.ndarray, values: np.ndarray) -> UniformTable:
    step = _common_step(nodes)
    n = int(round((nodes[-1] - nodes[0]) / step)) + 1
    grid = nodes[0] + step * np.arange(n)
    if values.ndim == 1:
        resampled = np.interp(grid, nodes, values)
    else:
        resampled = np.stack([np.interp(grid, nodes, row) for row in values])
    return UniformTable(float(nodes[0]), step, resampled)


def geometry_factor(length_cm: float, r_cm: float, theta_deg: float) -> float:
    """Exact line-source G_L(r, theta), cm^-2 (TG-43U1 eq. 4), in float64."""
    rho = r_cm * math.sin(math.radians(theta_deg))
    d = r_cm * r_cm - length_cm * length_cm / 4.0
    if rho == 0.0:
        return 1.0 / d
    return math.atan2(length_cm * rho, d) / (length_cm * rho)


@cache
def tables_for(model: SourceModel) -> TG43Tables:
    """Uniform-grid lookup tables for ``model``."""
    if model.active_length_cm / 2 >= SEED_HALF_LENGTH_CM:
        raise ValueError(f"{model.model_id}: active length longer than the seed capsule")
    F_theta = model.F_theta_deg
    dtheta = _common_step(F_theta)
    if F_theta[0] != 0.0 or abs(F_theta[-1] - 90.0) > 1e-9:
        raise ValueError(f"{model.model_id}: F must be tabulated from 0 to 90 deg")
    theta_grid = dtheta * np.arange(int(round(90.0 / dtheta)) + 1)
    F_theta_uniform = np.stack(
        [np.interp(theta_grid, F_theta, model.F[:, k]) for k in range(model.F.shape[1])], axis=1
    )
    F_tab = _uniform(model.F_r_cm, F_theta_uniform)
    r, g = model.gL_r_cm, model.gL
    slope = float(math.log(g[-1] / g[-2]) / (r[-1] - r[-2]))
    return TG43Tables(
        model_id=model.model_id,
        dose_rate_constant=model.dose_rate_constant,
        active_length_cm=model.active_length_cm,
        G0=geometry_factor(model.active_length_cm, R0_CM, 90.0),
        gL=_uniform(r, g),
        gL_log_slope_per_cm=slope,
        gL_r_max_cm=float(r[-1]),
        F=F_tab,
        F_dtheta_deg=dtheta,
        phi_an=_uniform(model.phi_an_r_cm, model.phi_an),
    )


def atan2_nonneg(xp: Any, y: Any, x: Any) -> Any:
    """atan2(y, x) in radians for y > 0 (any sign of x), by the ``ATAN_COEFFS`` polynomial.

    Octant folds are written as 0/1 blends (``p + flag * (c - 2p)``), which NumPy evaluates
    several times faster than ``where``; the CUDA kernel does the same arithmetic.
    """
    ax = xp.abs(x)
    a = xp.minimum(y, ax) / xp.maximum(y, ax)
    s = a * a
    p = xp.full_like(a, ATAN_COEFFS[-1])
    for c in ATAN_COEFFS[-2::-1]:
        p *= s
        p += c
    p *= a
    p += (y > ax).astype(p.dtype) * ((math.pi / 2) - 2.0 * p)
    p += (x < 0).astype(p.dtype) * (math.pi - 2.0 * p)
    return p


class DeviceTables(NamedTuple):
    """Per-cell interpolation coefficients on one device (float32 arrays).

    1D tables: ``value[i] + f * slope[i]`` in cell i. F: with fraction fr along r and ft
    along theta, ``(c00 + fr c01) + ft (c10 + fr c11)`` at cell ``k = i_theta * n_r + i_r``.
    The last node is its own cell (zero slope), so no index needs clamping twice.
    """

    gL_value: Any
    gL_slope: Any
    F_c00: Any
    F_c01: Any
    F_c10: Any
    F_c11: Any
    phi_value: Any
    phi_slope: Any


def _cells_1d(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return v, np.append(np.diff(v), 0.0)


def _cells_2d(F: np.ndarray) -> tuple[np.ndarray, ...]:
    """Bilinear coefficients of F (n_theta, n_r), each flattened, edges padded."""
    p = np.pad(F, ((0, 1), (0, 1)), mode="edge")
    f00, f01, f10, f11 = p[:-1, :-1], p[:-1, 1:], p[1:, :-1], p[1:, 1:]
    return tuple(c.ravel() for c in (f00, f01 - f00, f10 - f00, f11 - f10 - f01 + f00))


def device_tables(xp: Any, t: TG43Tables, dtype: Any) -> DeviceTables:
    """The lookup coefficients of ``t`` as ``xp`` arrays of ``dtype``."""
    arrays = (*_cells_1d(t.gL.values), *_cells_2d(t.F.values), *_cells_1d(t.phi_an.values))
    return DeviceTables(*(xp.asarray(a, dtype=dtype) for a in arrays))


def _cell(xp: Any, x: Any, x0: float, inv_dx: float, n: int) -> tuple[Any, Any]:
    """Cell index (intp) and fraction of ``x`` on a uniform grid, clamped to the nodes."""
    u = xp.clip((x - x0) * inv_dx, 0.0, n - 1.0)
    lo = xp.floor(u)
    return lo.astype(xp.intp), u - lo


def _interp1(xp: Any, value: Any, slope: Any, tab: UniformTable, x: Any) -> Any:
    i, f = _cell(xp, x, tab.x0, 1.0 / tab.dx, tab.n)
    return xp.take(value, i) + f * xp.take(slope, i)


def radial_dose(xp: Any, t: TG43Tables, r_cm: Any, d: DeviceTables) -> Any:
    """g_L(r): linear, nearest below the table, log-linear beyond it."""
    g = _interp1(xp, d.gL_value, d.gL_slope, t.gL, r_cm)
    beyond = xp.maximum(r_cm - t.gL_r_max_cm, 0.0)
    return g * xp.exp(beyond * t.gL_log_slope_per_cm)


def anisotropy_2d(xp: Any, t: TG43Tables, r_cm: Any, theta_rad: Any, d: DeviceTables) -> Any:
    """F(r, theta), bilinear; theta in [0, pi/2] rad; nearest radius outside the table."""
    nr = t.F.n
    ir, fr = _cell(xp, r_cm, t.F.x0, 1.0 / t.F.dx, nr)
    it, ft = _cell(xp, theta_rad, 0.0, 180.0 / (math.pi * t.F_dtheta_deg), t.F.values.shape[0])
    k = it * nr + ir
    low = xp.take(d.F_c00, k) + fr * xp.take(d.F_c01, k)
    high = xp.take(d.F_c10, k) + fr * xp.take(d.F_c11, k)
    return low + ft * high


def dose_rate_per_u(
    xp: Any,
    t: TG43Tables,
    z_cm: Any,
    rho2_cm2: Any,
    formalism: Formalism = "2d",
    tables: DeviceTables | None = None,
) -> Any:
    """Dose rate per unit air-kerma strength, cGy h^-1 U^-1.

    Parameters
    ----------
    xp : array module (numpy or cupy).
    t : the model's tables.
    z_cm : distance along the seed axis from the seed centre, cm (any shape).
    rho2_cm2 : squared distance from the seed axis, cm^2 (same shape, >= 0).
    formalism : ``"2d"`` (line source, F(r, theta)) or ``"1d"`` (phi_an(r)).
    tables : the ``device_tables`` of ``t`` for ``xp`` (built here when not given).
    """
    d = tables if tables is not None else device_tables(xp, t, z_cm.dtype)
    length = t.active_length_cm
    if formalism == "2d":
        z2 = z_cm * z_cm
        in_capsule = (xp.abs(z_cm) < SEED_HALF_LENGTH_CM).astype(z_cm.dtype)
        rho2 = xp.maximum(rho2_cm2, xp.maximum(in_capsule * SEED_RADIUS_CM**2, RHO_FLOOR_CM**2))
        r2 = rho2 + z2
    else:
        r2 = rho2 = xp.maximum(rho2_cm2 + z_cm * z_cm, SEED_RADIUS_CM**2)  # every point transverse
    r = xp.sqrt(r2)
    rho = r if formalism == "1d" else xp.sqrt(rho2)
    l_rho = length * rho
    geometry = atan2_nonneg(xp, l_rho, r2 - length**2 / 4.0) / l_rho
    rate = (t.dose_rate_constant / t.G0) * geometry * radial_dose(xp, t, r, d)
    if formalism == "2d":
        theta = atan2_nonneg(xp, rho, xp.abs(z_cm))  # folded: F(180 - theta) = F(theta)
        return rate * anisotropy_2d(xp, t, r, theta, d)
    return rate * _interp1(xp, d.phi_value, d.phi_slope, t.phi_an, r)


def seed_frame(xp: Any, points_cm: Any, seeds_cm: Any, axes: Any) -> tuple[Any, Any]:
    """(z, rho^2) of every point in every seed's frame, each shape (n_points, n_seeds), cm.

    ``points_cm`` is (n_points, 3); ``seeds_cm`` and ``axes`` are (3, n_seeds) (x, y, z rows).
    """
    dx = points_cm[:, 0:1] - seeds_cm[0]
    dy = points_cm[:, 1:2] - seeds_cm[1]
    dz = points_cm[:, 2:3] - seeds_cm[2]
    z = dx * axes[0] + dy * axes[1] + dz * axes[2]
    # rho^2 from the perpendicular component, not r^2 - z^2: no cancellation near the axis
    ex = dx - z * axes[0]
    ey = dy - z * axes[1]
    ez = dz - z * axes[2]
    return z, ex * ex + ey * ey + ez * ez
