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
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from seedopt.backend import array_module

from .base import OptimizeResult, PlanProblem
from .objective import decisive_rows, objective, terms_from_doses
from .registry import BaseOptimizer, register, to_host


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


@register("anneal")
class SimulatedAnnealingOptimizer(BaseOptimizer):
    """Vectorised multi-chain simulated annealing on the exact objective."""

    def solve(
        self,
        problem: PlanProblem,
        rng: np.random.Generator | int | None = None,
        *,
        chains: int = 32,
        iterations: int = 8000,
        t0: float = 100.0,
        t_end: float = 1e-3,
        p_shift: float = 0.2,
        p_swap: float = 0.2,
        x0: Any = None,
    ) -> OptimizeResult:
        """Anneal ``chains`` chains for ``iterations`` steps; return the best loading seen.

        Parameters
        ----------
        chains : independent chains run together.
        iterations : moves per chain.
        t0, t_end : first and last temperature, objective units (geometric in between). The
            default t0 = 100 (about 5 % of hard-limit excess) lets chains cross the barriers
            that whole seeds make in small problems and leave a poor warm start.
        p_shift : probability that a move shifts a loaded seed along its needle.
        p_swap : probability that a move takes a loaded seed to a free candidate of a needle
            in use.
        x0 : (m,) start loading of every chain; default the empty loading.

        Returns
        -------
        ``extra["trace"]``: the best objective over all chains after each iteration
        (index 0: the start), never rising; ``extra["chain_best"]``: each chain's best.
        Caps (``max_seeds``, ``max_needles``) are kept: a move that would exceed one is
        rejected unless it does not increase that count.
        """
        start = time.perf_counter()
        gen = np.random.default_rng(rng)
        p = decisive_rows(problem)
        xp = array_module(p.A_target)
        m = p.n_candidates
        needle = np.asarray(to_host(p.seed_needle), dtype=np.int64)
        prev, next_ = needle_neighbours(needle)
        cap_seeds = math.inf if p.max_seeds is None else p.max_seeds
        cap_needles = math.inf if p.max_needles is None else p.max_needles

        cols_t = xp.ascontiguousarray(p.A_target.T)  # (m, n_t): one row per candidate
        structures = sorted({lim.structure for lim in p.hard})
        cols_o = {s: xp.ascontiguousarray(p.A_oar[s].T) for s in structures}

        # loadings and needle counts live on the host; doses and objective values on xp
        start_x = np.zeros(m, dtype=bool) if x0 is None else np.asarray(to_host(x0), bool)
        if start_x.shape != (m,):
            raise ValueError(f"x0 has shape {start_x.shape}; expected ({m},)")
        X = np.repeat(start_x[None], chains, axis=0)
        Xf = xp.asarray(X, dtype=xp.float64)
        d_t = Xf @ cols_t.astype(xp.float64)
        d_o = {s: Xf @ cols_o[s].astype(xp.float64) for s in structures}
        count = np.repeat(np.bincount(needle[start_x], minlength=p.n_needles)[None], chains, 0)
        n_seeds = X.sum(axis=1)
        n_needles = (count > 0).sum(axis=1)
        f = terms_from_doses(p, d_t, d_o, xp.asarray(n_seeds), xp.asarray(n_needles)).total
        best_f, best_X = f.copy(), X.copy()
        trace = np.empty(iterations + 1)
        trace[0] = float(best_f.min())
        temps = t0 * (t_end / t0) ** (np.arange(iterations) / max(iterations - 1, 1))
        rows = np.arange(chains)

        bar = self.progress_bar(iterations, "anneal" if x0 is None else "anneal (warm start)")
        for it in range(iterations):
            if it % 100 == 0:
                bar.update(min(100, iterations - it))
            flip = gen.integers(m, size=chains)
            kind = gen.random(chains)
            keys = gen.random((chains, m))
            free_keys = gen.random((chains, m))
            forward = gen.random(chains) < 0.5
            accept_u = xp.asarray(gen.random(chains))

            keys[~X] = -1.0
            pick = keys.argmax(axis=1)  # a random loaded seed (any seed if none is loaded)
            free_keys[X | (count[:, needle] == 0)] = -1.0
            gather = free_keys.argmax(axis=1)  # a random free candidate on a used needle
            swap = (kind >= p_shift) & (kind < p_shift + p_swap)
            dest = np.where(
                swap,
                np.where(free_keys[rows, gather] >= 0, gather, -1),
                np.where(forward, next_[pick], prev[pick]),
            )
            free_dest = (dest >= 0) & ~X[rows, np.maximum(dest, 0)]
            shift = (kind < p_shift + p_swap) & X.any(axis=1) & free_dest
            flipped_on = X[rows, flip]
            rem = np.where(shift, pick, np.where(flipped_on, flip, -1))
            add = np.where(shift, dest, np.where(flipped_on, -1, flip))
            w_rem, w_add = rem >= 0, add >= 0
            i_rem, i_add = np.maximum(rem, 0), np.maximum(add, 0)

            sign_rem = xp.asarray(w_rem[:, None], dtype=xp.float64)
            sign_add = xp.asarray(w_add[:, None], dtype=xp.float64)
            g_rem, g_add = xp.asarray(i_rem), xp.asarray(i_add)
            new_t = d_t + sign_add * cols_t[g_add] - sign_rem * cols_t[g_rem]
            new_o = {
                s: d_o[s] + sign_add * cols_o[s][g_add] - sign_rem * cols_o[s][g_rem]
                for s in structures
            }
            nd_rem, nd_add = needle[i_rem], needle[i_add]
            frees = w_rem & (count[rows, nd_rem] == 1) & ~(w_add & (nd_add == nd_rem))
            opens = w_add & (count[rows, nd_add] == 0)
            new_seeds = n_seeds + w_add - w_rem.astype(np.int64)
            new_needles = n_needles + opens - frees.astype(np.int64)
            new_f = terms_from_doses(
                p, new_t, new_o, xp.asarray(new_seeds), xp.asarray(new_needles)
            ).total

            within = ((new_seeds <= cap_seeds) | (new_seeds <= n_seeds)) & (
                (new_needles <= cap_needles) | (new_needles <= n_needles)
            )
            delta = new_f - f
            boltzmann = xp.exp(xp.minimum(0.0, -delta / temps[it]))
            acc = within & to_host((delta <= 0) | (accept_u < boltzmann))

            r = np.flatnonzero(acc & w_rem)
            X[r, i_rem[r]] = False
            count[r, nd_rem[r]] -= 1
            a = np.flatnonzero(acc & w_add)
            X[a, i_add[a]] = True
            count[a, nd_add[a]] += 1
            n_seeds = np.where(acc, new_seeds, n_seeds)
            n_needles = np.where(acc, new_needles, n_needles)
            acc_x = xp.asarray(acc)
            d_t = xp.where(acc_x[:, None], new_t, d_t)
            d_o = {s: xp.where(acc_x[:, None], new_o[s], d_o[s]) for s in structures}
            f = xp.where(acc_x, new_f, f)

            better = f < best_f
            best_f = xp.where(better, f, best_f)
            improved = to_host(better)
            best_X[improved] = X[improved]
            trace[it + 1] = float(best_f.min())

        bar.close()
        chain = int(xp.argmin(best_f))
        x = best_X[chain].copy()
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
            extra={"trace": trace, "chain_best": to_host(best_f), "t0": t0, "t_end": t_end},
        )
