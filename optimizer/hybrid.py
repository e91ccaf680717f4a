"""LP warm start polished by simulated annealing (the default optimizer).

The annealer runs twice with the same options: once from the LP loading and once from the
empty loading exactly as ``anneal`` runs with the same ``rng``; the better plan is returned.
So ``hybrid`` is never worse than ``lp`` or than ``anneal`` with the same seed, at the cost
of a second annealing run (the warm start alone lost to a cold start on some problems: a
seed-heavy LP loading is a deep basin).
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from .anneal import AnnealOptions, SimulatedAnnealingOptimizer
from .base import OptimizeResult, PlanProblem
from .lp import LPOptimizer, LPOptions
from .options import OptimizerOptions
from .registry import BaseOptimizer, register


class HybridOptions(OptimizerOptions):
    """Options of ``hybrid``: one set for each stage."""

    lp_options: LPOptions = Field(default=LPOptions(), description="options of ``lp``")
    anneal_options: AnnealOptions = Field(
        default=AnnealOptions(),
        description="options of ``anneal`` for both runs (the warm start is the LP loading). "
        "A cold-start temperature is kept on purpose: with t0 = 0.1 the chains stayed in the "
        "LP loading's basin on small test problems",
    )


@register("hybrid")
class HybridOptimizer(BaseOptimizer[HybridOptions]):
    """``lp`` loading polished by ``anneal``, and a cold ``anneal``: the better of the two."""

    Options = HybridOptions

    def run(
        self,
        problem: PlanProblem,
        rng: np.random.Generator | int | None,
        options: HybridOptions,
    ) -> OptimizeResult:
        """Run both stages (options: ``HybridOptions``).

        Returns
        -------
        ``extra`` holds ``lp_fun``, ``lp_runtime_s``, ``warm_fun`` (annealed from the LP
        loading), ``cold_fun`` (annealed from empty), ``anneal_runtime_s`` (both runs),
        ``start`` ("lp" or "empty": which run won) and its ``trace``; ``bound`` is None.
        """
        start = time.perf_counter()
        lp = LPOptimizer(self.progress).run(problem, None, options.lp_options)
        anneal = SimulatedAnnealingOptimizer(self.progress)
        gen = np.random.default_rng(rng)  # one stream: the cold run draws first, as anneal's
        cold = anneal.run(problem, gen, options.anneal_options)
        warm = anneal.run(problem, gen, options.anneal_options, x0=lp.x)
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
