"""The annealer's step: the pure-array reference pieces and the fused CUDA step.

Every annealing step moves every chain at once: each chain draws six uniforms, proposes a
move (``move_reference``: a flip, or a loaded seed shifted along its needle or taken to a free
candidate of a needle in use), its doses change by at most two columns of the influence
matrices (``propose_reference``), the proposal's exact objective decides a Metropolis
acceptance. The reference runs those as array-library calls (``optimizer.anneal``: about 40
per step, D90 and every D{v}cc by a partition per chain). ``FusedStep`` does the same step in
seven launches of the kernels in ``anneal_fused.cu`` and no library call:

* ``fused_move``: each chain's move and its seed and needle counts
  (reference ``move_reference``);
* ``fused_propose``: the proposal doses and the threshold tallies: target rows at or above
  Rx, 1.5 Rx and 2 Rx, organ rows above their priced dose (``propose_reference`` and the
  counts of ``objective.terms_from_doses``);
* ``fused_rows`` (twice: a histogram, then a gather), ``fused_pick``, ``fused_rank``: the exact k-th
  hottest dose (D90, D{v}cc, Dmax) of the chains whose objective needs it
  (``objective.kth_hottest`` where ``shortfall_pct`` and ``priced_value`` compute it);
* ``fused_accept``: the objective, Metropolis acceptance, the state, the best loading and
  the trace (the rest of the reference step).

The uniforms of 64 steps come from one call of the array module's generator. The kernels
take the same draws as the reference and give the same trajectories bit for bit (run on the
host in ``tests/test_anneal_kernels.py``, and on a GPU against the reference there).
``Launcher`` is how a step reaches its kernels (``CudaLauncher``: CuPy's RawModule, compiled
once per device with NVRTC, no FMA contraction); the host tests pass one that runs the same
source compiled as C++, and a counting wrapper measures launches per step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from seedopt.backend import array_module

BLOCK = 256
MAX_BLOCKS = 65535 * 8
KEY_SHIFT = 45
"""Histogram bins are order keys >> 45: 128 bins per factor of two in dose (0.54 % wide)."""
BINS = 16 * 128
"""Bins per quantity: a factor 2**16 of dose below Rx (D90) or above the priced dose; the
bins at both ends are open."""
CAPACITY = 2048
"""Most rows of one bin gathered for ranking (``capacity``); a fuller bin is resolved by a
radix select."""
MAX_TALLY = 16
"""Tallies per chain the kernels hold (3 target tallies + one per organ quantity)."""
DRAWS = 6
"""Uniforms per chain and step: flip, kind, direction, acceptance, loaded seed, free place."""
DRAW_BLOCK = 64
"""Steps whose uniforms are drawn in one call."""
COMPILE_OPTIONS = ("--std=c++14", "--fmad=false")
_COLUMN_TYPES = {"float32": "float", "float16": "__half"}
KERNELS = (
    "fused_move",
    *(f"fused_propose<{t}>" for t in _COLUMN_TYPES.values()),
    "fused_rows",
    "fused_pick",
    "fused_rank",
    "fused_accept",
)


def propose_reference(dose: Any, cols: Any, add: Any, rem: Any) -> Any:
    """New (chains, rows) float64 doses: ``dose`` plus column ``add[c]`` of ``cols`` minus
    column ``rem[c]`` (each omitted where the index is negative); ``cols`` is (m, rows).
    The columns are masked in their own dtype (a product by 1 or 0 is exact) and widened in
    the sum, as the kernel widens each entry."""
    xp = array_module(dose)
    plus = cols[xp.maximum(add, 0)] * (add >= 0)[:, None].astype(cols.dtype)
    minus = cols[xp.maximum(rem, 0)] * (rem >= 0)[:, None].astype(cols.dtype)
    return dose + plus - minus


def _rth_true(mask: Any, r: Any) -> Any:
    """Index of the (r+1)-th True of each row of ``mask`` (0 where there is none)."""
    xp = array_module(mask)
    return (xp.cumsum(mask, axis=1) > r[:, None]).argmax(axis=1)


def move_reference(
    u: Any,
    X: Any,
    count: Any,
    needle: Any,
    prev: Any,
    next_: Any,
    n_seeds: Any,
    n_needles: Any,
    p_shift: float,
    p_swap: float,
) -> tuple[Any, Any, Any, Any]:
    """Each chain's move from its draws ``u`` (chains, 6): (add, rem, seeds after, needles
    after), -1 where a move adds or removes nothing.

    A flip of candidate floor(u0 m). With probability ``p_shift`` (u1) the r-th loaded seed
    (r = floor(u4 seeds)) moves to the next (u2 < 0.5) or previous candidate of its needle;
    with probability ``p_swap`` it moves to the r'-th free candidate of a needle in use
    (r' = floor(u5 free)). A shift whose destination is missing or loaded is the flip."""
    xp = array_module(X)
    chains, m = X.shape
    rows = xp.arange(chains)
    flip = xp.minimum((u[:, 0] * m).astype(xp.int64), m - 1)
    r = xp.minimum((u[:, 4] * n_seeds).astype(xp.int64), xp.maximum(n_seeds - 1, 0))
    pick = _rth_true(X, r)
    free_on_used = ~X & (count[:, needle] > 0)
    n_free = free_on_used.sum(axis=1)
    r_free = xp.minimum((u[:, 5] * n_free).astype(xp.int64), xp.maximum(n_free - 1, 0))
    gather = xp.where(n_free > 0, _rth_true(free_on_used, r_free), -1)
    kind = u[:, 1]
    swap = (kind >= p_shift) & (kind < p_shift + p_swap)
    dest = xp.where(swap, gather, xp.where(u[:, 2] < 0.5, next_[pick], prev[pick]))
    free_dest = (dest >= 0) & ~X[rows, xp.maximum(dest, 0)]
    shift = (kind < p_shift + p_swap) & (n_seeds > 0) & free_dest
    flipped_on = X[rows, flip]
    rem = xp.where(shift, pick, xp.where(flipped_on, flip, -1))
    add = xp.where(shift, dest, xp.where(flipped_on, -1, flip))
    w_rem, w_add = rem >= 0, add >= 0
    nd_rem, nd_add = needle[xp.maximum(rem, 0)], needle[xp.maximum(add, 0)]
    frees = w_rem & (count[rows, nd_rem] == 1) & ~(w_add & (nd_add == nd_rem))
    opens = w_add & (count[rows, nd_add] == 0)
    new_seeds = n_seeds + w_add - w_rem.astype(xp.int64)
    new_needles = n_needles + opens - frees.astype(xp.int64)
    return add, rem, new_seeds, new_needles


def order_keys(v: Any) -> Any:
    """Unsigned keys with the order of the float64 values ``v`` (the kernels' ``order_key``)."""
    xp = array_module(v)
    b = xp.ascontiguousarray(v, dtype=xp.float64).view(xp.uint64)
    return xp.where(b >> np.uint64(63), ~b, b | np.uint64(1 << 63))


def from_order_keys(k: Any) -> Any:
    """The float64 values of order keys (inverse of ``order_keys``)."""
    xp = array_module(k)
    k = xp.asarray(k, dtype=xp.uint64)
    b = xp.where(k >> np.uint64(63), k & np.uint64((1 << 63) - 1), ~k)
    return b.view(xp.float64)


@dataclass(frozen=True)
class StepSpec:
    """What the fused step knows of the problem: host arrays, one row per chain where per
    chain. Rows of the doses: segment 0 the target, then one per limited structure.

    Attributes
    ----------
    seg_start : (segments + 1,) first row of each segment, then the row count.
    t_seg, t_gt : (T,) each tally's segment and comparison (0: >=, 1: >); thr (chains, T) Gy.
        Tallies 0, 1, 2: the target at Rx, 1.5 Rx and 2 Rx.
    q_seg, q_tally, q_above, q_k : (Q,) each quantity's segment, the tally that says whether
        it is needed, which side of that tally's threshold it lies on (0: below, D90; 1: above,
        an organ metric) and its rank (the k-th hottest row). Quantity 0 is D90.
    lim_q, lim_max, lim_floor : (L,) each hard limit's quantity, limit and organ floor (Gy).
    weights : (7,) W_COVERAGE, W_HARD, v150, v200, per seed, per needle, organ weights.
    rx : (chains,) prescription of each chain, Gy.
    """

    seg_start: np.ndarray
    t_seg: np.ndarray
    t_gt: np.ndarray
    thr: np.ndarray
    q_seg: np.ndarray
    q_tally: np.ndarray
    q_above: np.ndarray
    q_k: np.ndarray
    lim_q: np.ndarray
    lim_max: np.ndarray
    lim_floor: np.ndarray
    weights: np.ndarray
    rx: np.ndarray
    cap_seeds: float
    cap_needles: float
    p_shift: float
    p_swap: float

    @property
    def n_target(self) -> int:
        return int(self.seg_start[1])

    def top_keys(self) -> np.ndarray:
        """(chains, Q) the shifted order key of each quantity's hottest bin."""
        thr = self.thr[:, self.q_tally]
        top = (order_keys(thr) >> np.uint64(KEY_SHIFT)).astype(np.int64)
        return top + np.where(self.q_above == 1, BINS - 1, 0)[None, :]


def capacity(rows: int) -> int:
    """Rows of one bin gathered per needed quantity: about rows / 32 (a bin holds 0.54 % of
    the dose range), between 128 and ``CAPACITY``, a multiple of 32; the rank kernel runs
    this many threads per chain and quantity."""
    return min(CAPACITY, max(128, -(-(rows // 32) // 32) * 32))


def buffer_nbytes(chains: int, n_quantities: int, rows: int) -> int:
    """Device memory of the fused step's own buffers beyond the doses (bytes)."""
    per_q = BINS * 4 + capacity(rows) * 8 + 40
    return chains * (n_quantities * per_q + rows * 8 + MAX_TALLY * 8 + 200)


Launcher = Callable[[str, int, Sequence[Any]], None]
"""launch(kernel name, threads wanted, arguments): runs one kernel over that many threads."""


@functools.cache
def _module(device_id: int) -> Any:
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.RawModule(
            code=cuda_source(), options=COMPILE_OPTIONS, name_expressions=list(KERNELS)
        )


def cuda_source() -> str:
    """The fused step's CUDA C++ source."""
    return resources.files("seedopt.kernels").joinpath("anneal_fused.cu").read_text()


def cuda_launcher(name: str, threads: int, args: Sequence[Any]) -> None:
    """Launch kernel ``name`` of ``anneal_fused.cu`` on the current device over ``threads``
    threads (grid-stride beyond ``MAX_BLOCKS`` blocks)."""
    import cupy

    fn = _module(cupy.cuda.Device().id).get_function(name)
    fn((max(1, min((threads + BLOCK - 1) // BLOCK, MAX_BLOCKS)),), (BLOCK,), tuple(args))


def slots_per_chain(chains: int, rows: int) -> int:
    """Threads per chain of the row kernels: about 4 rows each, enough threads in all to
    fill a large GPU (2**18), a multiple of 32."""
    want = min(-(-rows // 4), max(256, (1 << 18) // max(chains, 1)))
    return max(32, -(-want // 32) * 32)


class FusedStep:
    """One annealing run's state and buffers on the device, advanced by ``step``.

    Parameters
    ----------
    spec : the problem's ``StepSpec``.
    cols : (m, R) candidate columns over every segment's rows (float32 or float16).
    doses : (chains, R) float64 current doses; X (chains, m) bool loadings; count
        (chains, needles) int64 needle counts; n_seeds, n_needles (chains,) int64; f
        (chains,) float64 objectives; needle, prev, next_ (m,) int64.
    iterations : steps the trace has room for.
    launch : how kernels run (``cuda_launcher`` on a GPU).
    """

    def __init__(
        self,
        spec: StepSpec,
        cols: Any,
        doses: Any,
        X: Any,
        count: Any,
        n_seeds: Any,
        n_needles: Any,
        f: Any,
        needle: Any,
        prev: Any,
        next_: Any,
        iterations: int,
        launch: Launcher,
    ) -> None:
        xp = array_module(doses)
        self.xp, self.launch, self.spec = xp, launch, spec
        self.chains, self.rows = doses.shape
        self.m = X.shape[1]
        self.n_needle_ids = count.shape[1]
        self.n_q = len(spec.q_k)
        self.n_tally = len(spec.t_seg)
        if self.n_tally > MAX_TALLY:
            raise ValueError(f"{self.n_tally} tallies; the kernels hold at most {MAX_TALLY}")
        self.slots = slots_per_chain(self.chains, self.rows)
        self.cols = xp.ascontiguousarray(cols)
        self.column_type = _COLUMN_TYPES[self.cols.dtype.name]
        self.D = xp.empty((2, self.chains, self.rows), dtype=xp.float64)
        self.D[0] = doses
        self.cur = xp.zeros(self.chains, dtype=xp.uint8)
        self.X, self.count = X, count
        self.n_seeds, self.n_needles, self.f = n_seeds, n_needles, f
        self.best_f, self.best_X = f.copy(), X.copy()
        self.needle, self.prev, self.next_ = needle, prev, next_
        i32, i64, f64 = (
            functools.partial(xp.ascontiguousarray, dtype=t)
            for t in (np.int32, np.int64, np.float64)
        )
        self.seg_start, self.n_seg = i64(spec.seg_start), len(spec.seg_start) - 1
        self.t_seg, self.t_gt, self.thr = i32(spec.t_seg), i32(spec.t_gt), f64(spec.thr)
        self.q_seg, self.q_tally = i32(spec.q_seg), i32(spec.q_tally)
        self.q_above, self.q_k = i32(spec.q_above), i64(spec.q_k)
        self.top = i64(spec.top_keys())
        self.lim_q, self.lim_max, self.lim_floor = (
            i32(spec.lim_q),
            f64(spec.lim_max),
            f64(spec.lim_floor),
        )
        self.weights, self.rx = f64(spec.weights), f64(spec.rx)
        c, q = self.chains, self.n_q
        self.counts = xp.zeros((c, self.n_tally), dtype=xp.uint64)
        self.hist = xp.zeros((c, q, BINS), dtype=xp.uint32)
        self.need = xp.zeros((c, q), dtype=xp.uint8)
        self.bin = xp.zeros((c, q), dtype=xp.int64)
        self.rank = xp.zeros((c, q), dtype=xp.int64)
        self.fill = xp.zeros((c, q), dtype=xp.uint32)
        self.cap = capacity(self.rows)
        self.buf = xp.zeros((c, q, self.cap), dtype=xp.float64)
        self.value = xp.zeros((c, q), dtype=xp.float64)
        self.add, self.rem = xp.empty(c, dtype=xp.int64), xp.empty(c, dtype=xp.int64)
        self.new_seeds, self.new_needles = xp.empty(c, dtype=xp.int64), xp.empty(c, xp.int64)
        self.trace_keys = xp.full(iterations + 1, np.iinfo(np.uint64).max, dtype=xp.uint64)
        self.trace_keys[0] = order_keys(self.best_f.min()[None])[0]

    def trace(self) -> Any:
        """(iterations + 1,) the best objective over the chains after each step."""
        return from_order_keys(self.trace_keys)

    def step(self, u: Any, temp: Any, it: int) -> None:
        """Advance every chain one step with draws ``u`` (chains, 6) at temperatures ``temp``
        (chains,); the trace entry ``it + 1``."""
        s = self.spec
        c, q, t = np.int64(self.chains), np.int32(self.n_q), np.int32(self.n_tally)
        m, ids = np.int64(self.m), np.int64(self.n_needle_ids)
        rows, slots = np.int64(self.rows), np.int64(self.slots)
        bins, cap = np.int64(BINS), np.int64(self.cap)
        doses = (self.D, self.cur, c, rows)
        quantity = (q, self.q_seg, self.q_tally, self.q_above)
        moves = (self.add, self.rem, self.new_seeds, self.new_needles)
        state = (self.n_seeds, self.n_needles)
        per_row = self.chains * self.slots
        # fmt: off
        self.launch("fused_move", self.chains, (
            c, m, ids, u, self.X, self.count, self.needle, self.prev, self.next_, *state,
            np.float64(s.p_shift), np.float64(s.p_swap), *moves))
        self.launch(f"fused_propose<{self.column_type}>", per_row, (
            self.D, self.cols, self.add, self.rem, self.cur, c, rows, slots, self.seg_start,
            np.int32(self.n_seg), self.t_seg, self.t_gt, self.thr, t, self.counts))
        by_rows = (*doses, slots, self.seg_start, *quantity, self.q_k, self.counts, t,
                   self.thr, self.top, bins, self.hist, self.bin, cap, self.fill, self.buf)
        self.launch("fused_rows", per_row, (np.int32(0), *by_rows))
        self.launch("fused_pick", self.chains * self.n_q, (
            c, q, self.q_tally, self.q_above, self.q_k, self.counts, t, bins, self.hist,
            self.need, self.bin, self.rank))
        self.launch("fused_rows", per_row, (np.int32(1), *by_rows))
        self.launch("fused_rank", self.chains * self.n_q * self.cap, (
            *doses, self.seg_start, *quantity, t, self.thr, self.top, bins, self.need,
            self.bin, self.rank, cap, self.fill, self.buf, self.value))
        self.launch("fused_accept", self.chains, (
            c, m, ids, self.X, self.count, self.needle, *moves, *state, self.counts, t,
            self.need, self.value, q, self.fill, self.rx, np.int64(s.n_target),
            np.int32(len(s.lim_q)), self.lim_q, self.lim_max, self.lim_floor, self.weights,
            np.float64(s.cap_seeds), np.float64(s.cap_needles), u, temp, self.f, self.best_f,
            self.best_X, self.cur, self.trace_keys[it + 1 :]))
        # fmt: on
