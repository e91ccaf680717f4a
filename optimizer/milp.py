"""Mixed-integer linear model of the plan solved with HiGHS (``scipy.optimize.milp``).

The model is a linear-penalty surrogate of ``objective`` (D90, V150/V200 and quantile doses
are not linear). Over the (sub-sampled) target rows ``A_t`` (n rows), prescription Rx:

variables
    x_j in {0, 1} seed j loaded; y_n in {0, 1} needle n used, x_j <= y_needle(j);
    u_i >= 0 underdose, u_i >= Rx - A_t,i x; h_i >= 0 hot spot, h_i >= A_t,i x - 2 Rx.
hard limits on the OAR rows ``A_k`` (all rows, limit L)
    Dmax: A_k,i x <= L for every row (hard);
    Dmean: mean_i(A_k,i) x <= L (hard; exact, the mean is linear);
    D{v}cc: penalised excess e >= 0 of the mean dose of the hottest q = ceil(v / voxel_cc)
        points (CVaR, Rockafellar-Uryasev: t free, s_i >= 0, s_i >= A_k,i x - t,
        t + sum(s) / q - e <= L). That mean is >= the q-th hottest dose, so e >= the true
        excess in Gy: the surrogate over-estimates, never hides, a Dcc violation.
organ term (``organ_per_pct`` > 0), per limit with floor F = organ_floor L: o >= 0 with
    Dmax: A_k,i x - o <= F; Dmean: mean_i(A_k,i) x - o <= F; D{v}cc: t + sum(s) / q - o <= F
    (the same t, s: both slacks fall with the CVaR, so one minimiser serves both).
caps
    sum x <= max_seeds, sum y <= max_needles when set.
optional (``require_d90``)
    z_i in {0, 1} "allowed cold point": A_t,i x + Rx z_i >= Rx, sum z <= n - ceil(0.9 n),
    i.e. exactly D90 >= Rx on the sampled rows, as a hard constraint.
objective (same units as ``objective``)
    W_COVERAGE * 100 / (Rx n) * sum u                 (mean underdose, % of Rx)
    + v200_per_pct * 100 / (n HOT_SCALE Rx) * sum h   (a point HOT_SCALE Rx above 2 Rx costs
                                                      what one point costs in V200)
    + sum over Dcc limits of W_HARD * 100 / L * e     (% excess, weighted like objective)
    + sum over limits of organ_per_pct * 100 / L * o  (% of L above F, like objective)
    + per_seed * sum x + per_needle * sum y.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy import sparse

from seedopt.config_types import Count, Flag, Fraction, PositiveReal
from seedopt.errors import SeedoptError

from .base import HardLimit, OptimizeResult, PlanProblem
from .exact import build_exact_model
from .highs import HighsModel, place_block, sampled_target, stack_groups
from .objective import W_COVERAGE, W_HARD, hottest_points, objective
from .options import OptimizerOptions
from .registry import BaseOptimizer, register, to_host
from .usable import USE_INSTEAD, require_usable

HOT_SCALE = 0.1
"""Excess above 2 Rx (fraction of Rx) that the hot-spot slack prices as one V200 point."""


@dataclass(frozen=True)
class _Limit:
    """One hard limit as the model uses it (OAR rows in float64)."""

    label: str
    metric: str
    A: np.ndarray
    limit_gy: float
    q: int  # hottest points whose mean bounds a Dcc (1 for the others)
    cost: float  # per Gy of CVaR excess (Dcc only)
    floor_gy: float  # the organ term's floor F
    organ_cost: float  # per Gy of the metric (CVaR for Dcc) above F; 0: no organ term
    offset: np.ndarray  # (n_k,) the limited dose of each row is offset + A x (Gy)

    def doses(self, x: np.ndarray) -> np.ndarray:
        """The model's limited dose at each row for loading ``x`` (Gy)."""
        return self.offset + self.A @ x

    def model_value(self, d: np.ndarray) -> float:
        """The metric as the model bounds it from the doses ``d`` at the rows (Gy): Dmax,
        Dmean, or for a Dcc the mean of the q hottest points (CVaR)."""
        if self.metric == "Dmax":
            return float(d.max())
        if self.metric == "Dmean":
            return float(d.mean())
        return float(np.sort(d)[::-1][: self.q].mean())


