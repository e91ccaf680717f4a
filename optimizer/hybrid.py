"""LP warm start polished by simulated annealing (the default optimizer)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .base import OptimizeResult, PlanProblem
from .registry import BaseOptimizer, get_optimizer, register


@register("hybrid")
class HybridOptimizer(BaseOptimizer):
    """``lp`` loading, then ``anneal`` from it (``x0``); never worse than the LP loading."""

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
        ``extra`` holds ``lp_fun``, ``lp_runtime_s``, ``anneal_fun``, ``anneal_runtime_s``
        and the annealing ``trace``; ``bound`` is None (no bound on the exact objective).
        """
        start = time.perf_counter()
        polish = dict(anneal_options or {})
        if "x0" in polish:
            raise ValueError("hybrid sets anneal's x0 to the LP loading; do not pass x0")
        lp = get_optimizer("lp").solve(problem, **(lp_options or {}))
        sa = get_optimizer("anneal").solve(problem, rng=rng, x0=lp.x, **polish)
        return OptimizeResult(
            x=sa.x,
            fun=sa.fun,
            success=sa.success,
            status=sa.status,
            message=f"lp: {lp.message}; anneal: {sa.message}",
            nit=lp.nit + sa.nit,
            nfev=lp.nfev + sa.nfev,
            method=self.name,
            runtime_s=time.perf_counter() - start,
            extra={
                "lp_fun": lp.fun,
                "lp_runtime_s": lp.runtime_s,
                "anneal_fun": sa.fun,
                "anneal_runtime_s": sa.runtime_s,
                "trace": sa.extra["trace"],
            },
        )
