"""Best-improvement local search on the exact objective: single flips, seed moves to nearby
candidates, and needle closings.

A ``Loading`` holds one loading with its doses at every row of the problem (target rows and
the organ rows of its hard limits) and its needle counts, so the objective of any move is
exact: the doses of a move are the current doses plus the columns it adds minus the columns
it removes, scored by ``terms_from_doses`` (the formula of ``objective``). Moves:

* flip: load or unload one candidate;
* move: take a loaded seed to a free candidate within ``radius_mm`` of it (any needle) or to a
  free candidate of a needle already in use;
* close: move every seed of a needle holding at most ``close_max_seeds`` to free candidates
  of the other needles in use, one after the other, each to the best place for it; the
  closing is scored as one move (its exact objective), so it is taken only if the plan with
  one needle fewer is better.

``kicked`` iterates the search (iterated local search): it empties a random needle in use,
searches again, and keeps the result when it is better without a larger hard-limit excess,
to leave a local optimum.

``improve`` takes improving moves (ranked in float32, each re-scored exactly before it is
taken) until none improves or a deadline passes. Seeds a ``Loading`` holds ``frozen`` (seeds
already deposited, ``seedopt.replan``) are never unloaded, moved or closed away.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from seedopt.backend import array_module

from .base import PlanProblem
from .objective import dose, terms_from_doses
from .registry import to_host

CHUNK_ENTRIES = 1 << 21
"""Dose entries (moves x rows) scored at a time."""


@dataclass
class Move:
    """Seeds removed and added (candidate indices) and the objective after the move."""

    remove: tuple[int, ...]
    add: tuple[int, ...]
    f: float


NO_MOVE = Move((), (), math.inf)


def pad(moves: list[tuple[int, ...]]) -> np.ndarray:
    """Candidate lists as one (k, width) array, -1 where a list is shorter."""
    width = max([1, *(len(t) for t in moves)])
    out = np.full((len(moves), width), -1, dtype=np.int64)
    for i, t in enumerate(moves):
        out[i, : len(t)] = t
    return out


class Loading:
    """One loading of ``problem`` with its exact doses, needle counts and objective.

    ``problem`` should already be ``decisive_rows``; its matrices may be NumPy or CuPy.
    ``frozen``: (m,) bool, loaded candidates no move may unload (default none)."""

    def __init__(self, problem: PlanProblem, x: Any, frozen: Any = None) -> None:
        p = problem
        self.problem = p
        self.xp = xp = array_module(p.A_target)
        self.m = p.n_candidates
        self.needle = np.asarray(to_host(p.seed_needle), dtype=np.int64)
        self.structures = sorted({lim.structure for lim in p.hard})
        zero = xp.zeros((1, p.A_target.shape[0]), dtype=p.A_target.dtype)
        # one row per candidate, and a zero row last: index -1 of a padded move adds nothing
        self.cols_t = xp.concatenate([p.A_target.T, zero])
        self.cols_o = {
            s: xp.concatenate([p.A_oar[s].T, xp.zeros((1, p.A_oar[s].shape[0]), p.A_oar[s].dtype)])
            for s in self.structures
        }
        self.cap_seeds = math.inf if p.max_seeds is None else p.max_seeds
        self.cap_needles = math.inf if p.max_needles is None else p.max_needles
        self.x = np.asarray(to_host(x), dtype=bool).copy()
        self.frozen = np.zeros(self.m, bool) if frozen is None else np.asarray(frozen, bool)
        if self.frozen.shape != (self.m,) or (self.frozen & ~self.x).any():
            raise ValueError("frozen must be (m,) bool and every frozen candidate loaded")
        x_dev = xp.asarray(self.x)
        self.d_t = dose(p.A_target, x_dev).astype(xp.float64)
        self.d_o = {s: dose(p.A_oar[s], x_dev).astype(xp.float64) for s in self.structures}
        self.count = np.bincount(self.needle[self.x], minlength=p.n_needles)
        self.f = float(self.score(pad([()]), pad([()]))[0])

    @property
    def n_seeds(self) -> int:
        return int(self.x.sum())

    @property
    def n_needles(self) -> int:
        return int((self.count > 0).sum())

    def counts_after(self, rem: np.ndarray, add: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Seeds and needles in use after each move ((k,) each)."""
        k = rem.shape[0]
        seeds = self.n_seeds + (add >= 0).sum(axis=1) - (rem >= 0).sum(axis=1)
        change = np.zeros((k, self.count.size), dtype=np.int64)
        for cols, s in ((rem, -1), (add, 1)):
            rows, slot = np.nonzero(cols >= 0)
            np.add.at(change, (rows, self.needle[cols[rows, slot]]), s)
        needles = ((self.count[None] + change) > 0).sum(axis=1)
        return seeds, needles

    def score(self, rem: np.ndarray, add: np.ndarray, exact: bool = True) -> np.ndarray:
        """Objective after each move k (unload ``rem[k]``, load ``add[k]``; (k, w) candidate
        indices, -1 for none): (k,) float64. A move that takes the seed or needle count above
        a cap without lowering it scores +inf. ``exact=False`` sums the doses in float32
        (half the memory traffic; a point within float32 rounding of a threshold may count
        on the other side): for ranking moves, not for taking one."""
        xp, k = self.xp, rem.shape[0]
        dtype = xp.float64 if exact else xp.float32
        d_t = self.d_t.astype(dtype)
        d_o = {s: d.astype(dtype) for s, d in self.d_o.items()}
        seeds, needles = self.counts_after(rem, add)
        out = np.empty(k)
        rows = self.d_t.shape[0] + sum(d.shape[0] for d in self.d_o.values())
        width = rem.shape[1] + add.shape[1]
        step = max(1, CHUNK_ENTRIES // max(1, rows * width))
        for lo in range(0, k, step):
            sl = slice(lo, min(k, lo + step))
            r, a = xp.asarray(rem[sl]), xp.asarray(add[sl])

            def moved(d: Any, cols: Any, r: Any = r, a: Any = a) -> Any:
                out = cols[a[:, 0]].astype(d.dtype, copy=False)  # the same sums, in place
                out += d[None]
                for w in range(1, a.shape[1]):
                    out += cols[a[:, w]]
                for w in range(r.shape[1]):
                    out -= cols[r[:, w]]
                return out

            new_t = moved(d_t, self.cols_t)
            new_o = {s: moved(d_o[s], self.cols_o[s]) for s in self.structures}
            total = terms_from_doses(
                self.problem,
                new_t,
                new_o,
                xp.asarray(seeds[sl]),
                xp.asarray(needles[sl]),
                with_d90=False,
            ).total
            out[sl] = to_host(total)
        over = ((seeds > self.cap_seeds) & (seeds > self.n_seeds)) | (
            (needles > self.cap_needles) & (needles > self.n_needles)
        )
        out[over] = np.inf
        return out

    def reloaded(self, x: Any) -> Loading:
        """A loading ``x`` of the same problem, with the same frozen seeds."""
        return Loading(self.problem, x, frozen=self.frozen)

    def hard_excess_pct(self) -> float:
        """The loading's hard-limit excess, summed over the limits (% of each limit)."""
        xp = self.xp
        t = terms_from_doses(
            self.problem,
            self.d_t[None],
            {s: d[None] for s, d in self.d_o.items()},
            xp.asarray([self.n_seeds]),
            xp.asarray([self.n_needles]),
            with_d90=False,
        )
        return float(to_host(t.hard_excess_pct)[0])

    def apply(self, move: Move) -> None:
        """Take ``move`` (its doses, counts and objective)."""
        for j, s in [(j, -1.0) for j in move.remove] + [(j, 1.0) for j in move.add]:
            self.d_t = self.d_t + s * self.cols_t[j]
            self.d_o = {k: self.d_o[k] + s * self.cols_o[k][j] for k in self.structures}
            self.count[self.needle[j]] += int(s)
            self.x[j] = s > 0
        self.f = move.f


def best_of(load: Loading, rem: np.ndarray, add: np.ndarray) -> Move:
    """The best of the moves (rows of ``rem`` and ``add``; ``NO_MOVE`` if there is none),
    ranked in float32, with its exact objective."""
    if rem.shape[0] == 0:
        return NO_MOVE
    k = int(np.argmin(load.score(rem, add, exact=False)))
    f = float(load.score(rem[k : k + 1], add[k : k + 1])[0])
    return Move(tuple(int(j) for j in rem[k] if j >= 0), tuple(int(j) for j in add[k] if j >= 0), f)


def take_improving(load: Loading, rem: np.ndarray, add: np.ndarray, most: int) -> int:
    """Rank the moves in float32 and take, best first, up to ``most`` of them that still
    improve the exact objective when their turn comes (each re-scored exactly from the
    loading the earlier ones left; a move whose seeds were changed by them is skipped).
    Returns how many were taken."""
    if rem.shape[0] == 0:
        return 0
    values = load.score(rem, add, exact=False)
    taken = 0
    for k in np.argsort(values, kind="stable"):
        if taken >= most or not values[k] < load.f:
            break
        r, a = rem[k][rem[k] >= 0], add[k][add[k] >= 0]
        if not (load.x[r].all() and not load.x[a].any()):
            continue
        f = float(load.score(rem[k : k + 1], add[k : k + 1])[0])
        if f < load.f - 1e-12:
            load.apply(Move(tuple(int(j) for j in r), tuple(int(j) for j in a), f))
            taken += 1
    return taken


class Neighbourhood:
    """Which free candidates a loaded seed may move to: those within ``radius_mm`` of it (from
    the problem's candidate geometry; the same needle's candidates when it has none), and
    the free candidates of the needles in use."""

    def __init__(self, problem: PlanProblem, radius_mm: float) -> None:
        m = problem.n_candidates
        needle = np.asarray(to_host(problem.seed_needle), dtype=np.int64)
        geo = problem.geometry
        if geo is not None:
            pts = np.asarray(geo.seed_points_mm, dtype=np.float64)
            near = [np.linalg.norm(pts - pts[j], axis=1) <= radius_mm for j in range(m)]
        else:
            near = [needle == needle[j] for j in range(m)]
        for j in range(m):
            near[j][j] = False
        self.near = np.array(near)  # (m, m) bool

    def moves(self, load: Loading, gather_max_seeds: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Every move of one loaded seed to a free candidate near it, and of a seed of a
        needle holding at most ``gather_max_seeds`` to any free candidate of a needle in use
        (a step towards closing that needle): (k, 1) removed and (k, 1) added candidates."""
        free = ~load.x
        used = load.count[load.needle] > 0
        loaded = np.flatnonzero(load.x & ~load.frozen)
        few = load.count[load.needle[loaded]] <= gather_max_seeds
        ok = (self.near[loaded] | (used[None] & few[:, None])) & free[None]
        i, b = np.nonzero(ok)
        return loaded[i][:, None], b[:, None]


def flips(load: Loading) -> tuple[np.ndarray, np.ndarray]:
    """Every single flip of a candidate that is not frozen: (k, 1) removed and (k, 1) added
    candidates."""
    j = np.flatnonzero(~load.frozen)
    return np.where(load.x[j], j, -1)[:, None], np.where(load.x[j], -1, j)[:, None]


def closing(load: Loading, needle_id: int) -> Move:
    """Close ``needle_id``: each of its seeds in turn to the best free candidate of the other
    needles in use (module docstring); the move's objective is the closed plan's."""
    seeds = np.flatnonzero(load.x & (load.needle == needle_id))
    dest = np.flatnonzero(~load.x & (load.count[load.needle] > 0) & (load.needle != needle_id))
    added: list[int] = []
    best = NO_MOVE
    for k in range(seeds.size):
        left = np.setdiff1d(dest, added)
        if left.size == 0:
            return NO_MOVE
        rem = np.repeat(seeds[None, : k + 1], left.size, axis=0)
        add = np.concatenate(
            [np.repeat(np.array(added, np.int64)[None], left.size, 0), left[:, None]], 1
        )
        best = best_of(load, rem, add)
        added = list(best.add)
    return best


def improve(
    load: Loading,
    neighbourhood: Neighbourhood | None,
    *,
    deadline: float = math.inf,
    max_steps: int | None = None,
    close_max_seeds: int = 3,
    chunk: int = 4096,
    per_chunk: int = 8,
) -> int:
    """Improve ``load`` until no flip, seed move or needle closing lowers the objective,
    ``max_steps`` moves were taken or ``time.perf_counter()`` passes ``deadline``.

    Flips and seed moves are scanned ``chunk`` at a time in a fixed order; of each chunk up
    to ``per_chunk`` improving moves are taken, best first (``take_improving``), and the scan
    goes on from the next chunk with the new loading; a full scan without an improvement
    tries the needle closings (fewest seeds first, the best improving one taken). Returns the
    number of moves taken. Without a ``neighbourhood``: flips only (no seed moves, no
    closings), a cheap finish on a finer problem."""
    steps = 0
    limit = math.inf if max_steps is None else max_steps
    while steps < limit and time.perf_counter() < deadline:
        rem, add = flips(load)
        if neighbourhood is not None:
            r2, a2 = neighbourhood.moves(load)
            rem, add = np.concatenate([rem, r2]), np.concatenate([add, a2])
        took = False
        for lo in range(0, rem.shape[0], chunk):
            if steps >= limit or time.perf_counter() >= deadline:
                return steps
            r, a = rem[lo : lo + chunk], add[lo : lo + chunk]
            still = load.x[np.maximum(r[:, 0], 0)] | (r[:, 0] < 0)
            still &= ~load.x[np.maximum(a[:, 0], 0)] | (a[:, 0] < 0)
            taken = take_improving(load, r[still], a[still], int(min(per_chunk, limit - steps)))
            steps += taken
            took = took or taken > 0
        if took:
            continue
        if neighbourhood is None:
            break
        best = NO_MOVE
        fixed = np.unique(load.needle[load.frozen])
        small = [
            n
            for n in np.flatnonzero(load.count)
            if load.count[n] <= close_max_seeds and n not in fixed
        ]
        for n in sorted(small, key=lambda n: load.count[n]):
            if time.perf_counter() >= deadline:
                break
            c = closing(load, int(n))
            if c.f < best.f:
                best = c
        if not best.f < load.f - 1e-12:
            break
        load.apply(best)
        steps += 1
    return steps


def kicked(
    load: Loading,
    neighbourhood: Neighbourhood,
    kicks: int,
    rng: np.random.Generator,
    *,
    deadline: float = math.inf,
) -> tuple[Loading, int, int]:
    """Iterated local search from ``load`` (a local optimum): ``kicks`` times, close a needle
    in use chosen at random (unload all its seeds; never one holding a frozen seed), improve
    the result, and keep it when its objective is lower and its hard-limit excess no higher
    (a kick never buys coverage with a hard limit). Returns the best loading, the kicks kept
    and the local-search moves taken."""
    best, kept, moves = load, 0, 0
    excess = load.hard_excess_pct()
    for _ in range(kicks):
        if time.perf_counter() >= deadline:
            break
        fixed = np.unique(best.needle[best.frozen])
        open_ = np.setdiff1d(np.flatnonzero(best.count), fixed)
        if open_.size < 2:
            break
        x = best.x & (best.needle != rng.choice(open_))
        trial = best.reloaded(x)
        moves += improve(trial, neighbourhood, deadline=deadline)
        if trial.f < best.f - 1e-12 and (more := trial.hard_excess_pct()) <= excess + 1e-9:
            best, kept, excess = trial, kept + 1, more
    return best, kept, moves
