"""Source commissioning: dose-rate tables on the consensus grid and checks against the data.

What a physicist checks before trusting a planning system's source model: the dose rate per
unit air-kerma strength at the consensus (r, theta) nodes, and that the dose engine gives
back Lambda, g_L(r) and F(r, theta) at the tabulated points.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backend import Backend
from .dose import dose_at_points
from .dose.tg43 import R0_CM, SEED_HALF_LENGTH_CM, SEED_RADIUS_CM, geometry_factor
from .sources import Source, SourceModel

CSV_COLUMNS = ("r_cm", "theta_deg", "dose_rate_cGy_per_h_per_U")


@dataclass(frozen=True)
class DoseRateTable:
    """Dose rate per unit S_K, cGy h^-1 U^-1, on an (r, theta) grid; ``values[i_r, i_theta]``."""

    model_id: str
    formalism: str
    r_cm: np.ndarray
    theta_deg: np.ndarray
    values: np.ndarray

    def inside_capsule(self) -> np.ndarray:
        """Grid points inside the seed capsule, where TG-43 is not defined (shape of values)."""
        r = self.r_cm[:, None]
        th = np.radians(self.theta_deg)[None, :]
        return (np.abs(r * np.cos(th)) < SEED_HALF_LENGTH_CM) & (r * np.sin(th) < SEED_RADIUS_CM)


def consensus_grid(model: SourceModel) -> tuple[np.ndarray, np.ndarray]:
    """Radii (union of the g_L, F and phi_an nodes, cm) and the F angles (deg)."""
    r = np.unique(np.concatenate([model.gL_r_cm, model.F_r_cm, model.phi_an_r_cm]))
    return r, model.F_theta_deg.copy()


def points_on_grid(r_cm: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
    """Points (mm) at every (r, theta), for a seed at the origin along +z; shape (n_r*n_t, 3)."""
    rr, tt = np.meshgrid(r_cm * 10.0, np.radians(theta_deg), indexing="ij")
    return np.stack([rr * np.sin(tt), np.zeros_like(rr), rr * np.cos(tt)], axis=-1).reshape(-1, 3)


def engine_rate(
    model: SourceModel,
    points_mm: np.ndarray,
    backend: Backend | None = None,
    formalism: str = "2d",
    half_life_d: float = 59.4,
    rate: bool = True,
) -> np.ndarray:
    """The engine's dose rate (cGy h^-1 U^-1; or total dose in Gy with ``rate=False``) at
    ``points_mm`` from one 1 U seed at the origin along +z."""
    return dose_at_points(
        points_mm,
        np.zeros((1, 3)),
        [0.0, 0.0, 1.0],
        Source(model, 1.0, half_life_d),
        formalism=formalism,
        backend=backend,
        rate=rate,
    )


def _geometry_ratio(model: SourceModel, r_cm: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
    """G_L(r, theta) / G_L(r0, theta0), float64."""
    length = model.active_length_cm
    g = np.vectorize(lambda a, b: geometry_factor(length, a, b))(r_cm, theta_deg)
    return g / geometry_factor(length, R0_CM, 90.0)


def engine_radial_dose(
    model: SourceModel, r_cm: np.ndarray, backend: Backend | None = None
) -> np.ndarray:
    """g_L(r) as the engine gives it: transverse-axis rate / (Lambda G_L(r, 90)/G_L(r0, 90))."""
    r = np.asarray(r_cm, dtype=float)
    pts = np.stack([r * 10.0, np.zeros_like(r), np.zeros_like(r)], axis=1)
    ratio = _geometry_ratio(model, r, np.full_like(r, 90.0))
    return engine_rate(model, pts, backend) / (model.dose_rate_constant * ratio)


def engine_anisotropy(
    model: SourceModel, r_cm: np.ndarray, theta_deg: np.ndarray, backend: Backend | None = None
) -> np.ndarray:
    """F(r, theta) as the engine gives it (r and theta broadcast together): rate divided by
    Lambda, the geometry ratio and the consensus g_L(r)."""
    r, theta = np.broadcast_arrays(np.asarray(r_cm, float), np.asarray(theta_deg, float))
    th = np.radians(theta)
    pts = np.stack([r * 10 * np.sin(th), np.zeros_like(r), r * 10 * np.cos(th)], axis=-1)
    rate = engine_rate(model, pts.reshape(-1, 3), backend).reshape(r.shape)
    g = np.interp(r, model.gL_r_cm, model.gL)
    return rate / (model.dose_rate_constant * _geometry_ratio(model, r, theta) * g)


def dose_rate_table(
    model: SourceModel, formalism: str = "2d", backend: Backend | None = None
) -> DoseRateTable:
    """The dose engine's dose rate per U on the consensus grid, computed through the kernel."""
    r, theta = consensus_grid(model)
    rate = engine_rate(model, points_on_grid(r, theta), backend, formalism)
    return DoseRateTable(model.model_id, formalism, r, theta, rate.reshape(r.size, theta.size))


