"""A mixed-integer model whose objective IS ``objective`` (on its target rows), so that its
proven optimum is a proven optimum of the plan problem, not of a surrogate.

Over the target rows ``A_t`` (n rows; all of them when n <= ``max_points``), prescription Rx,
with k90 = ceil(0.9 n) (``dose_at_percent``'s k-th hottest point):

variables
    x_j, y_n in {0, 1} as in ``milp``; s in [0, 100] the D90 shortfall in % of Rx;
    z_i in {0, 1} point i may be below the D90 level; w150_i, w200_i in {0, 1} point i counted
    in V150 / V200; per hard limit e >= 0 its excess in % of the limit L, o >= 0 its organ
    term (% of L above the floor F = organ_floor L), and for a D{v}cc limit v_i in {0, 1}
    "point i may exceed L (1 + e / 100) and F + L o / 100" (one set of hot points serves
    both levels: leaving out the q - 1 hottest minimises both at once).
D90
    A_t,i x + (Rx / 100) s + Rx z_i >= Rx, sum z <= n - k90: at least k90 points reach
    Rx (1 - s / 100), i.e. s >= the shortfall of ``objective`` (equal at the optimum).
V150 / V200 (big-M, M_i = the dose of point i with every candidate loaded)
    A_t,i x - M_i w_i <= 1.5 Rx (2 Rx): a point above the level must be counted. A point
    exactly at the level may go uncounted, so the model is <= ``objective``: its optimum
    is a lower bound of the exact optimum (equal but for ties at the levels).
hard limits, rows with M_k,i <= F dropped (they cannot cost anything); for each level
(L, e) and (F, o):
    Dmax: A_k,i x - (L / 100) e <= L; Dmean: mean(A_k) x - (L / 100) e <= L;
    D{v}cc, q = ceil(v / voxel_cc): A_k,i x - (L / 100) e - (M_k,i - L)+ v_i <= L,
    sum v <= q - 1 (the q-th hottest point is at most L (1 + e / 100)).
objective
    W_COVERAGE s + W_HARD sum e + organ_per_pct sum o + (100 / n)(w150 sum w150 + w200 sum
    w200) + per_seed sum x + per_needle sum y       (= ``objective`` term by term).

Binaries grow with the rows, and big-M relaxations are weak: HiGHS proves optimality on small
problems (tens of candidates, hundreds of points) and gives a bound with a gap on larger ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from .base import HardLimit, PlanProblem
from .highs import HighsModel, place_block, sampled_target, stack_groups
from .objective import W_COVERAGE, W_HARD, hottest_points
from .registry import to_host


class _Layout:
    """Consecutive blocks of model variables, each with its cost, bounds and integrality."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, np.ndarray, float, float, bool]] = []
        self.size = 0

    def add(self, n: int, cost: Any, lo: float, hi: float, integer: bool) -> int:
        """Append ``n`` variables; returns the offset of the first."""
        offset = self.size
        self.blocks.append((n, np.broadcast_to(np.asarray(cost, float), (n,)), lo, hi, integer))
        self.size += n
        return offset

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        c = np.concatenate([b[1] for b in self.blocks])
        lo = np.concatenate([np.full(b[0], b[2]) for b in self.blocks])
        hi = np.concatenate([np.full(b[0], b[3]) for b in self.blocks])
        integrality = np.concatenate([np.full(b[0], int(b[4])) for b in self.blocks])
        return c, lo, hi, integrality


def _diag(values: np.ndarray) -> sparse.csr_array:
    return sparse.csr_array(sparse.diags_array(values))


@dataclass(frozen=True)
class ExactModel(HighsModel):
    """The model of the module docstring (variables x, y first)."""

    require_d90: bool

    @property
    def hard_constraints(self) -> list[str]:
        out = super().hard_constraints
        if self.require_d90:
            out.append(f"D90 >= {self.problem.prescription_gy:g} Gy on the target points")
        return out


