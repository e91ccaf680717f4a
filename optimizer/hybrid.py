"""The default optimizer: annealing on a sample of the target, then local search on the exact
objective, never worse than the rule-based loading.

1. The rule: the count-scaled clinical loading (``clinical``: needles 1 cm apart, peripheral
   loading, the fewest seeds in rule order whose D90 reaches Rx), within the caps.
2. Annealing (``anneal``'s loop, ``anneal_options``) on the problem with its target rows
   thinned to at most ``search_rows`` evenly spaced rows and its prescription raised by
   ``search_margin`` when rows were dropped (``decisive_rows`` for the organs, thinned too
   where they outnumber ``search_rows``: ``thinned``):
   half the chains start from the rule's loading at ``anneal_options.t0``, half from the
   empty one at the hotter ``cold_t0``, for
   ``max(anneal_options.iterations, iterations_per_candidate x candidates) x effort`` moves.
3. Local search (``local_search.improve``: flips, seed moves within ``radius_mm`` or to
   needles in use, needle closings) from the best ``polish_chains`` distinct chain ends (at
   most ``polish_budget`` / candidates of them, at least one) on the thinned problem; from
   the best of those an iterated local search (``local_search.kicked``: ``kicks`` times,
   or ``kicks_per_candidate`` x candidates where more, at most ``kick_budget`` /
   candidates; empty a random needle in use, search again, keep it if better and no
   further over a hard limit; x ``effort``), then from the result
   on every row (flips only above ``fine_rows`` target rows): the plan is a local optimum of
   the exact objective under those moves (unless a phase hits its time limit).
4. The plan returned is the better, by the exact objective, of that and the rule's loading
   (``usable.rule_loading``: the rule's order cut down to the seed and needle caps, the
   same plan every method's usability is judged against).
5. With ``robust`` set (off by default), that plan is then improved by the same exact local
   search on the robust objective over ``problem.scenarios`` (``optimizer.robust``: the mean
   or the tail mean of the plan objective with every needle displaced by a sampled error);
   the plan returned is then the robust search's, whose nominal objective may be higher.

Why: annealing from a good start finds the basin (how many needles, where), the local search
makes it exact and finishes the fine moves that annealing reaches slowly, and the thinned
target makes both about as fast on a 600 cc target as on a 30 cc one. The measured numbers
are in docs/planning.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from seedopt.backend import array_module
from seedopt.config_types import (
    Count,
    Fraction,
    Length_mm,
    NonNegativeCount,
    NonNegativeReal,
    PositiveReal,
)

from .anneal import AnnealOptions, anneal_chains, chains_that_fit
from .base import OptimizeResult, PlanProblem
from .highs import sample_rows
from .local_search import Loading, Neighbourhood, improve, kicked
from .objective import decisive_rows, objective
from .options import OptimizerOptions
from .registry import BaseOptimizer, register, to_host
from .robust import RobustLoading, RobustOptions
from .usable import rule_loading

HYBRID_ANNEAL = AnnealOptions(chains=12, iterations=2000, t0=0.3, p_swap=0.3)
"""Annealing defaults of ``hybrid``: t0 = 0.3 objective units (a few seeds' worth; the
chains start from a good loading, so a hot start would only throw it away)."""


class HybridOptions(OptimizerOptions):
    """Options of ``hybrid``, the default method."""

    effort: PositiveReal = Field(
        default=1.0,
        description="multiplies the annealing moves and the local-search time limits (a "
        "convergence study runs 16)",
    )
    anneal_options: AnnealOptions = Field(
        default=HYBRID_ANNEAL,
        description="the annealing stage; its iterations are the least number of moves per "
        "chain (more on problems with many candidates: iterations_per_candidate)",
    )
    cold_t0: PositiveReal = Field(
        default=30.0,
        description="first temperature of the chains that start from the empty loading "
        "(hot enough to cross the barriers of hard limits; the rule's chains start at "
        "anneal_options.t0)",
    )
    iterations_per_candidate: PositiveReal = Field(
        default=8.0, description="annealing moves per chain per candidate seed"
    )
    search_rows: Count = Field(
        default=2000,
        description="target rows (evenly spaced) the annealing and the first local search "
        "score; the final local search scores every row",
    )
    search_margin: Fraction = Field(
        default=0.005,
        description="the thinned search aims its D90 this fraction above Rx, so that a plan "
        "fitted to the sample also covers the rows left out (the final search takes back what "
        "is not needed)",
    )
    fine_rows: Count = Field(
        default=6000,
        description="on targets of at most this many rows the final search on every row "
        "makes every move; on larger ones only flips (the thinned search placed the seeds)",
    )
    polish_chains: Count = Field(
        default=4,
        description="the local search starts from the best this many distinct chain ends "
        "(and keeps the best), on at most polish_budget / candidates of them",
    )
    polish_budget: Count = Field(
        default=1200,
        description="chain ends polished x candidates, at most (on large problems one "
        "chain end: the search costs grow with the candidates)",
    )
    kicks: NonNegativeCount = Field(
        default=20,
        description="iterated local search after the thinned search: at least this many kicks "
        "(empty a random needle in use, search again, keep it if better and no further over a "
        "hard limit; more on problems with many candidates: kicks_per_candidate), at most "
        "kick_budget / candidates of them; 0: none",
    )
    kicks_per_candidate: NonNegativeReal = Field(
        default=0.08, description="kicks per candidate seed (when more than kicks)"
    )
    kick_budget: Count = Field(
        default=20000, description="kicks x candidates, at most (fewer kicks on large problems)"
    )
    radius_mm: Length_mm = Field(
        default=8.0, description="a local-search move takes a seed to a free candidate this near"
    )
    local_search_s: PositiveReal = Field(
        default=30.0, description="time limit of each local-search phase, s (a safety net)"
    )
    robust: RobustOptions | None = Field(
        default=None,
        description="optimize the plan over sampled needle errors (docs/robustness.md); "
        "None: the nominal plan",
    )
    device_chains: Count = Field(
        default=1024,
        description="annealing chains on a GPU, at most as many as fit in half its free "
        "memory (the CPU runs anneal_options.chains)",
    )

    @field_validator("anneal_options", mode="before")
    @classmethod
    def _on_hybrid_defaults(cls, value: object) -> object:
        """A partial ``anneal_options`` mapping overrides ``HYBRID_ANNEAL``, not ``anneal``'s
        own defaults."""
        if isinstance(value, dict):
            return {**HYBRID_ANNEAL.model_dump(), **value}
        return value


def thinned(problem: PlanProblem, rows: int, margin: float) -> PlanProblem:
    """The search's approximation of ``problem``: at most ``rows`` evenly spaced target rows
    (the prescription then raised by the fraction ``margin``), and where the organ rows
    together outnumber ``rows``, every s-th row of each organ with s times the volume per row
    (so a D{v}cc counts about the same volume)."""
    n = problem.A_target.shape[0]
    changes: dict[str, Any] = {}
    if n > rows:
        changes["A_target"] = problem.A_target[sample_rows(n, rows)]
        changes["prescription_gy"] = problem.prescription_gy * (1.0 + margin)
    organ_rows = sum(a.shape[0] for a in problem.A_oar.values())
    if organ_rows > rows:
        s = math.ceil(organ_rows / rows)
        problem = problem.with_organ_rows(
            {k: slice(None, None, s) for k in problem.A_oar}, voxel_cc=problem.voxel_cc * s
        )
    return dataclasses.replace(problem, **changes)


def kick_count(options: HybridOptions, candidates: int) -> int:
    """Kicks of the iterated local search (before ``effort``): ``kicks``, or
    ``kicks_per_candidate`` x ``candidates`` where more (a larger problem has more local
    optima to leave), at most ``kick_budget`` / ``candidates`` (each kick's search costs grow
    with the candidates); 0 where ``kicks`` is 0."""
    if options.kicks == 0:
        return 0
    wanted = max(options.kicks, math.ceil(options.kicks_per_candidate * candidates))
    return min(wanted, options.kick_budget // candidates)


def robust_search(
    problem: PlanProblem,
    x: np.ndarray,
    options: RobustOptions,
    neighbours: Neighbourhood,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The exact local search on the robust objective over ``problem.scenarios``, from the
    nominal plan ``x`` (first, where ``options.search_rows``, a kicked search on that many
    target rows of each scenario); the loading and what the result's ``extra`` records."""
    rx = 1.0 + options.margin
    scenarios = [
        decisive_rows(dataclasses.replace(p, prescription_gy=p.prescription_gy * rx))
        for p in problem.scenarios
    ]
    deadline = time.perf_counter() + options.time_s
    load = RobustLoading(scenarios, x, options.measure, options.tail)
    start_f, moves, kept = load.f, 0, 0
    if options.search_rows:
        coarse = RobustLoading(
            [thinned(p, options.search_rows, 0.0) for p in scenarios],
            x,
            options.measure,
            options.tail,
        )
        moves += improve(coarse, neighbours, deadline=deadline)  # type: ignore[arg-type]
        best, kept, kick_moves = kicked(
            coarse,  # type: ignore[arg-type]
            neighbours,
            options.kicks,
            rng,
            deadline=deadline,
        )
        moves += kick_moves
        found = RobustLoading(scenarios, best.x, options.measure, options.tail)
        if found.f < load.f:  # on every row; else on from the nominal plan
            load = found
    moves += improve(load, neighbours, deadline=deadline)  # type: ignore[arg-type]
    return load.x.copy(), {
        "robust_measure": options.measure,
        "robust_scenarios": len(problem.scenarios),
        "robust_fun_nominal_plan": start_f,
        "robust_fun": load.f,
        "robust_kicks_kept": kept,
        "moves_robust": moves,
    }


