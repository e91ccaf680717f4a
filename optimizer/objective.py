"""The exact plan objective, on sampled points with equal volumes (lower is better).

    f(x) = W_COVERAGE * shortfall% + W_HARD * sum(excess% of each hard limit)
           + w150 * V150 + w200 * V200 + w_seed * seeds + w_needle * needles
           + w_organ * sum(organ% of each hard limit)

shortfall% = 100 * max(0, Rx - D90) / Rx; excess% = 100 * max(0, value - limit) / limit;
organ% = 100 * max(0, value - floor * limit) / limit (``SoftWeights.organ_floor``).
D90 and Dcc follow ``seedopt.metrics`` (hottest-first, the point where the cumulative volume
first reaches the asked volume); ``x`` may be a batch (k, m) of loadings (one row per chain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from seedopt.backend import array_module

from .base import HardLimit, PlanProblem

W_COVERAGE = 10.0
"""Objective units per percent of D90 below the prescription."""
W_HARD = 20.0
"""Objective units per percent above a hard limit."""


HALF_BLOCK_ENTRIES = 1 << 24
"""Entries of a float16 matrix widened to float32 at a time in ``dose`` (64 MB)."""


def dose(A: Any, x: Any) -> Any:
    """Dose at the rows of ``A`` (Gy) for loading(s) ``x``: (n,) or, for x (k, m), (k, n).

    Sums run in at least float32: a float16 matrix is widened a block of rows at a time,
    never copied whole."""
    xp = array_module(A)
    if A.dtype.itemsize >= 4:
        xf = xp.asarray(x, dtype=A.dtype)
        return (A @ xf.T).T if xf.ndim == 2 else A @ xf
    xf = xp.asarray(x, dtype=xp.float32)
    step = max(1, HALF_BLOCK_ENTRIES // max(1, A.shape[1]))
    parts = [A[i : i + step].astype(xp.float32) @ xf.T for i in range(0, A.shape[0], step)]
    out = xp.concatenate(parts, axis=0) if parts else xp.zeros((0,) + xf.shape[:-1], xp.float32)
    return out.T if xf.ndim == 2 else out


def points_at_percent(n: int, percent: float) -> int:
    """How many of ``n`` equal-volume points first reach ``percent`` of the volume: D_x% is
    the dose of that many-th hottest point."""
    return max(1, math.ceil(n * percent / 100.0 - 1e-9))


def dose_at_percent(d: Any, percent: float) -> Any:
    """D_x% of equal-volume points along the last axis (Gy)."""
    return kth_hottest(d, points_at_percent(d.shape[-1], percent))


def kth_hottest(d: Any, k: int) -> Any:
    """The k-th highest dose along the last axis (Gy), k >= 1: the (n - k)-th lowest, found
    without negating a copy of ``d`` (in float64 that copy costs more than the selection)."""
    xp = array_module(d)
    n = d.shape[-1]
    return xp.partition(d, n - k, axis=-1)[..., n - k]


def points_in_volume(volume_cc: float, voxel_cc: float, n: int) -> int:
    """How many of ``n`` points of ``voxel_cc`` each first reach ``volume_cc`` (at least 1, at
    most ``n``): D_v cc is the dose of that many-th hottest point."""
    return min(n, max(1, math.ceil(volume_cc / voxel_cc - 1e-9)))


def hottest_points(limit: HardLimit, n: int, voxel_cc: float) -> int:
    """For a Dmax or D{v}cc limit on ``n`` points: the k whose k-th hottest dose it bounds."""
    if limit.metric == "Dmax":
        return 1
    return points_in_volume(float(limit.metric[1:-2]), voxel_cc, n)  # "D0.1cc" -> 0.1


def dose_at_volume(d: Any, volume_cc: float, voxel_cc: float) -> Any:
    """D_v cc of points of ``voxel_cc`` each (Gy); the coldest point if the structure is smaller."""
    return kth_hottest(d, points_in_volume(volume_cc, voxel_cc, d.shape[-1]))


def limit_value(d: Any, limit: HardLimit, voxel_cc: float) -> Any:
    """The metric a hard limit constrains, from the structure's point doses (Gy)."""
    if limit.metric == "Dmax":
        return d.max(axis=-1)
    if limit.metric == "Dmean":
        return d.mean(axis=-1)
    return kth_hottest(d, hottest_points(limit, d.shape[-1], voxel_cc))


