"""Simulated annealing over many chains at once, with incremental dose updates.

Every chain holds a loading (``X``, (chains, m) bool) and its doses at the target rows and at
the rows of each structure a hard limit names. A move flips one candidate seed; with
probability ``p_shift`` it moves a loaded seed to the neighbouring candidate of its needle
(the previous or next candidate of the same needle in index order, so candidates are
expected to be numbered along each needle), and with probability ``p_swap`` it moves a
loaded seed to a random free candidate on a needle already in use (which lets a plan gather
its seeds on fewer needles without paying for a new needle first). The doses change by one
or two columns of the influence matrices. The exact objective of every proposed state comes
from those doses (``terms_from_doses``, the formula of ``objective.terms``) on the organ rows
that can decide a limit (``objective.decisive_rows``); acceptance is Metropolis with a
geometric temperature schedule ``t0 -> t_end``, and each chain keeps its best state.

The whole state (loadings, needle counts, doses, the random draws of each step, the trace)
lives in the array module of the influence matrices: with CuPy matrices the loop runs on the
GPU and only the best loading, the chains' best values and the trace come back at the end.
The random stream is the module's ``RandomState`` seeded from ``rng``: the same seed gives
the same plan on the same backend (NumPy and CuPy streams differ).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator
from seedopt.kernels import anneal as kanneal

from seedopt.backend import array_module, free_bytes
from seedopt.config_types import Count, Flag, Fraction, PositiveReal, Whole
from seedopt.errors import SeedoptError

from .base import OptimizeResult, PlanProblem
from .objective import (
    W_COVERAGE,
    W_HARD,
    decisive_rows,
    dose,
    hottest_points,
    objective,
    points_at_percent,
    terms_from_doses,
)
from .options import OptimizerOptions
from .registry import BaseOptimizer, register, to_host


class AnnealOptions(OptimizerOptions):
    """Options of ``anneal`` (and of the annealing stage of ``hybrid``, escalate and tune)."""

    chains: Annotated[Whole, Field(ge=1)] = Field(
        default=32, description="independent chains run together (bounded by the memory check)"
    )
    iterations: Count = Field(default=8000, description="moves per chain")
    t0: PositiveReal = Field(
        default=100.0,
        description="first temperature, objective units; 100 (about 5 % of hard-limit "
        "excess) lets chains cross the barriers whole seeds make in small problems",
    )
    t_end: PositiveReal = Field(
        default=1e-3, description="last temperature (geometric schedule from t0), at most t0"
    )
    p_shift: Fraction = Field(
        default=0.2, description="probability that a move shifts a loaded seed along its needle"
    )
    p_swap: Fraction = Field(
        default=0.2,
        description="probability that a move takes a loaded seed to a free candidate of a "
        "needle in use; p_shift + p_swap <= 1 (the rest are single flips)",
    )
    use_kernels: Flag | None = Field(
        default=None,
        description="false runs the pure-array reference step on the GPU too, instead of the "
        "fused kernels (for tests)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AnnealOptions:
        if self.t_end > self.t0:
            raise ValueError(f"t_end ({self.t_end:g}) must not exceed t0 ({self.t0:g})")
        if self.p_shift + self.p_swap > 1:
            raise ValueError(
                f"p_shift + p_swap ({self.p_shift:g} + {self.p_swap:g}) must be at most 1"
            )
        return self


def needle_neighbours(seed_needle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Previous and next candidate of the same needle for each candidate (-1: none)."""
    needle = np.asarray(seed_needle)
    m = needle.size
    order = np.lexsort((np.arange(m), needle))
    prev, nxt = np.full(m, -1), np.full(m, -1)
    same = needle[order[1:]] == needle[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    nxt[order[:-1][same]] = order[1:][same]
    return prev, nxt


def state_nbytes(problem: PlanProblem, chains: int) -> int:
    """Working memory of ``anneal`` on ``problem`` (bytes; after ``decisive_rows``): a
    transposed copy of the matrices, and per chain about eight float64 dose vectors (current,
    proposed, the partition's copy and temporaries), four (m,) loading arrays and the fused
    step's histograms and buffers."""
    rows = problem.A_target.shape[0] + sum(a.shape[0] for a in problem.A_oar.values())
    matrix = problem.A_target.nbytes + sum(a.nbytes for a in problem.A_oar.values())
    fused = kanneal.buffer_nbytes(chains, 1 + len(problem.hard), rows)
    return int(matrix + fused + chains * (8 * 8 * rows + 4 * 8 * problem.n_candidates))


def chains_that_fit(problem: PlanProblem, wanted: int, free: int | None = None) -> int:
    """The most chains, up to ``wanted`` and at least 2, whose annealing state
    (``state_nbytes``) fits in half of ``free`` bytes (default: the free memory of the
    matrices' device)."""
    if free is None:
        free = free_bytes(array_module(problem.A_target))
    fixed = state_nbytes(problem, 0)
    per_chain = max(1, state_nbytes(problem, 1) - fixed)
    return int(max(2, min(wanted, (free // 2 - fixed) // per_chain)))


def fused_spec(p: PlanProblem, chains: int, options: AnnealOptions) -> kanneal.StepSpec | None:
    """The fused step's view of ``p`` (already ``decisive_rows``) for ``chains`` chains, or
    None where it does not apply: a Dmean limit (its mean is not a k-th hottest dose), an
    EQD2 limit (the kernels tally physical dose), or more limits than the kernels hold
    tallies for."""
    if any(lim.metric == "Dmean" for lim in p.hard) or not p.physical_only:
        return None
    structures = sorted({lim.structure for lim in p.hard})
    sizes = [p.A_target.shape[0]] + [p.A_oar[name].shape[0] for name in structures]
    rx = np.broadcast_to(np.asarray(to_host(p.prescription_gy), dtype=np.float64), (chains,))
    thr = [rx, 1.5 * rx, 2.0 * rx]
    t_seg, t_gt = [0, 0, 0], [0, 0, 0]
    q_seg, q_tally, q_above = [0], [0], [0]
    q_k = [points_at_percent(sizes[0], 90.0)]
    lim_max, lim_floor = [], []
    s = p.soft
    for lim in p.hard:
        seg = 1 + structures.index(lim.structure)
        t_seg.append(seg)
        t_gt.append(1)
        thr.append(np.full(chains, s.lowest_priced_gy(lim.max_gy)))
        q_seg.append(seg)
        q_tally.append(len(t_seg) - 1)
        q_above.append(1)
        q_k.append(hottest_points(lim, sizes[seg], p.voxel_cc))
        lim_max.append(lim.max_gy)
        lim_floor.append(s.organ_floor_gy(lim.max_gy))
    if len(t_seg) > kanneal.MAX_TALLY:
        return None
    return kanneal.StepSpec(
        seg_start=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        t_seg=np.array(t_seg),
        t_gt=np.array(t_gt),
        thr=np.stack(thr, axis=1),
        q_seg=np.array(q_seg),
        q_tally=np.array(q_tally),
        q_above=np.array(q_above),
        q_k=np.array(q_k),
        lim_q=np.arange(1, len(q_k)),
        lim_max=np.array(lim_max, dtype=np.float64),
        lim_floor=np.array(lim_floor, dtype=np.float64),
        weights=np.array(
            [
                W_COVERAGE,
                W_HARD,
                s.v150_per_pct,
                s.v200_per_pct,
                s.per_seed,
                s.per_needle,
                s.organ_per_pct,
            ],
            dtype=np.float64,
        ),
        rx=np.ascontiguousarray(rx),
        cap_seeds=math.inf if p.max_seeds is None else float(p.max_seeds),
        cap_needles=math.inf if p.max_needles is None else float(p.max_needles),
        p_shift=options.p_shift,
        p_swap=options.p_swap,
    )


def anneal_chains(
    p: PlanProblem,
    rng: np.random.Generator | int | None,
    options: AnnealOptions,
    *,
    chains: int,
    x0: Any,
    bar: Any,
    chain_t0: Any = None,
    launch: kanneal.Launcher | None = None,
) -> tuple[Any, Any, Any]:
    """The annealing loop of ``anneal`` on ``p`` (already ``decisive_rows``) with ``chains``
    chains (``options.chains`` is not read: a sweep runs levels x chains per level); ``p``'s
    prescription may be one per chain (a sweep). Returns each chain's best loading
    ((chains, m) bool) and objective ((chains,)) and the trace, in the matrices' module.

    On the GPU each step is the fused kernels of ``kernels.anneal`` (``launch``: how they
    run; a test passes a host launcher with NumPy arrays), unless ``options.use_kernels`` is
    False or the problem has a Dmean limit: then the pure-array reference step, whose draws
    and trajectories the kernels reproduce bit for bit. ``x0``: one start loading (m,) for
    every chain or one per chain (chains, m); ``chain_t0``: a first temperature per chain
    ((chains,); default ``options.t0`` for all)."""
    iterations, t0, t_end = options.iterations, options.t0, options.t_end
    xp = array_module(p.A_target)
    m = p.n_candidates
    need, free = state_nbytes(p, chains), free_bytes(xp)
    if need > free:
        raise SeedoptError(
            f"annealing {chains} chains needs about {need / 2**30:.2f} GiB but "
            f"{free / 2**30:.2f} GiB is free on the {'CPU' if xp is np else 'GPU'}; "
            "use fewer chains (optimizer.options.chains), fewer points or another device"
        )
    # one integer from the caller's stream seeds the array module's generator, so the
    # whole state (loadings, counts, doses, random draws) stays on the device
    rs = xp.random.RandomState(int(np.random.default_rng(rng).integers(2**32)))
    needle_h = np.asarray(to_host(p.seed_needle), dtype=np.int64)
    needle = xp.asarray(needle_h)
    prev, next_ = (xp.asarray(a) for a in needle_neighbours(needle_h))

    cols_t = xp.ascontiguousarray(p.A_target.T)  # (m, n_t): one row per candidate
    structures = sorted({lim.structure for lim in p.hard})
    cols_o = {s: xp.ascontiguousarray(p.A_oar[s].T) for s in structures}

    start = np.zeros((chains, m), dtype=bool) if x0 is None else np.asarray(to_host(x0), bool)
    if start.shape == (m,):
        start = np.repeat(start[None], chains, axis=0)
    if start.shape != (chains, m):
        raise ValueError(f"x0 has shape {start.shape}; expected ({m},) or ({chains}, {m})")
    X = xp.asarray(start)
    # doses in float64 for the incremental updates (the matrix stays in its storage
    # precision: float32 or float16)
    d_t = dose(p.A_target, X).astype(xp.float64)
    d_o = {s: dose(p.A_oar[s], X).astype(xp.float64) for s in structures}
    count = xp.asarray(
        np.stack([np.bincount(needle_h[row], minlength=p.n_needles) for row in start])
    )
    n_seeds = X.sum(axis=1).astype(xp.int64)
    n_needles = (count > 0).sum(axis=1).astype(xp.int64)
    f = terms_from_doses(p, d_t, d_o, n_seeds, n_needles).total
    # a geometric schedule from each chain's first temperature to t_end: (iterations, chains)
    first = np.broadcast_to(np.asarray(t0 if chain_t0 is None else chain_t0, float), (chains,))
    frac = np.arange(iterations)[:, None] / max(iterations - 1, 1)
    temps = xp.asarray(first[None] * (t_end / first[None]) ** frac)

    if launch is None and xp is not np and options.use_kernels is not False:
        launch = kanneal.cuda_launcher
    spec = fused_spec(p, chains, options) if launch is not None else None
    if spec is not None:
        fused = kanneal.FusedStep(
            spec,
            xp.concatenate([cols_t, *(cols_o[s] for s in structures)], axis=1),
            xp.concatenate([d_t, *(d_o[s] for s in structures)], axis=1),
            X,
            count,
            n_seeds,
            n_needles,
            f,
            needle,
            prev,
            next_,
            iterations,
            launch,
        )
        for it, u in _draws(rs, iterations, chains, bar):
            fused.step(u, temps[it], it)
        bar.close()
        return fused.best_X, fused.best_f, fused.trace()

    best_f, best_X = f.copy(), X.copy()
    trace = xp.empty(iterations + 1)
    trace[0] = best_f.min()
    rows = xp.arange(chains)
    cap_seeds = math.inf if p.max_seeds is None else p.max_seeds
    cap_needles = math.inf if p.max_needles is None else p.max_needles
    for it, u in _draws(rs, iterations, chains, bar):
        add, rem, new_seeds, new_needles = kanneal.move_reference(
            u,
            X,
            count,
            needle,
            prev,
            next_,
            n_seeds,
            n_needles,
            options.p_shift,
            options.p_swap,
        )
        new_t = kanneal.propose_reference(d_t, cols_t, add, rem)
        new_o = {s: kanneal.propose_reference(d_o[s], cols_o[s], add, rem) for s in structures}
        new_f = terms_from_doses(p, new_t, new_o, new_seeds, new_needles, with_d90=False).total

        within = ((new_seeds <= cap_seeds) | (new_seeds <= n_seeds)) & (
            (new_needles <= cap_needles) | (new_needles <= n_needles)
        )
        delta = new_f - f
        boltzmann = xp.exp(xp.minimum(0.0, -delta / temps[it]))
        acc = within & ((delta <= 0) | (u[:, 3] < boltzmann))

        # each chain touches its own (row, column) pairs: no index repeats in a scatter
        w_rem, w_add = rem >= 0, add >= 0
        i_rem, i_add = xp.maximum(rem, 0), xp.maximum(add, 0)
        nd_rem, nd_add = needle[i_rem], needle[i_add]
        took_rem, took_add = acc & w_rem, acc & w_add
        X[rows, i_rem] = X[rows, i_rem] & ~took_rem
        count[rows, nd_rem] = count[rows, nd_rem] - took_rem
        X[rows, i_add] = X[rows, i_add] | took_add
        count[rows, nd_add] = count[rows, nd_add] + took_add
        n_seeds = xp.where(acc, new_seeds, n_seeds)
        n_needles = xp.where(acc, new_needles, n_needles)
        d_t = xp.where(acc[:, None], new_t, d_t)
        d_o = {s: xp.where(acc[:, None], new_o[s], d_o[s]) for s in structures}
        f = xp.where(acc, new_f, f)

        better = f < best_f
        best_f = xp.where(better, f, best_f)
        best_X = xp.where(better[:, None], X, best_X)
        trace[it + 1] = best_f.min()

    bar.close()
    return best_X, best_f, trace


def _draws(rs: Any, iterations: int, chains: int, bar: Any) -> Any:
    """(step, its (chains, 6) uniforms), the uniforms of ``kanneal.DRAW_BLOCK`` steps drawn in
    one call; the progress bar advanced every 100 steps."""
    for first in range(0, iterations, kanneal.DRAW_BLOCK):
        block = rs.random_sample((min(kanneal.DRAW_BLOCK, iterations - first), chains, 6))
        for k in range(block.shape[0]):
            it = first + k
            if it % 100 == 0:
                bar.update(min(100, iterations - it))
            yield it, block[k]


@register("anneal")
class SimulatedAnnealingOptimizer(BaseOptimizer[AnnealOptions]):
    """Vectorised multi-chain simulated annealing on the exact objective."""

    Options = AnnealOptions

    def solve(
        self,
        problem: PlanProblem,
        rng: np.random.Generator | int | None = None,
        options: AnnealOptions | dict[str, Any] | None = None,
        *,
        x0: Any = None,
        **fields: Any,
    ) -> OptimizeResult:
        """``BaseOptimizer.solve``, with ``x0``: the (m,) start loading of every chain
        (default the empty loading)."""
        return self.run(problem, rng, self.parse_options(options, **fields), x0=x0)

    def run(
        self,
        problem: PlanProblem,
        rng: np.random.Generator | int | None,
        options: AnnealOptions,
        x0: Any = None,
    ) -> OptimizeResult:
        """Anneal ``options.chains`` chains for ``options.iterations`` steps from ``x0``;
        return the best loading seen (options: ``AnnealOptions``).

        Returns
        -------
        ``extra["trace"]``: the best objective over all chains after each iteration
        (index 0: the start), never rising; ``extra["chain_best"]``: each chain's best.
        Caps (``max_seeds``, ``max_needles``) are kept: a move that would exceed one is
        rejected unless it does not increase that count.
        """
        start = time.perf_counter()
        chains, iterations = options.chains, options.iterations
        best_X, best_f, trace = anneal_chains(
            decisive_rows(problem),
            rng,
            options,
            chains=chains,
            x0=x0,
            bar=self.progress_bar(iterations, "anneal" if x0 is None else "anneal (warm start)"),
        )
        xp = array_module(best_f)
        chain = int(xp.argmin(best_f))
        x = to_host(best_X[chain]).astype(bool)
        return OptimizeResult(
            x=x,
            fun=float(objective(problem, x)),
            success=True,
            status=0,
            message=f"{iterations} iterations of {chains} chains, best of chain {chain}",
            nit=iterations,
            nfev=chains * (iterations + 1),
            method=self.name,
            runtime_s=time.perf_counter() - start,
            extra={
                "trace": to_host(trace),
                "chain_best": to_host(best_f),
                "t0": options.t0,
                "t_end": options.t_end,
            },
        )

    def sweep(
        self,
        problem: PlanProblem,
        prescriptions_gy: Any,
        rng: np.random.Generator | int | None = None,
        options: AnnealOptions | dict[str, Any] | None = None,
        *,
        chains_per_level: int = 4,
        **fields: Any,
    ) -> list[OptimizeResult]:
        """Plans of one case at many prescriptions (a dose-escalation sweep) in one run.

        Each level gets ``chains_per_level`` chains (``options.chains`` is not used) scored
        against its own prescription (Gy); every other goal is shared, and every step moves
        all chains of all levels at once, so a sweep costs one annealing run of
        ``levels x chains_per_level`` chains. Returns, per level in the order given, the best
        chain of its group as an ``OptimizeResult`` whose ``fun`` is the objective at that
        level's prescription.
        """
        start = time.perf_counter()
        opts = self.parse_options(options, **fields)
        iterations = opts.iterations
        levels = np.asarray(prescriptions_gy, dtype=np.float64).ravel()
        if levels.size == 0 or not np.all(np.isfinite(levels) & (levels > 0)):
            raise SeedoptError("a sweep needs one or more positive, finite prescriptions (Gy)")
        if isinstance(chains_per_level, bool) or not (
            isinstance(chains_per_level, int | np.integer) and chains_per_level >= 1
        ):
            raise SeedoptError(
                f"chains_per_level must be a whole number >= 1, not {chains_per_level!r}"
            )
        p = decisive_rows(problem)
        xp = array_module(p.A_target)
        per_chain = xp.asarray(np.repeat(levels, chains_per_level))
        best_X, best_f, _ = anneal_chains(
            dataclasses.replace(p, prescription_gy=per_chain),
            rng,
            opts,
            chains=per_chain.size,
            x0=None,
            bar=self.progress_bar(iterations, f"sweep of {levels.size} prescriptions"),
        )
        group_best = to_host(best_f).reshape(levels.size, chains_per_level)
        X = to_host(best_X).astype(bool)
        seconds = time.perf_counter() - start
        out = []
        for k, rx in enumerate(levels):
            chain = k * chains_per_level + int(np.argmin(group_best[k]))
            at_level = dataclasses.replace(problem, prescription_gy=float(rx))
            out.append(
                OptimizeResult(
                    x=X[chain],
                    fun=float(objective(at_level, X[chain])),
                    success=True,
                    status=0,
                    message=f"level {k} ({rx:g} Gy) of a sweep of {levels.size}: best of "
                    f"{chains_per_level} chains x {iterations} iterations",
                    nit=iterations,
                    nfev=chains_per_level * (iterations + 1),
                    method=self.name,
                    runtime_s=seconds / levels.size,
                    extra={"prescription_gy": float(rx), "sweep_runtime_s": seconds},
                )
            )
        return out
