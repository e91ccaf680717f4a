"""A proven lower bound on the plan objective ``objective`` over every loading.

Every term of ``f`` is >= 0, so ``f(x)`` is at least the sum of any valid lower bounds of its
terms. The bound is the optimum of a linear program whose feasible set holds every 0/1
loading within the caps, each term bounded linearly from below. Target rows (n of them,
k = ceil(0.9 n) the D90 row) are aggregated into G groups (``group_rows``):

seeds, needles
    x_j in [0, 1], y_n in [0, 1], x_j <= y_needle(j); cost per_seed sum x + per_needle sum y.
coverage (W_COVERAGE per % shortfall s in [0, 100]), with r = Rx (1 - s / 100) <= D90
    sum_{i in g} sum_j min(A_ij, Rx) x_j + c_g >= r |g|, 0 <= c_g <= r |g|,
    sum_g c_g <= r (n - k).
    Valid: D90 >= r leaves at most n - k rows below r; give each of those rows r (doses are
    >= 0), note that a row with a loaded seed of A_ij >= Rx is covered, and sum over the
    group. For a fixed r this is c_g = r z_g with z_g the group's cold rows, so the one LP
    minimises over every shortfall level at once (no levels solved one by one, nothing lost
    to a discretisation of s).
V150, V200 (per % of target rows at or above T = 1.5 Rx, 2 Rx)
    u_i in [0, 1], u_i >= x_j for every seed j that alone gives row i at least T.
hard limits (W_HARD per % excess over L, organ_per_pct per % of L above the floor F)
    e >= 100 (b x - L) / L for each row b of a set of linear lower bounds of the metric
    (the same with F for the organ term): Dmax (and a D{v}cc of one point): every organ row;
    Dmean: the mean row; D{v}cc of q > 1 points: for a patch P of q organ rows, the q-th
    hottest dose >= min_{i in P} A_i x >= sum_j x_j min_{i in P} A_ij, one row per patch
    (the q hottest rows of each of the PATCHES candidates that give the organ most). Patches
    bound a small volume (D0.1cc) fairly and a large one (D2cc) poorly.
caps
    sum x <= max_seeds, sum y <= max_needles when set (the bound holds over loadings that
    keep them).

The seed and needle bounds are the same coverage model at s = 0 without the other terms.
The number reported is not HiGHS's objective but the Lagrangian c'v + lambda'(A v - b)
minimised over the variables' box, with lambda >= 0 HiGHS's duals: a lower bound for any
lambda, so solver tolerances cannot make it too high. Doses are taken 1 + DOSE_SLACK higher
at the target (and lower at organs) than their float64 value, so that a plan whose float32
dose (``objective.dose``) reaches a level is inside the model.

How tight (measured on the 22 cohort cases, December 2026): the bound is 20-40 % of the
clinical rule's objective and the seed bound about 55 % of the rule's seeds; the LP's
fractional loadings spread dose evenly, which no 0/1 loading can. 500 groups lost 0.5-1.5 %
of the bound against 2000 groups or one row per group (two cases) at a fraction of the
time. The MILP of the same model (x, y binary, c integer) raised the bound by at most 0.15
objective units in 30-60 s (five cases), so it is not run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from seedopt.errors import SeedoptError

from .base import PlanProblem
from .highs import place_block
from .objective import W_COVERAGE, W_HARD, hottest_points
from .registry import to_host

DOSE_SLACK = 1e-5
"""Relative error allowed between a plan's float32 dose (``objective.dose``) and the model's
float64 dose."""
EMBED_COLUMNS = 256
"""Candidate seeds whose log dose profile places the target rows for ``group_rows``."""
EMBED_DIMS = 4
"""Principal components of that profile the rows are split along."""
PATCHES = 64
"""Patches (lower-bound rows) per D{v}cc limit."""


@dataclass(frozen=True)
class PlanBound:
    """Lower bounds on a problem's plans (``None``: no bound proven in the time given).

    Attributes
    ----------
    objective_lb : valid lower bound of ``objective`` over every loading within the caps.
    seed_needle_lb : lower bound of per_seed * seeds + per_needle * needles over the
        loadings with D90 >= Rx (``inf``: no loading reaches D90 >= Rx).
    min_seeds : at least this many seeds are needed for D90 >= Rx (``None`` also when no
        loading reaches it: see ``seed_needle_lb``).
    message : what the bound covers and leaves out, one line.
    runtime_s : wall time, s.
    """

    objective_lb: float | None
    seed_needle_lb: float | None
    min_seeds: int | None
    message: str
    runtime_s: float

    def gap(self, f: float) -> float | None:
        """Gap of a plan with objective ``f`` to the bound, % of ``f`` (None: no bound, or
        f <= 0)."""
        if self.objective_lb is None or f <= 0:
            return None
        return 100.0 * (f - self.objective_lb) / f


def group_rows(A: np.ndarray, max_groups: int) -> list[np.ndarray]:
    """At most ``max_groups`` groups of the rows of ``A`` ((n, m) Gy per seed) with similar
    dose-influence profiles (so, close together in space), of equal sizes within one.

    One row per group when n <= max_groups; else a k-d tree (median splits along the widest
    axis) on the first ``EMBED_DIMS`` principal components of the rows' log dose from up to
    ``EMBED_COLUMNS`` evenly chosen candidates."""
    n, m = A.shape
    if n <= max_groups:
        return [np.array([i]) for i in range(n)]
    cols = np.unique(np.linspace(0, m - 1, min(m, EMBED_COLUMNS)).round().astype(np.int64))
    profile = A[:, cols].astype(np.float64)
    profile = np.log(profile + 1e-6 * max(float(profile.max()), 1e-30))
    profile -= profile.mean(axis=0)
    _, vectors = np.linalg.eigh(profile.T @ profile)
    embed = profile @ vectors[:, ::-1][:, : min(EMBED_DIMS, cols.size)]
    out: list[np.ndarray] = []
    stack = [(np.arange(n), max_groups)]
    while stack:
        rows, groups = stack.pop()
        if groups == 1:
            out.append(rows)
            continue
        points = embed[rows]
        axis = int(np.argmax(points.max(axis=0) - points.min(axis=0)))
        rows = rows[np.argsort(points[:, axis], kind="stable")]
        left = groups // 2
        cut = round(rows.size * left / groups)
        stack += [(rows[:cut], left), (rows[cut:], groups - left)]
    return out


def patch_rows(A: np.ndarray, q: int, patches: int) -> np.ndarray:
    """Rows b with b x <= the q-th hottest dose of ``A x`` for every loading x >= 0:
    b_j = min over a patch of q rows of A_ij, the patch being the q hottest rows of one of
    the ``patches`` candidates whose own q-th hottest dose is highest. (A: (n, m) Gy/seed.)"""
    own = -np.partition(-A, q - 1, axis=0)[q - 1]
    out = []
    for j in np.argsort(-own, kind="stable")[:patches]:
        patch = np.argpartition(-A[:, j], q - 1)[:q]
        out.append(A[patch].min(axis=0))
    return np.unique(np.array(out), axis=0)


@dataclass(frozen=True)
class _Penalty:
    """A priced term: its variable e >= rows x - threshold for every row (all in % of the
    limit), ``cost`` per unit of e."""

    rows: np.ndarray  # (k, m)
    threshold: float
    cost: float

    @property
    def most(self) -> float:
        """The largest value the term can need (every seed loaded)."""
        return max(0.0, float(self.rows.sum(axis=1).max()) - self.threshold)


def _limit_penalties(problem: PlanProblem) -> tuple[list[_Penalty], list[str]]:
    """The hard-limit terms as ``_Penalty`` (rows that cannot pass their threshold dropped)
    and, in words, the D{v}cc limits bounded only through patches."""
    p = problem
    out: list[_Penalty] = []
    patched = []
    for lim in p.hard:
        A = to_host(p.A_oar[lim.structure]).astype(np.float64) * (1 - DOSE_SLACK)
        q = 1 if lim.metric in ("Dmax", "Dmean") else hottest_points(lim, A.shape[0], p.voxel_cc)
        if lim.metric == "Dmean":
            rows = A.mean(axis=0)[None]
        elif q == 1:
            rows = A
        else:
            rows = patch_rows(A, q, PATCHES)
            patched.append(f"{lim.metric}({lim.structure})")
        L = float(lim.max_gy)
        for threshold, cost in ((L, W_HARD), (p.soft.organ_floor_gy(L), p.soft.organ_per_pct)):
            hot = rows[rows.sum(axis=1) > threshold]
            if cost > 0 and hot.shape[0]:
                out.append(_Penalty(hot * 100.0 / L, threshold * 100.0 / L, cost))
    return out, patched


@dataclass(frozen=True)
class BoundModel:
    """The LP of the module docstring in ``linprog``'s form (A_ub v <= b_ub, lo <= v <= hi);
    variables x (m) | y (needles) | s | c (groups) | one per penalty | u (hot rows)."""

    A_ub: sparse.csr_array
    b_ub: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    m: int
    n_needles: int
    term_costs: np.ndarray  # the objective's price of every variable after c
    patched: tuple[str, ...]  # D{v}cc limits bounded through patches, in words

    def costs(self, *, seeds: float, needles: float, shortfall: float) -> np.ndarray:
        """The cost vector with these weights per seed, needle and % shortfall (and the
        model's V150, V200 and hard-limit terms at their prices)."""
        c = np.zeros(self.lo.size)
        c[: self.m] = seeds
        c[self.m : self.m + self.n_needles] = needles
        c[self.m + self.n_needles] = shortfall
        c[c.size - self.term_costs.size :] = self.term_costs
        return c

    def no_shortfall(self) -> np.ndarray:
        """Upper bounds with s = 0 (D90 >= Rx)."""
        hi = self.hi.copy()
        hi[self.m + self.n_needles] = 0.0
        return hi


def build_model(
    problem: PlanProblem, groups: list[np.ndarray], *, soft_terms: bool = True
) -> BoundModel:
    """The LP of the module docstring over these groups of target rows (``soft_terms``
    False: without the V150, V200 and hard-limit terms, for the seed and needle bounds)."""
    p = problem
    s = p.soft
    rx = float(p.prescription_gy)
    A_t = to_host(p.A_target)
    n, m = A_t.shape
    if min(float(to_host(a).min(initial=0.0)) for a in (A_t, *p.A_oar.values())) < 0:
        raise SeedoptError("the bound needs non-negative doses")
    n_nd = int(p.n_needles)
    G = len(groups)
    sizes = np.array([g.size for g in groups], dtype=np.float64)
    # one seed alone that reaches Rx covers the row: its coefficient is capped at Rx
    A_g = np.stack([np.minimum(A_t[g], rx).sum(axis=0, dtype=np.float64) for g in groups])
    A_g *= 1 + DOSE_SLACK
    cold = n - max(1, math.ceil(0.9 * n - 1e-9))  # rows D90 >= r leaves below r
    penalties, patched = _limit_penalties(p) if soft_terms else ([], [])
    hot = []  # per V term: (its u index, seed) of each pair u_i >= x_j, rows, cost per row
    for factor, per_pct in ((1.5, s.v150_per_pct), (2.0, s.v200_per_pct)):
        if per_pct > 0 and soft_terms:
            i, j = np.nonzero(A_t >= factor * rx * (1 + DOSE_SLACK))
            rows, u = np.unique(i, return_inverse=True)
            hot.append((u, j, rows.size, per_pct * 100.0 / n))

    ox, oy, os_, oc = 0, m, m + n_nd, m + n_nd + 1
    oe = oc + G
    ou = oe + len(penalties)
    n_vars = ou + sum(h[2] for h in hot)
    needle = np.asarray(to_host(p.seed_needle), dtype=np.int64)
    link = sparse.csr_array((-np.ones(m), (np.arange(m), needle)), shape=(m, n_nd))
    eye_g = sparse.eye_array(G)
    short = place_block(rx * sizes[:, None] / 100.0, os_, n_vars)
    blocks = [  # (rows over all variables, right-hand side): rows v <= rhs
        (place_block(sparse.eye_array(m), ox, n_vars) + place_block(link, oy, n_vars), 0.0),
        (-place_block(A_g, ox, n_vars) - place_block(eye_g, oc, n_vars) - short, -rx * sizes),
        (place_block(eye_g, oc, n_vars) + short, rx * sizes),
        (place_block(np.r_[rx * cold / 100.0, np.ones(G)][None], os_, n_vars), rx * cold),
    ]
    for t, pen in enumerate(penalties):  # rows x - e <= threshold
        e = place_block(-np.ones((pen.rows.shape[0], 1)), oe + t, n_vars)
        blocks.append((place_block(pen.rows, ox, n_vars) + e, pen.threshold))
    term_costs = [pen.cost for pen in penalties]
    at = ou
    for u, j, n_rows, cost in hot:  # x_j - u_i <= 0
        pair = np.arange(u.size)
        both = (np.r_[np.ones(u.size), -np.ones(u.size)], (np.r_[pair, pair], np.r_[j, at + u]))
        blocks.append((sparse.csr_array(both, shape=(u.size, n_vars)), 0.0))
        term_costs += [cost] * n_rows
        at += n_rows
    if p.max_seeds is not None:
        blocks.append((place_block(np.ones((1, m)), ox, n_vars), float(p.max_seeds)))
    if p.max_needles is not None:
        blocks.append((place_block(np.ones((1, n_nd)), oy, n_vars), float(p.max_needles)))
    A_ub = sparse.vstack([b[0] for b in blocks], format="csr")
    b_ub = np.concatenate([np.broadcast_to(b[1], (b[0].shape[0],)) for b in blocks])

    lo, hi = np.zeros(n_vars), np.ones(n_vars)
    hi[os_] = 100.0
    hi[oc:oe] = rx * sizes
    hi[oe:ou] = [pen.most for pen in penalties]
    return BoundModel(A_ub, b_ub, lo, hi, m, n_nd, np.array(term_costs), tuple(patched))


def solve_bound(
    model: BoundModel, c: np.ndarray, hi: np.ndarray, time_limit_s: float
) -> float | None:
    """A valid lower bound of min c'v over the model: the Lagrangian of HiGHS's duals;
    ``inf`` if HiGHS proves the model infeasible, None if it stops early (an LP stopped by a
    time limit bounds nothing)."""
    if time_limit_s <= 0:
        return None
    res = linprog(
        c,
        A_ub=model.A_ub,
        b_ub=model.b_ub,
        bounds=np.c_[model.lo, hi],
        method="highs-ipm",
        options={"time_limit": time_limit_s},
    )
    if res.status == 2:
        return math.inf
    if res.status != 0:
        return None
    lam = np.maximum(0.0, -np.asarray(res.ineqlin.marginals))
    d = c + model.A_ub.T @ lam
    return float(np.minimum(d * model.lo, d * hi).sum() - lam @ model.b_ub)


def lower_bound(
    problem: PlanProblem, *, time_limit_s: float = 60.0, max_groups: int = 500
) -> PlanBound:
    """Lower bounds of the plan objective and of the seeds and needles that D90 >= Rx needs
    (module docstring), within ``time_limit_s`` of wall time in all, on at most
    ``max_groups`` groups of target rows (``group_rows``)."""
    t0 = time.perf_counter()
    if max_groups < 1:
        raise SeedoptError(f"max_groups must be >= 1, got {max_groups}")
    if np.ndim(problem.prescription_gy) != 0:
        raise SeedoptError("the bound needs one prescription, not a sweep")
    s = problem.soft
    # an EQD2 limit's terms are >= 0 and not linear in the loading: leaving them out keeps
    # every bound valid (only weaker)
    left_out = [lim for lim in problem.hard if lim.quantity != "physical"]
    problem = dataclasses.replace(
        problem, hard=tuple(lim for lim in problem.hard if lim.quantity == "physical")
    )
    groups = group_rows(to_host(problem.A_target), max_groups)
    model = build_model(problem, groups)

    def left() -> float:
        return time_limit_s - (time.perf_counter() - t0)

    full = model.costs(seeds=s.per_seed, needles=s.per_needle, shortfall=W_COVERAGE)
    objective_lb = solve_bound(model, full, model.hi, left())
    coverage = build_model(problem, groups, soft_terms=False)
    covered = coverage.no_shortfall()
    cost = coverage.costs(seeds=s.per_seed, needles=s.per_needle, shortfall=0.0)
    seed_needle_lb = solve_bound(coverage, cost, covered, left())
    count = coverage.costs(seeds=1.0, needles=0.0, shortfall=0.0)
    seeds_lb = None
    if seed_needle_lb != math.inf:
        seeds_lb = solve_bound(coverage, count, covered, left())
    min_seeds = None
    if seeds_lb is not None and math.isfinite(seeds_lb):
        min_seeds = max(0, math.ceil(seeds_lb - 1e-6))
    if objective_lb is not None:
        objective_lb = max(0.0, objective_lb)

    n = problem.A_target.shape[0]
    message = (
        f"LP on {len(groups)} groups of {n} target rows: coverage, seeds, needles, V150/V200 "
        "from single seeds"
    )
    if problem.hard:
        message += ", hard limits"
    if model.patched:
        message += (
            f" ({', '.join(model.patched)} only through patch rows: weak for large volumes, "
            "so a plan that must break such a limit lies far above the bound)"
        )
    if left_out:
        message += (
            "; EQD2 limits left out ("
            + ", ".join(f"{lim.structure} {lim.metric} {lim.quantity}" for lim in left_out)
            + "): the bound is weaker"
        )
    if objective_lb is None:
        message = "no objective bound: time limit reached; " + message
    if seed_needle_lb == math.inf:
        message += "; no loading reaches D90 >= Rx"
    return PlanBound(objective_lb, seed_needle_lb, min_seeds, message, time.perf_counter() - t0)
