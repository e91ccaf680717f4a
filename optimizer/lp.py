"""The LP relaxation of the ``milp`` model, rounded and repaired on the exact objective.

Rounding rule: load candidate j when its relaxed value x_j >= 0.5; when a cap is exceeded,
keep the needles with the largest summed relaxed value (``max_needles``) and then the seeds
with the largest relaxed values (``max_seeds``), ties by index. Repair: best-improvement
single flips on the exact ``objective`` (every candidate tried per step, caps kept) until no
flip improves it or ``repair_steps`` flips were made.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from pydantic import Field

from seedopt.backend import array_module
from seedopt.config_types import Count, NonNegativeCount, NonNegativeReal, PositiveReal

from .anneal import terms_from_doses
from .base import OptimizeResult, PlanProblem
from .milp import build_model
from .objective import decisive_rows, dose, objective
from .options import OptimizerOptions
from .registry import BaseOptimizer, register, to_host
from .usable import USE_INSTEAD, require_usable


class LPOptions(OptimizerOptions):
    """Options of ``lp``."""

    time_limit_s: PositiveReal = Field(
        default=30.0, description="wall-time limit of the LP solve, s"
    )
    max_points: Count = Field(
        default=2000, description="at most this many target rows in the LP (evenly spaced sample)"
    )
    repair_steps: NonNegativeCount | None = Field(
        default=None,
        description="most greedy flips after rounding (default: the number of candidates)",
    )
    repair_time_s: NonNegativeReal = Field(
        default=20.0, description="no repair step starts after this many seconds"
    )


def round_relaxed(problem: PlanProblem, x_relaxed: np.ndarray) -> np.ndarray:
    """The 0/1 loading of the rounding rule (module docstring) from relaxed values."""
    needle = np.asarray(to_host(problem.seed_needle), dtype=np.int64)
    x = x_relaxed >= 0.5
    if problem.max_needles is not None:
        weight = np.bincount(needle[x], weights=x_relaxed[x], minlength=problem.n_needles)
        used = np.flatnonzero(weight > 0)
        keep = used[np.argsort(-weight[used], kind="stable")][: problem.max_needles]
        x &= np.isin(needle, keep)
    if problem.max_seeds is not None and x.sum() > problem.max_seeds:
        loaded = np.flatnonzero(x)
        keep = loaded[np.argsort(-x_relaxed[loaded], kind="stable")][: problem.max_seeds]
        x = np.zeros_like(x)
        x[keep] = True
    return x


def greedy_flips(
    problem: PlanProblem,
    x: np.ndarray,
    max_steps: int,
    chunk: int = 256,
    max_seconds: float = math.inf,
) -> tuple[np.ndarray, int, int, str | None]:
    """Best-improvement single flips on the exact objective, from loading ``x``.

    Each step scores every candidate flip from incrementally updated doses (``chunk``
    candidates at a time) and applies the best one if it lowers the objective; flips that
    would raise the seed or needle count above a cap are not taken. No new step starts after
    ``max_seconds`` (each step costs candidates x rows work: about 1 s on a 300 cc case).

    Returns
    -------
    The loading, the number of flips made, the number of objective evaluations and what
    stopped the flips: None (a 1-flip local minimum), ``"repair_steps"`` (``max_steps``
    flips made) or ``"repair_time_s"`` (``max_seconds`` passed).
    """
    p = decisive_rows(problem)
    xp = array_module(p.A_target)
    m = p.n_candidates
    needle = np.asarray(to_host(p.seed_needle), dtype=np.int64)
    cap_seeds = math.inf if p.max_seeds is None else p.max_seeds
    cap_needles = math.inf if p.max_needles is None else p.max_needles
    structures = sorted({lim.structure for lim in p.hard})
    cols_t = xp.ascontiguousarray(p.A_target.T)
    cols_o = {s: xp.ascontiguousarray(p.A_oar[s].T) for s in structures}
    x = x.copy()
    x_dev = xp.asarray(x)
    d_t = dose(p.A_target, x_dev).astype(xp.float64)
    d_o = {s: dose(p.A_oar[s], x_dev).astype(xp.float64) for s in structures}
    count = np.bincount(needle[x], minlength=p.n_needles)
    f = float(terms_from_doses(p, d_t, d_o, int(x.sum()), int((count > 0).sum())).total)
    nfev, steps = 1, 0
    deadline = time.perf_counter() + max_seconds
    stopped_by: str | None = "repair_steps"
    while steps < max_steps:
        if time.perf_counter() >= deadline:
            stopped_by = "repair_time_s"
            break
        n_seeds, n_needles = int(x.sum()), int((count > 0).sum())
        best_f, best_j = f, -1
        for lo in range(0, m, chunk):
            J = np.arange(lo, min(lo + chunk, m))
            on = x[J]
            sign = xp.asarray(np.where(on, -1.0, 1.0)[:, None])
            g = xp.asarray(J)
            new_t = d_t[None] + sign * cols_t[g]
            new_o = {s: d_o[s][None] + sign * cols_o[s][g] for s in structures}
            new_seeds = n_seeds + np.where(on, -1, 1)
            new_needles = (
                n_needles + (~on & (count[needle[J]] == 0)) - (on & (count[needle[J]] == 1))
            )
            vals = to_host(
                terms_from_doses(
                    p, new_t, new_o, xp.asarray(new_seeds), xp.asarray(new_needles)
                ).total
            ).astype(np.float64)
            nfev += J.size
            vals[((new_seeds > cap_seeds) & ~on) | ((new_needles > cap_needles) & ~on)] = np.inf
            k = int(np.argmin(vals))
            if vals[k] < best_f:
                best_f, best_j = float(vals[k]), int(J[k])
        if best_j < 0:
            stopped_by = None
            break
        sign_j = -1.0 if x[best_j] else 1.0
        d_t = d_t + sign_j * cols_t[best_j]
        d_o = {s: d_o[s] + sign_j * cols_o[s][best_j] for s in structures}
        count[needle[best_j]] += int(sign_j)
        x[best_j] = not x[best_j]
        f = best_f
        steps += 1
    return x, steps, nfev, stopped_by


@register("lp")
class LPOptimizer(BaseOptimizer[LPOptions]):
    """LP relaxation of the ``milp`` model, rounded at 0.5 and repaired by greedy flips."""

    Options = LPOptions

    def run(
        self,
        problem: PlanProblem,
        rng: np.random.Generator | int | None,
        options: LPOptions,
    ) -> OptimizeResult:
        """Solve the relaxation, round and repair (options: ``LPOptions``; ``rng`` is
        unused: deterministic).

        Returns
        -------
        ``bound`` is the LP optimum, a proven lower bound of the MODEL objective (not of
        ``fun``); ``extra`` holds ``lp_objective``, ``rounded_objective`` (exact objective
        after rounding), ``repair_flips`` and ``stopped_by``: the option whose limit cut the
        method short (``"time_limit_s"``: the LP; ``"repair_steps"``, ``"repair_time_s"``:
        the repair, ``greedy_flips``), or None.
        ``solve`` presents the result only if it is usable (``check_usable``); ``run`` returns
        it as is.
        """
        start = time.perf_counter()
        m = problem.n_candidates
        model = build_model(problem, max_points=options.max_points)
        relax = model.solve(integral=False, time_limit_s=options.time_limit_s, mip_rel_gap=0.0)
        solved = relax.status == 0 and relax.x is not None
        x_relaxed = relax.x[:m] if solved else np.zeros(m)
        x = round_relaxed(problem, x_relaxed)
        rounded = float(objective(problem, x))
        steps = m if options.repair_steps is None else options.repair_steps
        x, flips, nfev, stopped_by = greedy_flips(
            problem, x, steps, max_seconds=options.repair_time_s
        )
        if solved:
            status, message = 0, f"LP relaxation rounded at 0.5, then {flips} greedy flips"
        else:
            status = 2
            message = f"LP relaxation failed ({relax.message}); {flips} greedy flips from empty"
        extra: dict[str, Any] = {
            "lp_objective": float(relax.fun) if solved else None,
            "rounded_objective": rounded,
            "repair_flips": flips,
            "stopped_by": "time_limit_s" if relax.status == 1 else stopped_by,
        }
        return OptimizeResult(
            x=x,
            fun=float(objective(problem, x)),
            success=status == 0,
            status=status,
            message=message,
            nit=flips,
            nfev=nfev + 1,
            method=self.name,
            runtime_s=time.perf_counter() - start,
            bound=float(relax.fun) if solved else None,
            extra=extra,
        )

    def check_usable(
        self, problem: PlanProblem, result: OptimizeResult, options: LPOptions
    ) -> OptimizeResult:
        """``require_usable``: a rounded and repaired loading proves nothing, so it is always
        compared with the rule-based loading."""
        flips, stopped_by = result.extra["repair_flips"], result.extra["stopped_by"]
        what = {
            "time_limit_s": "found no LP solution within its time limit "
            f"(time_limit_s={options.time_limit_s:g}; then {flips} greedy flips from empty)",
            "repair_time_s": f"stopped repairing after {flips} flips at its time limit "
            f"(repair_time_s={options.repair_time_s:g})",
            "repair_steps": f"stopped repairing at its step limit (repair_steps={flips})",
            None: f"rounded its LP relaxation and repaired it into a local minimum after "
            f"{flips} flips",
        }[stopped_by]
        if result.status == 2 and stopped_by != "time_limit_s":
            what = f"found no LP solution ({result.message})"
        advice = USE_INSTEAD + (f", or raise {stopped_by}" if stopped_by else "")
        return require_usable(problem, result, what=what, advice=advice)