@register("hybrid")
class HybridOptimizer(BaseOptimizer[HybridOptions]):
    """Rule start, annealing on a thinned target, exact local search (module docstring)."""

    Options = HybridOptions

    def run(
        self,
        problem: PlanProblem,
        rng: np.random.Generator | int | None,
        options: HybridOptions,
    ) -> OptimizeResult:
        """Plan ``problem`` (options: ``HybridOptions``); the same ``rng`` gives the same plan.

        Returns
        -------
        ``extra``: ``rule_fun`` (the rule's loading, within the caps),
        ``anneal_fun`` (the best chain, exact objective), ``search_fun`` (after the
        thinned local search), ``moves`` (local-search moves taken), ``iterations``,
        ``start`` ("search" or "rule": which plan won), and ``trace_s`` / ``trace_f``: the
        best exact objective so far against the seconds since the start (the rule, the
        annealing's best at its end, each local-search phase).
        """
        start = time.perf_counter()
        trace_s: list[float] = []
        trace_f: list[float] = []

        def record(f: float) -> None:
            trace_s.append(time.perf_counter() - start)
            trace_f.append(min(f, trace_f[-1]) if trace_f else f)

        rule_x = rule_loading(problem)
        rule_fun = float(objective(problem, rule_x))
        record(rule_fun)
        exact = decisive_rows(problem)
        search = thinned(exact, options.search_rows, options.search_margin)
        a = options.anneal_options
        iterations = math.ceil(
            options.effort
            * max(a.iterations, options.iterations_per_candidate * problem.n_candidates)
        )
        chains = max(2, a.chains)
        if array_module(search.A_target) is not np:
            chains = chains_that_fit(search, options.device_chains)
        x0 = np.zeros((chains, problem.n_candidates), dtype=bool)
        x0[: chains // 2] = rule_x
        chain_t0 = np.where(np.arange(chains) < chains // 2, a.t0, max(a.t0, options.cold_t0))
        best_X, best_f, _ = anneal_chains(
            search,
            rng,
            a.replace(iterations=iterations),
            chains=chains,
            x0=x0,
            bar=self.progress_bar(iterations, "anneal"),
            chain_t0=chain_t0,
        )
        ends_f = to_host(best_f)
        order = np.argsort(ends_f, kind="stable")
        ends = to_host(best_X).astype(bool)
        x_anneal = ends[order[0]]
        anneal_fun = float(objective(problem, x_anneal))
        record(anneal_fun)
        neighbours = Neighbourhood(problem, options.radius_mm)
        limit_s = options.local_search_s * options.effort
        polish = max(1, min(options.polish_chains, options.polish_budget // problem.n_candidates))
        starts = [ends[k] for k in order[:polish]]
        starts = [
            x for i, x in enumerate(starts) if not any(np.array_equal(x, y) for y in starts[:i])
        ]
        coarse, moves = None, 0
        for x in starts:
            load = Loading(search, x)
            moves += improve(load, neighbours, deadline=time.perf_counter() + limit_s)
            if coarse is None or load.f < coarse.f:
                coarse = load
        assert coarse is not None
        kicks = kick_count(options, problem.n_candidates)
        coarse, kept, kick_moves = kicked(
            coarse,
            neighbours,
            math.ceil(kicks * options.effort),
            np.random.default_rng(rng),
            deadline=time.perf_counter() + limit_s,
        )
        moves += kick_moves
        search_fun = float(objective(problem, coarse.x))
        record(search_fun)
        fine = Loading(exact, coarse.x)
        finish = neighbours if exact.A_target.shape[0] <= options.fine_rows else None
        moves += improve(fine, finish, deadline=time.perf_counter() + limit_s)
        fine_fun = float(objective(problem, fine.x))  # afresh: no rounding of the updates
        record(fine_fun)
        x, won, fun = (
            (fine.x, "search", fine_fun) if fine_fun <= rule_fun else (rule_x, "rule", rule_fun)
        )
        robust: dict[str, Any] = {}
        if options.robust is not None and problem.scenarios:
            x, robust = robust_search(
                problem, x, options.robust, neighbours, np.random.default_rng(rng)
            )
            moves += robust["moves_robust"]
            fun = float(objective(problem, x))
            record(fun)
        return OptimizeResult(
            x=x,
            fun=fun,
            success=True,
            status=0,
            message=f"{chains} chains x {iterations} moves on {search.A_target.shape[0]} target "
            f"rows, then {moves} local-search moves; the {won}'s plan",
            nit=iterations + moves,
            nfev=chains * (iterations + 1) + moves,
            method=self.name,
            runtime_s=time.perf_counter() - start,
            extra={
                "rule_fun": rule_fun,
                "anneal_fun": anneal_fun,
                "search_fun": search_fun,
                "moves": moves,
                "kicks": kicks,
                "kicks_kept": kept,
                "iterations": iterations,
                "start": won,
                "trace_s": trace_s,
                "trace_f": trace_f,
                **robust,
            },
        )