@dataclass(frozen=True)
class PenaltyObjective:
    """The linear model's objective as a function of a 0/1 loading, its slacks at their
    optimum: what HiGHS's bound bounds, so any method's loading can be scored against it."""

    problem: PlanProblem
    rows: np.ndarray  # sampled target rows
    A_t: np.ndarray  # (n, m) float64, Gy per seed
    limits: tuple[_Limit, ...]
    require_d90: bool
    c_under: float
    c_hot: float

    def evaluate(self, x: Any) -> float:
        """The model objective of loading ``x`` (``inf`` where a hard constraint fails by
        more than 1e-6 relative)."""
        p = self.problem
        s = p.soft
        xb = np.asarray(to_host(x), dtype=bool)
        xf = xb.astype(np.float64)
        rx = p.prescription_gy
        dt = self.A_t @ xf
        n_needles = np.unique(np.asarray(p.seed_needle)[xb]).size
        if (p.max_seeds is not None and xb.sum() > p.max_seeds) or (
            p.max_needles is not None and n_needles > p.max_needles
        ):
            return math.inf
        if self.require_d90:
            need = math.ceil(0.9 * dt.size - 1e-9)
            if np.count_nonzero(dt >= rx * (1 - 1e-6)) < need:
                return math.inf
        value = (
            s.per_seed * xb.sum()
            + s.per_needle * n_needles
            + self.c_under * np.maximum(0.0, rx - dt).sum()
            + self.c_hot * np.maximum(0.0, dt - 2.0 * rx).sum()
        )
        for lim in self.limits:
            metric = lim.model_value(lim.doses(xf))
            tol = 1e-6 * max(1.0, abs(lim.limit_gy))
            if lim.metric in ("Dmax", "Dmean") and metric > lim.limit_gy + tol:
                return math.inf
            value += lim.cost * max(0.0, metric - lim.limit_gy)  # cost 0: hard limits
            value += lim.organ_cost * max(0.0, metric - lim.floor_gy)
        return float(value)


def linear_limit_rows(p: PlanProblem, hard: HardLimit) -> tuple[np.ndarray, np.ndarray]:
    """The rows (n_k, m) and offsets (n_k,) of a linear upper bound of the dose ``hard``
    limits: the implant dose itself for a physical limit; for an EQD2 limit, each row's
    secant of its EQD2 curve g over [0, the row's dose with every candidate loaded],
    g(d) <= d g(d_max) / d_max, which lies above the convex curve there, plus the prior's
    EQD2 for a cumulative limit. The model's limit is then never looser than the true one."""
    A_k = to_host(p.A_oar[hard.structure]).astype(np.float64)
    offset = np.zeros(A_k.shape[0])
    if hard.quantity == "physical":
        return A_k, offset
    g = p.implant_eqd2[hard.structure]
    d_max = A_k.sum(axis=1)
    slope = np.where(
        d_max > 0,
        g.eqd2(d_max) / np.where(d_max > 0, d_max, 1.0),
        1.0 / (1.0 + 2.0 / g.alpha_beta_gy),
    )
    if hard.quantity == "eqd2_cumulative":
        offset = np.asarray(to_host(p.prior_eqd2[hard.structure]), dtype=np.float64)
    return A_k * slope[:, None], offset


def penalty_objective(
    problem: PlanProblem, *, max_points: int = 2000, require_d90: bool = False
) -> PenaltyObjective:
    """The objective of ``build_model``'s model (same rows, same prices), without the
    constraint matrix."""
    p = problem
    s = p.soft
    rx = float(p.prescription_gy)
    rows, A_t = sampled_target(p, max_points)
    n = A_t.shape[0]
    limits: list[_Limit] = []
    for hard in p.hard:
        A_k, offset = linear_limit_rows(p, hard)
        q, cost = 1, 0.0
        if hard.metric not in ("Dmax", "Dmean"):
            q = hottest_points(hard, A_k.shape[0], p.voxel_cc)
            cost = W_HARD * 100.0 / hard.max_gy
        label = f"{hard.metric}({hard.structure}) <= {hard.max_gy:g} Gy"
        L = float(hard.max_gy)
        organ_cost = s.organ_per_pct * 100.0 / L
        limits.append(
            _Limit(label, hard.metric, A_k, L, q, cost, s.organ_floor_gy(L), organ_cost, offset)
        )
    c_under = W_COVERAGE * 100.0 / (rx * n)
    c_hot = s.v200_per_pct * 100.0 / (n * HOT_SCALE * rx)
    return PenaltyObjective(p, rows, A_t, tuple(limits), require_d90, c_under, c_hot)