def build_exact_model(
    problem: PlanProblem, *, max_points: int = 2000, require_d90: bool = False
) -> ExactModel:
    """The exact model of ``problem`` on at most ``max_points`` target rows (evenly spaced);
    ``require_d90`` fixes the shortfall s at 0 (D90 >= Rx as a hard constraint)."""
    p = problem
    s = p.soft
    rx = float(p.prescription_gy)
    rows, A_t = sampled_target(p, max_points)
    n, m = A_t.shape
    needle = np.asarray(to_host(p.seed_needle), dtype=np.int64)
    k90 = max(1, math.ceil(0.9 * n - 1e-9))
    full = A_t.sum(axis=1)  # dose with every candidate loaded, Gy

    lay = _Layout()
    ox = lay.add(m, s.per_seed, 0, 1, True)
    oy = lay.add(p.n_needles, s.per_needle, 0, 1, True)
    osf = lay.add(1, W_COVERAGE, 0, 0 if require_d90 else 100, False)
    oz = lay.add(n, 0.0, 0, 1, True)
    hot = {}
    for level, weight in ((1.5, s.v150_per_pct), (2.0, s.v200_per_pct)):
        reach = np.flatnonzero(full > level * rx)  # the others never reach the level
        hot[level] = (reach, lay.add(reach.size, weight * 100.0 / n, 0, 1, True))
    limits: list[tuple[HardLimit, np.ndarray, list[tuple[float, int]], int | None, int]] = []
    for lim in p.hard:
        L = float(lim.max_gy)
        levels = [(L, lay.add(1, W_HARD, 0, np.inf, False))]  # (level Gy, its % variable)
        if s.organ_per_pct > 0:
            levels.append((s.organ_floor_gy(L), lay.add(1, s.organ_per_pct, 0, np.inf, False)))
        A_k = to_host(p.A_oar[lim.structure]).astype(np.float64)
        if lim.metric == "Dmean":
            limits.append((lim, A_k.mean(axis=0)[None], levels, None, 0))
            continue
        A_k = A_k[A_k.sum(axis=1) > min(level for level, _ in levels)]
        if lim.metric == "Dmax":
            limits.append((lim, A_k, levels, None, 0))
            continue
        q = hottest_points(lim, p.A_oar[lim.structure].shape[0], p.voxel_cc)
        ov = lay.add(A_k.shape[0], 0.0, 0, 1, True)
        limits.append((lim, A_k, levels, ov, q))
    nv = lay.size

    link = sparse.csr_array((-np.ones(m), (np.arange(m), needle)), shape=(m, p.n_needles))
    groups: list[tuple[sparse.csr_array, float, float]] = [
        (place_block(sparse.eye_array(m), ox, nv) + place_block(link, oy, nv), -np.inf, 0.0),
        (
            place_block(A_t, ox, nv)
            + place_block(np.full((n, 1), rx / 100.0), osf, nv)
            + place_block(rx * sparse.eye_array(n), oz, nv),
            rx,
            np.inf,
        ),
        (place_block(np.ones((1, n)), oz, nv), -np.inf, float(n - k90)),
    ]
    for level, (reach, ow) in hot.items():
        if reach.size:
            big_m = full[reach] - level * rx
            groups.append(
                (
                    place_block(A_t[reach], ox, nv) - place_block(_diag(big_m), ow, nv),
                    -np.inf,
                    level * rx,
                )
            )
            # valid cuts that tighten the relaxation: one seed alone above the level counts
            i, j = np.nonzero(A_t[reach] >= level * rx)
            cut = sparse.csr_array(
                (
                    np.r_[np.ones(i.size), -np.ones(i.size)],
                    (np.r_[np.arange(i.size), np.arange(i.size)], np.r_[ox + j, ow + i]),
                ),
                shape=(i.size, nv),
            )
            groups.append((cut, -np.inf, 0.0))
    for lim, A_k, levels, v_at, q in limits:
        if not A_k.shape[0]:
            continue
        L = float(lim.max_gy)
        full_k = A_k.sum(axis=1)  # the rows' dose with every candidate loaded, Gy
        if v_at is not None:
            groups.append(
                (place_block(np.ones((1, A_k.shape[0])), v_at, nv), -np.inf, float(q - 1))
            )
        for level, o_pct in levels:
            block = place_block(A_k, ox, nv) - place_block(
                np.full((A_k.shape[0], 1), L / 100.0), o_pct, nv
            )
            if v_at is not None:  # a point allowed above the level is one of the q - 1
                big_m = np.maximum(full_k - level, 0.0)
                block = block - place_block(_diag(big_m), v_at, nv)
            groups.append((block, -np.inf, level))
    if p.max_seeds is not None:
        groups.append((place_block(np.ones((1, m)), ox, nv), -np.inf, float(p.max_seeds)))
    if p.max_needles is not None:
        groups.append(
            (place_block(np.ones((1, p.n_needles)), oy, nv), -np.inf, float(p.max_needles))
        )

    c, lo, hi, integrality = lay.arrays()
    A, lb, ub = stack_groups(groups)
    return ExactModel(p, rows, c, A, lb, ub, lo, hi, integrality, require_d90)
