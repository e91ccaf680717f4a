"""Small synthetic plan problems with a point-source dose model, for the specification tests
and the optimality benchmark (problems small enough for brute force or a proven MILP optimum).
"""

from __future__ import annotations

import numpy as np

from .base import CandidateGeometry, HardLimit, PlanProblem

RX_GY = 145.0
"""Prescription of the synthetic problems, Gy."""

RECTUM_LIMITS = (
    HardLimit("rectum", "Dmax", 80.0),  # binding: the unconstrained optimum gives 88 Gy
    HardLimit("rectum", "D0.1cc", 80.0),
    HardLimit("rectum", "Dmean", 65.0),
)
"""Hard limits on the synthetic organ at risk."""


def synthetic_problem(
    seed: int = 0,
    hard: tuple[HardLimit, ...] = (),
    n_target: int = 60,
    n_oar: int = 24,
    needles: int = 3,
    per_needle: int = 4,
    max_seeds: int | None = None,
    max_needles: int | None = None,
) -> PlanProblem:
    """Target points in an ellipsoid (semi-axes 1.4, 1.4, 1.9 cm), an organ slab below it,
    ``needles`` parallel needles 0.8 cm off the axis with ``per_needle`` candidates each
    (numbered along each needle) and dose = 60 Gy cm^2 / (r^2 + 0.05 cm^2)."""
    g = np.random.default_rng(seed)
    angle = np.linspace(0.0, 2.0 * np.pi, needles, endpoint=False)
    xy = 0.8 * np.c_[np.cos(angle), np.sin(angle)]
    seeds = np.array([[x, y, z] for x, y in xy for z in np.linspace(-1.5, 1.5, per_needle)])
    u = g.normal(size=(n_target, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    target = u * g.random((n_target, 1)) ** (1 / 3) * np.array([1.4, 1.4, 1.9])
    oar = np.c_[g.uniform(-1, 1, n_oar), g.uniform(-2.3, -1.9, n_oar), g.uniform(-2, 2, n_oar)]

    def influence(points: np.ndarray) -> np.ndarray:
        r2 = ((points[:, None, :] - seeds[None]) ** 2).sum(axis=-1)
        return (60.0 / (r2 + 0.05)).astype(np.float32)

    depth = 1.4 - np.linalg.norm(seeds / np.array([1.4, 1.4, 1.9]), axis=1) * 1.4  # approx., cm
    geometry = CandidateGeometry(
        needle_holes=[None] * needles,
        needle_points_mm=10.0 * np.c_[xy, np.zeros(needles)],
        needle_directions=np.tile([0.0, 0.0, 1.0], (needles, 1)),
        seed_depth_mm=10.0 * depth,
        seed_order=np.tile(np.arange(per_needle), needles),
        seed_points_mm=10.0 * seeds,
    )
    return PlanProblem(
        A_target=influence(target),
        A_oar={"rectum": influence(oar)},
        voxel_cc=0.05,
        prescription_gy=RX_GY,
        hard=hard,
        seed_needle=np.repeat(np.arange(needles), per_needle),
        n_needles=needles,
        geometry=geometry,
        max_seeds=max_seeds,
        max_needles=max_needles,
    )