@dataclass(frozen=True)
class Terms:
    """The objective's parts for one loading (or arrays over a batch)."""

    d90_gy: Any
    shortfall_pct: Any
    hard_excess_pct: Any  # summed over limits
    organ_pct: Any  # summed over limits: % of each limit above its organ floor
    v150_pct: Any
    v200_pct: Any
    n_seeds: Any
    n_needles: Any
    total: Any


def where_needed(need: Any, d: Any, value: Any) -> Any:
    """``value(rows)`` (a function of row indices of the batch ``d`` (k, n)) on the rows where
    ``need`` ((k,) bool) holds, 0 elsewhere: a quantile computed only where it can matter."""
    xp = array_module(d)
    out = xp.zeros(d.shape[:-1], dtype=xp.float64)
    rows = xp.flatnonzero(need)
    if rows.size:
        out[rows] = value(rows)
    return out


def shortfall_pct(d: Any, rx: Any, k: int) -> Any:
    """100 * max(0, Rx - D) / Rx for D the k-th hottest dose along the last axis (Gy), with
    ``rx`` a scalar or one per row. The quantile is found only for the rows where fewer than
    k points reach Rx (D >= Rx exactly when at least k do)."""
    xp = array_module(d)
    if d.ndim == 1:
        return 100.0 * xp.maximum(0.0, rx - kth_hottest(d, k)) / rx
    rx_rows = xp.broadcast_to(rx, d.shape[:-1])
    short = (d >= rx_rows[..., None]).sum(axis=-1) < k

    def pct(r: Any) -> Any:
        # Only the points below Rx on some row in need can be the k-th hottest there; the n - s
        # others reach Rx on every such row, so it is the (k - (n - s))-th hottest of the s.
        sub, rx_r = d[r], rx_rows[r]
        cols = xp.flatnonzero((sub < rx_r[:, None]).any(axis=0))
        d_k = kth_hottest(sub[:, cols], k - (d.shape[-1] - cols.size))
        return 100.0 * xp.maximum(0.0, rx_r - d_k) / rx_r

    return where_needed(short, d, pct)


def priced_value(d: Any, limit: HardLimit, voxel_cc: float, priced_gy: float) -> Any:
    """``limit_value`` where it is above ``priced_gy`` (Gy), and some value at most
    ``priced_gy`` elsewhere (there the objective does not depend on it): a D{v}cc quantile is
    found only for the rows of a batch where enough points exceed that dose."""
    if limit.metric in ("Dmax", "Dmean") or d.ndim == 1:
        return limit_value(d, limit, voxel_cc)
    k = hottest_points(limit, d.shape[-1], voxel_cc)
    above = d > priced_gy
    xp = array_module(d)

    def value(r: Any) -> Any:
        # At least k points exceed priced_gy on each row in need, so the k-th hottest is among
        # the points above it on some such row.
        return kth_hottest(d[r][:, xp.flatnonzero(above[r].any(axis=0))], k)

    return where_needed(above.sum(axis=-1) >= k, d, value)