@dataclass(frozen=True)
class LinearModel(HighsModel):
    """The linear-penalty model of the module docstring (variables x, y first)."""

    penalty: PenaltyObjective

    @property
    def hard_constraints(self) -> list[str]:
        p = self.problem
        out = [lim.label for lim in self.penalty.limits if lim.metric in ("Dmax", "Dmean")]
        out += super().hard_constraints
        if self.penalty.require_d90:
            out.append(f"D90 >= {p.prescription_gy:g} Gy on the sampled target points")
        return out

    def evaluate(self, x: Any) -> float:
        """The model objective of a 0/1 loading (``PenaltyObjective.evaluate``)."""
        return self.penalty.evaluate(x)


def build_model(
    problem: PlanProblem, *, max_points: int = 2000, require_d90: bool = False
) -> LinearModel:
    """The linear model of ``problem`` (module docstring) on at most ``max_points`` target
    rows (evenly spaced sample; all OAR rows are kept)."""
    p = problem
    s = p.soft
    rx = float(p.prescription_gy)
    pen = penalty_objective(p, max_points=max_points, require_d90=require_d90)
    rows, A_t, limits = pen.rows, pen.A_t, pen.limits
    n, m = A_t.shape
    n_nd = int(p.n_needles)
    needle = np.asarray(to_host(p.seed_needle), dtype=np.int64)

    # variable layout: x | y | u | h | per Dcc limit: t, s (n_k), e | per limit with an
    # organ term: o | z (require_d90)
    ox, oy, ou, oh = 0, m, m + n_nd, m + n_nd + n
    n_vars = oh + n
    dcc_at, organ_at = {}, {}
    for i, lim in enumerate(limits):
        if lim.cost:
            dcc_at[i] = n_vars
            n_vars += 1 + lim.A.shape[0] + 1
    for i, lim in enumerate(limits):
        if lim.organ_cost:
            organ_at[i] = n_vars
            n_vars += 1
    oz = n_vars
    if require_d90:
        n_vars += n

    c = np.zeros(n_vars)
    c[ox:oy] = s.per_seed
    c[oy:ou] = s.per_needle
    c[ou:oh] = pen.c_under
    c[oh : oh + n] = pen.c_hot
    lo, hi = np.zeros(n_vars), np.ones(n_vars)
    hi[ou:oz] = np.inf
    integrality = np.zeros(n_vars, dtype=np.int64)
    integrality[ox:ou] = 1
    integrality[oz:] = 1

    eye_n = sparse.eye_array(n)
    link = sparse.csr_array((-np.ones(m), (np.arange(m), needle)), shape=(m, n_nd))
    groups: list[tuple[Any, Any, Any]] = [  # (rows over all variables, lower, upper)
        (
            place_block(sparse.eye_array(m), ox, n_vars) + place_block(link, oy, n_vars),
            -np.inf,
            0.0,
        ),
        (place_block(A_t, ox, n_vars) + place_block(eye_n, ou, n_vars), rx, np.inf),
        (place_block(A_t, ox, n_vars) - place_block(eye_n, oh, n_vars), -np.inf, 2.0 * rx),
    ]
    for i, lim in enumerate(limits):
        if lim.metric in ("Dmax", "Dmean"):
            rows_k = lim.A if lim.metric == "Dmax" else lim.A.mean(axis=0)[None]
            off = lim.offset if lim.metric == "Dmax" else lim.offset.mean(keepdims=True)
            groups.append((place_block(rows_k, ox, n_vars), -np.inf, lim.limit_gy - off))
            if i in organ_at:
                c[organ_at[i]] = lim.organ_cost
                slack = place_block(np.ones((rows_k.shape[0], 1)), organ_at[i], n_vars)
                groups.append(
                    (place_block(rows_k, ox, n_vars) - slack, -np.inf, lim.floor_gy - off)
                )
        else:
            ot = dcc_at[i]
            nk = lim.A.shape[0]
            os_, oe = ot + 1, ot + 1 + nk
            lo[ot] = -np.inf
            c[oe] = lim.cost
            hot = (
                place_block(lim.A, ox, n_vars)
                - place_block(np.ones((nk, 1)), ot, n_vars)
                - place_block(sparse.eye_array(nk), os_, n_vars)
            )
            groups.append((hot, -np.inf, -lim.offset))
            cvar = np.concatenate([[1.0], np.full(nk, 1.0 / lim.q), [-1.0]])[None]
            groups.append((place_block(cvar, ot, n_vars), -np.inf, lim.limit_gy))
            if i in organ_at:
                c[organ_at[i]] = lim.organ_cost
                floor_row = place_block(cvar[:, :-1], ot, n_vars) - place_block(
                    np.ones((1, 1)), organ_at[i], n_vars
                )
                groups.append((floor_row, -np.inf, lim.floor_gy))
    if p.max_seeds is not None:
        groups.append((place_block(np.ones((1, m)), ox, n_vars), -np.inf, float(p.max_seeds)))
    if p.max_needles is not None:
        groups.append((place_block(np.ones((1, n_nd)), oy, n_vars), -np.inf, float(p.max_needles)))
    if require_d90:
        groups.append(
            (place_block(A_t, ox, n_vars) + place_block(rx * eye_n, oz, n_vars), rx, np.inf)
        )
        allowed = n - math.ceil(0.9 * n - 1e-9)
        groups.append((place_block(np.ones((1, n)), oz, n_vars), -np.inf, float(allowed)))

    A, lb, ub = stack_groups(groups)
    return LinearModel(p, rows, c, A, lb, ub, lo, hi, integrality, pen)


