"""LP warm start polished by simulated annealing (the default optimizer).

The annealer runs twice with the same options: once from the LP loading and once from the
empty loading exactly as ``anneal`` runs with the same ``rng``; the better plan is returned.
So ``hybrid`` is never worse than ``lp`` or than ``anneal`` with the same seed, at the cost
of a second annealing run (the warm start alone lost to a cold start on some problems: a
seed-heavy LP loading is a deep basin).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .base import OptimizeResult, PlanProblem
from .registry import BaseOptimizer, get_optimizer, register


@register("hybrid")
class HybridOptimizer(BaseOptimizer):
    """``lp`` loading polished by ``anneal``, and a cold ``anneal``: the better of the two."""

    def solve(
        self,
        problem: PlanProblem,
        rng: np.random.Generator | int | None = None,
        *,
        lp_options: dict[str, Any] | None = None,
        anneal_options: dict[str, Any] | None = None,
    ) -> OptimizeResult:
        """Run both stages.

        Parameters
        ----------
        lp_options : options of the ``lp`` optimizer.
        anneal_options : options of ``anneal`` (its defaults otherwise; ``x0`` is the LP
            loading and cannot be given). A cold-start temperature is kept on purpose: with
            t0 = 0.1 the chains stayed in the LP loading's basin on small test problems.

        Returns
        -------
        ``extra`` holds ``lp_fun``, ``lp_runtime_s``, ``warm_fun`` (annealed from the LP
        loading), ``cold_fun`` (annealed from empty), ``anneal_runtime_s`` (both runs),
        ``start`` ("lp" or "empty": which run won) and its ``trace``; ``bound`` is None.
        """
        start = time.perf_counter()
        polish = dict(anneal_options or {})
        if "x0" in polish:
            raise ValueError("hybrid sets anneal's x0 to the LP loading; do not pass x0")
        lp = get_optimizer("lp", self.progress).solve(problem, **(lp_options or {}))
        anneal = get_optimizer("anneal", self.progress)
        gen = np.random.default_rng(rng)  # one stream: the cold run draws first, as anneal's
        cold = anneal.solve(problem, rng=gen, **polish)
        warm = anneal.solve(problem, rng=gen, x0=lp.x, **polish)
        best, start_from = (warm, "lp") if warm.fun <= cold.fun else (cold, "empty")
        return OptimizeResult(
            x=best.x,
            fun=best.fun,
            success=best.success,
            status=best.status,
            message=f"lp: {lp.message}; anneal from the {start_from} loading: {best.message}",
            nit=lp.nit + warm.nit + cold.nit,
            nfev=lp.nfev + warm.nfev + cold.nfev,
            method=self.name,
            runtime_s=time.perf_counter() - start,
            extra={
                "lp_fun": lp.fun,
                "lp_runtime_s": lp.runtime_s,
                "warm_fun": warm.fun,
                "cold_fun": cold.fun,
                "anneal_runtime_s": warm.runtime_s + cold.runtime_s,
                "start": start_from,
                "trace": best.extra["trace"],
            },
        )