def terms_from_doses(
    problem: PlanProblem,
    d_target: Any,
    d_oar: dict[str, Any],
    n_seeds: Any,
    n_needles: Any,
    *,
    with_d90: bool = True,
) -> Terms:
    """The objective's parts from doses already known (Gy), one row per loading: the one
    formula that ``terms``, the annealer and the local search use.

    Parameters
    ----------
    d_target : (..., n_target) doses at the target rows, Gy.
    d_oar : structure -> (..., n_k) doses at its rows, Gy (every structure of ``hard``).
    n_seeds, n_needles : (...) loaded seeds and used needles.
    with_d90 : False leaves ``Terms.d90_gy`` None and finds D90 and the D{v}cc quantiles
        of a batch only where they change the objective (``shortfall_pct``,
        ``priced_value``): the same total, shortfall, V150 and V200, faster (the excess and
        organ parts exact where they are not zero).
    """
    xp = array_module(d_target)
    rx = xp.asarray(problem.prescription_gy)  # a scalar, or one per row (a sweep)
    d90 = dose_at_percent(d_target, 90.0) if with_d90 else None
    if d90 is not None:
        shortfall = 100.0 * xp.maximum(0.0, rx - d90) / rx
    else:
        shortfall = shortfall_pct(d_target, rx, points_at_percent(d_target.shape[-1], 90.0))
    v150 = 100.0 * (d_target >= 1.5 * rx[..., None]).mean(axis=-1)
    v200 = 100.0 * (d_target >= 2.0 * rx[..., None]).mean(axis=-1)
    s = problem.soft
    excess = xp.zeros_like(shortfall)
    organ = xp.zeros_like(shortfall)
    for lim in problem.hard:
        d = problem.limit_doses(lim, d_oar[lim.structure])
        if with_d90:
            value = limit_value(d, lim, problem.voxel_cc)
        else:
            value = priced_value(d, lim, problem.voxel_cc, s.lowest_priced_gy(lim.max_gy))
        excess = excess + 100.0 * xp.maximum(0.0, value - lim.max_gy) / lim.max_gy
        floor = s.organ_floor_gy(lim.max_gy)
        organ = organ + 100.0 * xp.maximum(0.0, value - floor) / lim.max_gy
    total = (
        W_COVERAGE * shortfall
        + W_HARD * excess
        + s.v150_per_pct * v150
        + s.v200_per_pct * v200
        + s.per_seed * n_seeds
        + s.per_needle * n_needles
        + s.organ_per_pct * organ
    )
    return Terms(d90, shortfall, excess, organ, v150, v200, n_seeds, n_needles, total)


def terms(problem: PlanProblem, x: Any) -> Terms:
    """Every part of the objective for loading(s) ``x`` ((m,) or (k, m), 0/1)."""
    xp = array_module(problem.A_target)
    x = xp.asarray(x)
    d_oar = {lim.structure: dose(problem.A_oar[lim.structure], x) for lim in problem.hard}
    loaded = x.astype(bool)
    needle_of = xp.asarray(problem.seed_needle)
    used = xp.zeros(x.shape[:-1] + (problem.n_needles,), dtype=bool)
    if x.ndim == 1:
        used[needle_of[loaded]] = True
    else:
        rows, cols = xp.nonzero(loaded)
        used[rows, needle_of[cols]] = True
    return terms_from_doses(
        problem, dose(problem.A_target, x), d_oar, loaded.sum(axis=-1), used.sum(axis=-1)
    )


def objective(problem: PlanProblem, x: Any) -> Any:
    """The scalar objective (or one per row of a batch)."""
    return terms(problem, x).total


def decisive_rows(problem: PlanProblem) -> PlanProblem:
    """The same problem with the organ rows that can never decide a hard limit removed.

    A row whose dose with every candidate loaded stays at or below the lowest priced dose on
    its structure (``SoftWeights.lowest_priced_gy``: the organ floor, or the limit when organ
    dose is not priced) never costs anything; the hottest rows are kept so that at least as
    many rows remain as the largest D{v}cc counts. Then every limit's excess and organ term,
    and so ``objective``, is unchanged for every loading: if the true value is above that
    dose, all the rows above it are kept; if not, the kept rows' value is no higher.
    Structures with a Dmean limit keep every row.
    """
    xp = array_module(problem.A_target)
    kept: dict[str, Any] = {}
    for name in {lim.structure for lim in problem.hard}:
        limits = [lim for lim in problem.hard if lim.structure == name]
        if any(lim.metric == "Dmean" for lim in limits):
            continue
        A = problem.A_oar[name]
        need = max(hottest_points(lim, A.shape[0], problem.voxel_cc) for lim in limits)
        full = A.sum(axis=1, dtype=xp.float64)
        # the limited quantity rises with the implant dose in every row, so its largest
        # possible value at a row is that of every candidate loaded
        priced = xp.zeros(full.shape, dtype=bool)
        for lim in limits:
            priced |= problem.limit_doses(lim, full) > problem.soft.lowest_priced_gy(lim.max_gy)
        rows = xp.flatnonzero(priced)
        if rows.size < need:
            rows = xp.sort(xp.argsort(-full)[:need])
        kept[name] = rows
    return problem.with_organ_rows(kept)
