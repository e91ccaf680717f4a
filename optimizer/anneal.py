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
from seedopt.kernels.anneal import step_functions

from seedopt.backend import array_module, free_bytes
from seedopt.config_types import Count, Flag, Fraction, PositiveReal, Whole
from seedopt.errors import SeedoptError

from .base import OptimizeResult, PlanProblem
from .objective import decisive_rows, dose, objective, terms_from_doses
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
        description="false runs the pure-array dose updates on the GPU too (for tests)",
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
    proposed, the partition's copy and temporaries) and four (m,) loading arrays."""
    rows = problem.A_target.shape[0] + sum(a.shape[0] for a in problem.A_oar.values())
    matrix = problem.A_target.nbytes + sum(a.nbytes for a in problem.A_oar.values())
    return int(matrix + chains * (8 * 8 * rows + 4 * 8 * problem.n_candidates))


def anneal_chains(
    p: PlanProblem,
    rng: np.random.Generator | int | None,
    options: AnnealOptions,
    *,
    chains: int,
    x0: Any,
    bar: Any,
    chain_t0: Any = None,
) -> tuple[Any, Any, Any]:
    """The annealing loop of ``anneal`` on ``p`` (already ``decisive_rows``) with ``chains``
    chains (``options.chains`` is not read: a sweep runs levels x chains per level); ``p``'s
    prescription may be one per chain (a sweep). Returns each chain's best loading
    ((chains, m) bool) and objective ((chains,)) and the trace, in the matrices' module.
    The dose updates are the CUDA kernels of ``kernels.anneal`` on the GPU unless
    ``options.use_kernels`` is False, their pure-array references otherwise. ``x0``: one
    start loading (m,) for every chain or one per chain (chains, m); ``chain_t0``: a first
    temperature per chain ((chains,); default ``options.t0`` for all)."""
    iterations, t0, t_end = options.iterations, options.t0, options.t_end
    p_shift, p_swap = options.p_shift, options.p_swap
    xp = array_module(p.A_target)
    propose, accept = step_functions(xp, options.use_kernels)
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
    cap_seeds = math.inf if p.max_seeds is None else p.max_seeds
    cap_needles = math.inf if p.max_needles is None else p.max_needles

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
    n_seeds = X.sum(axis=1)
    n_needles = (count > 0).sum(axis=1)
    f = terms_from_doses(p, d_t, d_o, n_seeds, n_needles).total
    best_f, best_X = f.copy(), X.copy()
    trace = xp.empty(iterations + 1)
    trace[0] = best_f.min()
    # a geometric schedule from each chain's first temperature to t_end: (iterations, chains)
    first = np.broadcast_to(np.asarray(t0 if chain_t0 is None else chain_t0, float), (chains,))
    frac = np.arange(iterations)[:, None] / max(iterations - 1, 1)
    temps = xp.asarray(first[None] * (t_end / first[None]) ** frac)
    rows = xp.arange(chains)

    for it in range(iterations):
        if it % 100 == 0:
            bar.update(min(100, iterations - it))
        u = rs.random_sample((chains, 2 * m + 4))  # every draw of this step at once
        flip = xp.minimum((u[:, 0] * m).astype(xp.int64), m - 1)
        kind, forward, accept_u = u[:, 1], u[:, 2] < 0.5, u[:, 3]
        # a random loaded seed (any seed if none is loaded)
        pick = xp.where(X, u[:, 4 : 4 + m], -1.0).argmax(axis=1)
        # a random free candidate on a used needle
        free_keys = xp.where(X | (count[:, needle] == 0), -1.0, u[:, 4 + m :])
        gather = free_keys.argmax(axis=1)
        swap = (kind >= p_shift) & (kind < p_shift + p_swap)
        dest = xp.where(
            swap,
            xp.where(free_keys[rows, gather] >= 0, gather, -1),
            xp.where(forward, next_[pick], prev[pick]),
        )
        free_dest = (dest >= 0) & ~X[rows, xp.maximum(dest, 0)]
        shift = (kind < p_shift + p_swap) & X.any(axis=1) & free_dest
        flipped_on = X[rows, flip]
        rem = xp.where(shift, pick, xp.where(flipped_on, flip, -1))
        add = xp.where(shift, dest, xp.where(flipped_on, -1, flip))
        w_rem, w_add = rem >= 0, add >= 0
        i_rem, i_add = xp.maximum(rem, 0), xp.maximum(add, 0)

        new_t = propose(d_t, cols_t, add, rem)
        new_o = {s: propose(d_o[s], cols_o[s], add, rem) for s in structures}
        nd_rem, nd_add = needle[i_rem], needle[i_add]
        frees = w_rem & (count[rows, nd_rem] == 1) & ~(w_add & (nd_add == nd_rem))
        opens = w_add & (count[rows, nd_add] == 0)
        new_seeds = n_seeds + w_add - w_rem.astype(xp.int64)
        new_needles = n_needles + opens - frees.astype(xp.int64)
        new_f = terms_from_doses(p, new_t, new_o, new_seeds, new_needles, with_d90=False).total

        within = ((new_seeds <= cap_seeds) | (new_seeds <= n_seeds)) & (
            (new_needles <= cap_needles) | (new_needles <= n_needles)
        )
        delta = new_f - f
        boltzmann = xp.exp(xp.minimum(0.0, -delta / temps[it]))
        acc = within & ((delta <= 0) | (accept_u < boltzmann))

        # each chain touches its own (row, column) pairs: no index repeats in a scatter
        took_rem, took_add = acc & w_rem, acc & w_add
        X[rows, i_rem] = X[rows, i_rem] & ~took_rem
        count[rows, nd_rem] = count[rows, nd_rem] - took_rem
        X[rows, i_add] = X[rows, i_add] | took_add
        count[rows, nd_add] = count[rows, nd_add] + took_add
        n_seeds = xp.where(acc, new_seeds, n_seeds)
        n_needles = xp.where(acc, new_needles, n_needles)
        d_t = accept(d_t, new_t, acc)
        d_o = {s: accept(d_o[s], new_o[s], acc) for s in structures}
        f = xp.where(acc, new_f, f)

        better = f < best_f
        best_f = xp.where(better, f, best_f)
        best_X = xp.where(better[:, None], X, best_X)
        trace[it + 1] = best_f.min()

    bar.close()
    return best_X, best_f, trace


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