class MILPOptions(OptimizerOptions):
    """Options of ``milp``."""

    formulation: Literal["penalty", "exact"] = Field(
        default="penalty",
        description='"penalty" (surrogate, scales to large cases) or "exact" (its objective is '
        "``objective`` on the model's target rows; binaries per row, small cases)",
    )
    time_limit_s: PositiveReal = Field(
        default=30.0, description="wall-time limit of the LP relaxation and the MILP together, s"
    )
    mip_rel_gap: Fraction = Field(default=1e-4, description="relative gap at which HiGHS stops")
    node_limit: Count | None = Field(
        default=None,
        description="at most this many branch-and-bound nodes (None: no limit); unlike the "
        "time limit it stops the search at the same point on every run and machine",
    )
    max_points: Count = Field(
        default=2000, description="at most this many target rows (evenly spaced sample)"
    )
    require_d90: Flag = Field(
        default=False, description="D90 >= Rx on the model's target rows as a hard constraint"
    )


@register("milp")
class MILPOptimizer(BaseOptimizer[MILPOptions]):
    """A mixed-integer model of the plan solved to ``mip_rel_gap`` by HiGHS: the
    linear-penalty surrogate of the module docstring (``formulation="penalty"``, the default)
    or the exact model of ``optimizer.exact`` (``formulation="exact"``, small problems)."""

    Options = MILPOptions

    def run(
        self,
        problem: PlanProblem,
        rng: np.random.Generator | int | None,
        options: MILPOptions,
    ) -> OptimizeResult:
        """Solve the model (options: ``MILPOptions``; ``rng`` is unused: HiGHS is
        deterministic). ``solve`` presents the result only if it is usable
        (``check_usable``); ``run`` returns it as HiGHS left it.

        Returns
        -------
        ``fun`` is the exact objective of the loading; ``bound`` is HiGHS's proven dual bound
        of the MODEL objective: with ``formulation="exact"`` and every target row in the
        model, a proven lower bound of ``fun`` itself. ``extra`` holds ``formulation``,
        ``model_objective``, ``model_bound``, ``mip_gap``, ``lp_relaxation`` (model optimum
        without integrality), ``n_target_rows`` and ``stopped_by`` (``"time_limit_s"``,
        ``"node_limit"`` or None: the option whose limit stopped HiGHS). Status 1: time or
        node limit with a feasible loading; 2: none found (x empty).
        """
        start = time.perf_counter()
        formulation, time_limit_s = options.formulation, options.time_limit_s
        mip_rel_gap, node_limit = options.mip_rel_gap, options.node_limit
        if formulation == "exact" and not problem.physical_only:
            raise SeedoptError(
                'milp\'s formulation "exact" models physical-dose limits only; an EQD2 limit '
                'needs formulation "penalty" (a conservative linear bound) or hybrid'
            )
        build = build_exact_model if formulation == "exact" else build_model
        model: HighsModel = build(
            problem, max_points=options.max_points, require_d90=options.require_d90
        )
        m = problem.n_candidates
        relax = model.solve(integral=False, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap)
        left = time_limit_s - (time.perf_counter() - start)
        res = model.solve(
            integral=True, time_limit_s=left, mip_rel_gap=mip_rel_gap, node_limit=node_limit
        )
        found = res.x is not None
        x = res.x[:m] > 0.5 if found else np.zeros(m, dtype=bool)
        lp_value = float(relax.fun) if relax.status == 0 else None
        nodes = int(getattr(res, "mip_node_count", 0) or 0)
        # HiGHS ends at a node limit with "solution limit reached" (scipy status 4)
        hit_nodes = res.status != 0 and node_limit is not None and nodes >= node_limit
        stopped_by = "node_limit" if hit_nodes else "time_limit_s" if res.status == 1 else None
        if found and res.status == 0:
            status, message = 0, f"optimal within mip_rel_gap={mip_rel_gap:g}"
        elif found:
            why = f"the node limit ({node_limit} nodes)" if hit_nodes else res.message
            status, message = 1, f"stopped with a feasible loading: {why}"
        elif res.status == 2 or relax.status == 2:
            status = 2
            message = (
                "infeasible: no loading satisfies the hard constraints together: "
                + "; ".join(model.hard_constraints)
            )
        else:
            status, message = 2, f"no feasible loading found: {res.message}"
        bound = getattr(res, "mip_dual_bound", None)
        bound = float(bound) if bound is not None and np.isfinite(bound) else None
        return OptimizeResult(
            x=x,
            fun=float(objective(problem, x)),
            success=status == 0,
            status=status,
            message=message,
            nit=nodes,
            nfev=1,
            method=self.name,
            runtime_s=time.perf_counter() - start,
            bound=bound,
            extra={
                "formulation": formulation,
                "model_objective": float(res.fun) if found else None,
                "model_bound": bound,
                "mip_gap": float(res.mip_gap)
                if getattr(res, "mip_gap", None) is not None
                else None,
                "lp_relaxation": lp_value,
                "n_target_rows": int(model.rows.size),
                "stopped_by": stopped_by,
            },
        )

    def check_usable(
        self, problem: PlanProblem, result: OptimizeResult, options: MILPOptions
    ) -> OptimizeResult:
        """``require_usable``: the plan is proven optimal only when the exact model over every
        target row was solved (``formulation="exact"``, status 0); a penalty-model optimum is
        the optimum of a surrogate and is compared with the rule-based loading like a plan
        cut short by ``time_limit_s`` or ``node_limit``."""
        extra = result.extra
        proven = (
            result.status == 0
            and extra["formulation"] == "exact"
            and extra["n_target_rows"] == problem.A_target.shape[0]
        )
        found = extra["model_objective"] is not None
        limit = {
            "time_limit_s": f"time limit (time_limit_s={options.time_limit_s:g})",
            "node_limit": f"node limit (node_limit={options.node_limit})",
        }.get(extra["stopped_by"])
        advice = USE_INSTEAD
        if limit is not None:
            what = f"stopped at its {limit}" if found else f"found no loading within its {limit}"
            advice += f", or raise {extra['stopped_by']}"
        elif result.status == 0:
            model = f"exact model on {extra['n_target_rows']} sampled target points"
            if extra["formulation"] == "penalty":
                model = "linear-penalty surrogate"
            what = f"solved its {model} (optimal within mip_rel_gap={options.mip_rel_gap:g})"
        else:
            what = f"found no loading ({result.message})"
            if options.require_d90:
                advice += ", or drop require_d90"
        return require_usable(problem, result, what=what, advice=advice, proven_optimal=proven)
