"""Row-block parallelism for the CPU backend: forked worker processes sharing memory.

NumPy releases the GIL, but on cache-sized tiles the hand-offs cost more than the work, so
threads do not scale here; processes do. Workers are forked (Linux), inherit the prepared
inputs, and write into an anonymous shared mapping that becomes the result's buffer, so
nothing large is pickled. Elsewhere, or for small jobs, the blocks run in this process.

Each worker also raises glibc's trim and mmap thresholds (``mallopt``): otherwise every
tile's temporaries are returned to the kernel and faulted back in, which halves throughput.
Only the short-lived workers are tuned, never the calling process.
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MIN_ENTRIES_PER_WORKER = 2_000_000
"""Below this many matrix entries per worker, forking costs more than it saves."""
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MALLOC_SETTINGS = (
    (_M_TRIM_THRESHOLD, 1 << 30),
    (_M_TOP_PAD, 64 << 20),
    (_M_MMAP_THRESHOLD, 32 << 20),
)

_job: Callable[[int], Any] | None = None


def shared_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array in anonymous shared memory (visible to forked children)."""
    nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
    buf = mmap.mmap(-1, nbytes)
    return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def _tune_malloc() -> None:
    """Keep freed tile temporaries in this process's heap (glibc only; no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None)
        for option, value in _MALLOC_SETTINGS:
            libc.mallopt(option, value)
    except (OSError, AttributeError):
        pass


def _call(k: int) -> Any:
    assert _job is not None
    return _job(k)


def can_fork() -> bool:
    return sys.platform.startswith("linux")


def run_blocks(
    job: Callable[[int], Any],
    n_blocks: int,
    workers: int,
    on_done: Callable[[], None] | None = None,
) -> list[Any]:
    """``[job(k) for k in range(n_blocks)]``, in ``workers`` forked processes (0: here).

    ``job`` must write large results into ``shared_empty`` arrays and return only small
    objects (they are pickled back). ``on_done`` is called in this process per finished block.
    """
    global _job
    results: list[Any] = [None] * n_blocks
    if workers == 0:
        for k in range(n_blocks):
            results[k] = job(k)
            if on_done:
                on_done()
        return results
    _job = job
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(workers, n_blocks), initializer=_tune_malloc) as pool:
            for k, value in enumerate(pool.imap(_call, range(n_blocks))):
                results[k] = value
                if on_done:
                    on_done()
    finally:
        _job = None
    return results


def worker_count(threads: int, n_entries: int) -> int:
    """Worker processes worth forking for a job of ``n_entries`` entries (0: run here)."""
    if not can_fork() or n_entries < MIN_ENTRIES_PER_WORKER:
        return 0
    return max(1, min(threads, n_entries // MIN_ENTRIES_PER_WORKER))


def split(n: int, parts: int) -> Sequence[slice]:
    """``parts`` contiguous, nearly equal slices of ``range(n)`` (fewer if n is small)."""
    edges = np.linspace(0, n, min(parts, n) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