def write_csv(table: DoseRateTable, path: Path) -> None:
    """CSV with exactly the columns ``r_cm,theta_deg,dose_rate_cGy_per_h_per_U``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for i, r in enumerate(table.r_cm):
            for j, th in enumerate(table.theta_deg):
                w.writerow([f"{r:g}", f"{th:g}", f"{table.values[i, j]:.6g}"])


def format_table(table: DoseRateTable, model: SourceModel) -> str:
    """A readable table: one row per r, one column per theta; '*' marks points in the capsule."""
    head = (
        f"{model.model_id} ({model.description}); {table.formalism.upper()} formalism\n"
        f"Lambda = {model.dose_rate_constant} cGy/h/U, L = {model.active_length_cm} cm, "
        f"{model.report}\n"
        "dose rate per unit air-kerma strength, cGy h^-1 U^-1; rows r (cm), "
        "columns theta (deg from the seed's long axis)\n"
    )
    cols = "".join(f"{th:>10g}" for th in table.theta_deg)
    lines = [head, f"{'r_cm':>6} {cols}"]
    mask = table.inside_capsule()
    for i, r in enumerate(table.r_cm):
        cells = "".join(
            f"{table.values[i, j]:>9.4g}{'*' if mask[i, j] else ' '}"
            for j in range(table.theta_deg.size)
        )
        lines.append(f"{r:>6g} {cells}")
    if mask.any():
        lines.append(
            "* inside the 0.8 x 4.5 mm capsule: evaluated on its surface "
            "(TG-43 is not defined there)"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class CommissioningCheck:
    """Largest relative deviations of the engine from the consensus data for one model."""

    model_id: str
    rate_at_reference: float  # cGy/h/U at (1 cm, 90 deg)
    max_gL_error: float
    max_F_error: float
    total_dose_1u_ref_cgy: float  # permanent implant, 1 U, (1 cm, 90 deg)


def check_model(
    model: SourceModel, backend: Backend | None = None, half_life_d: float = 59.4
) -> CommissioningCheck:
    """Evaluate the engine at the consensus nodes and compare with the tables."""
    gl_err = float(np.max(np.abs(engine_radial_dose(model, model.gL_r_cm, backend) / model.gL - 1)))
    rr, tt = np.meshgrid(model.F_r_cm, model.F_theta_deg, indexing="ij")
    F_engine = engine_anisotropy(model, rr, tt, backend)
    outside = ~DoseRateTable(
        model.model_id, "2d", model.F_r_cm, model.F_theta_deg, F_engine
    ).inside_capsule()
    F_err = float(np.max(np.abs(F_engine / model.F.T - 1.0)[outside]))
    ref = np.array([[10.0, 0.0, 0.0]])
    rate = engine_rate(model, ref, backend, half_life_d=half_life_d)
    total = engine_rate(model, ref, backend, half_life_d=half_life_d, rate=False)
    return CommissioningCheck(model.model_id, float(rate[0]), gl_err, F_err, float(total[0]) * 100)
