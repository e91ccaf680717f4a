"""Dose-influence matrices and dose at points from sets of oriented seeds.

The matrix ``A`` has one row per dose point and one column per candidate seed position:
``A[i, j]`` is the dose in Gy that a seed of the source's strength at position ``j``
(oriented along its needle) gives point ``i`` (total dose of a permanent implant by default,
``Ddot0 * tau``; or the dose delivered by ``days`` after implant). ``A @ loading`` is the dose
of a plan whose ``loading`` is 1 where a seed is placed.

Memory: on the CPU the matrix is filled in row tiles of ``tile_entries`` entries, so
temporaries stay a few MB whatever the size; on the GPU one kernel writes it directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import Backend, cpu_backend
from ..errors import SeedoptError
from ..sources import Source
from . import _parallel
from .tg43 import (
    FORMALISMS,
    DeviceTables,
    Formalism,
    TG43Tables,
    device_tables,
    dose_rate_per_u,
    seed_frame,
    tables_for,
)

CGY_PER_GY = 100.0
MM_PER_CM = 10.0
STORAGE_DTYPES = ("float32", "float16")
CPU_TILE_ENTRIES = 1 << 15
"""Entries per CPU tile: 128 KB float32 temporaries (a few MB in all) stay near the core."""
GPU_TILE_ENTRIES = 1 << 26
"""Entries per GPU block when summing dose (256 MB float32)."""
BLOCKS_PER_WORKER = 4


def _check_points(name: str, a: Any) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SeedoptError(f"{name} must be numbers (x, y, z in mm): {exc}") from None
    if arr.ndim == 1 and arr.size == 3:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise SeedoptError(
            f"{name} must be an (n, 3) array of x, y, z in mm, got shape {arr.shape}"
        )
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise SeedoptError(
            f"{name} has {int(bad.sum())} row(s) with NaN or infinite coordinates "
            f"(first: row {int(np.argmax(bad))})"
        )
    return arr


def _check_axes(axes: Any, n_seeds: int) -> np.ndarray:
    arr = _check_points("seed directions", axes)
    if arr.shape[0] == 1 and n_seeds != 1:
        arr = np.repeat(arr, n_seeds, axis=0)
    if arr.shape[0] != n_seeds:
        raise SeedoptError(f"{arr.shape[0]} seed directions given for {n_seeds} seeds")
    norm = np.linalg.norm(arr, axis=1)
    zero = norm < 1e-9
    if zero.any():
        raise SeedoptError(
            f"seed/needle direction of zero length at row {int(np.argmax(zero))}; "
            "give the needle's direction as a non-zero vector"
        )
    return arr / norm[:, None]


def _check_options(formalism: str, storage: str, cutoff_mm: float | None) -> None:
    if formalism not in FORMALISMS:
        raise SeedoptError(
            f"unknown formalism {formalism!r}; choose one of {', '.join(FORMALISMS)}"
        )
    if storage not in STORAGE_DTYPES:
        raise SeedoptError(
            f"unknown storage dtype {storage!r}; choose one of {', '.join(STORAGE_DTYPES)}"
        )
    if cutoff_mm is not None and not (np.isfinite(cutoff_mm) and cutoff_mm > 0):
        raise SeedoptError(f"truncation radius must be a positive number of mm, got {cutoff_mm!r}")
    if cutoff_mm is not None and storage == "float16":
        raise SeedoptError(
            "float16 storage is for dense matrices; truncated (sparse) matrices are float32, "
            "since SciPy and CuPy sparse matrices have no float16"
        )


def gy_per_seed(source: Source, days: float | None = None) -> float:
    """Factor from dose rate per U (cGy/h/U) to dose per seed (Gy)."""
    return source.air_kerma_strength_u * source.dose_per_initial_rate_h(days) / CGY_PER_GY


def matrix_nbytes(n_points: int, n_seeds: int, storage: str = "float32") -> int:
    """Bytes of a dense influence matrix."""
    return n_points * n_seeds * np.dtype(storage).itemsize


def choose_storage(backend: Backend, n_points: int, n_seeds: int, requested: str) -> str:
    """The storage dtype for ``requested`` (``"auto"``, ``"float32"`` or ``"float16"``).

    ``auto``: float32 when the matrix and one working copy (the annealer keeps the matrix
    transposed, one candidate per row) fit in the backend's free memory, else float16, whose
    dose sums stay within 2**-10 of float32's (two roundings of positive entries: storage
    per U, then the strength; ``tests/test_gpu_path.py``)."""
    if requested != "auto":
        return requested
    fits = 2 * matrix_nbytes(n_points, n_seeds, "float32") <= backend.free_bytes()
    return "float32" if fits else "float16"


def check_fits(backend: Backend, nbytes: int, what: str) -> None:
    """Refuse, with a message saying what would help, an allocation that cannot fit."""
    free = backend.free_bytes()
    if nbytes > free:
        raise SeedoptError(
            f"{what} needs {nbytes / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB is free on "
            f"the {backend.name}; use fewer points (a coarser grid.spacing_mm), fewer candidate "
            "seeds (a larger approach.seed_pitch_mm or hole_pitch_mm, a smaller size_mm or "
            "max_needles_considered), dose.storage float16, or another device"
        )


def reference_block(
    xp: Any,
    t: TG43Tables,
    points_cm: Any,
    seeds_cm: Any,
    axes: Any,
    scale: float,
    formalism: Formalism,
    cutoff_cm: float | None,
    tables: DeviceTables,
) -> Any:
    """Pure-array dose block (n_points, n_seeds), float32: the reference that the CUDA kernel
    in ``seedopt.kernels.tg43`` must reproduce.

    ``points_cm`` is (n_points, 3); ``seeds_cm`` and ``axes`` are (3, n_seeds); ``scale``
    turns cGy h^-1 U^-1 into the block's unit.
    """
    z, rho2 = seed_frame(xp, points_cm, seeds_cm, axes)
    block = dose_rate_per_u(xp, t, z, rho2, formalism, tables)
    block *= scale
    if cutoff_cm is not None:
        block[rho2 + z * z > cutoff_cm * cutoff_cm] = 0.0
    return block


class _Prepared:
    """Validated inputs on the backend's device: cm, float32, seeds and axes as (3, n)."""

    def __init__(
        self,
        backend: Backend,
        points_mm: Any,
        seeds_mm: Any,
        axes: Any,
        source: Source,
        formalism: str,
        scale: float,
    ) -> None:
        pts = _check_points("dose points", points_mm)
        seeds = _check_points("seed positions", seeds_mm)
        ax = _check_axes(axes, seeds.shape[0])
        xp = backend.xp
        self.backend = backend
        self.t = tables_for(source.model)
        self.formalism: Formalism = formalism  # type: ignore[assignment]
        self.scale = scale
        self.points = xp.asarray(pts / MM_PER_CM, dtype=xp.float32)
        self.seeds = xp.ascontiguousarray(xp.asarray((seeds / MM_PER_CM).T, dtype=xp.float32))
        self.axes = xp.ascontiguousarray(xp.asarray(ax.T, dtype=xp.float32))
        self.tables = device_tables(xp, self.t, xp.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.points.shape[0]), int(self.seeds.shape[1])

    def block(self, rows: slice, cutoff_cm: float | None, use_kernel: bool) -> Any:
        """Dose block for these rows, float32."""
        if use_kernel:
            from ..kernels.tg43 import influence_dense_cuda

            return influence_dense_cuda(
                self.points[rows],
                self.seeds,
                self.axes,
                self.t,
                self.scale,
                self.formalism,
                cutoff_cm,
                "float32",
            )
        return reference_block(
            self.backend.xp,
            self.t,
            self.points[rows],
            self.seeds,
            self.axes,
            self.scale,
            self.formalism,
            cutoff_cm,
            self.tables,
        )

    def row_blocks(self, tile_entries: int) -> tuple[list[slice], int]:
        """Row blocks to hand out (several per worker) and the number of workers."""
        n, m = self.shape
        if self.backend.is_gpu:
            rows = max(1, tile_entries // max(m, 1))
            return [slice(a, min(a + rows, n)) for a in range(0, n, rows)], 1
        workers = _parallel.worker_count(self.backend.threads, n * m)
        return list(_parallel.split(n, max(workers, 1) * BLOCKS_PER_WORKER)), workers

    def tiles(self, rows: slice, tile_entries: int) -> list[slice]:
        """Cache-sized row tiles inside a block."""
        step = max(1, tile_entries // max(self.shape[1], 1))
        return [slice(a, min(a + step, rows.stop)) for a in range(rows.start, rows.stop, step)]


def influence_matrix(
    points_mm: Any,
    seeds_mm: Any,
    axes: Any,
    source: Source,
    *,
    formalism: str = "2d",
    backend: Backend | None = None,
    storage: str = "float32",
    cutoff_mm: float | None = None,
    days: float | None = None,
    tile_entries: int | None = None,
    use_kernel: bool | None = None,
    progress: bool = False,
) -> Any:
    """Dose-influence matrix, Gy per seed, shape (n_points, n_seeds), on the backend's device.

    Parameters
    ----------
    points_mm : (n_points, 3) dose points, mm.
    seeds_mm : (n_seeds, 3) candidate seed centres, mm.
    axes : (n_seeds, 3) or (3,) seed long-axis directions (needle directions; normalised here).
    source : seed model and strength; its half-life sets the total dose.
    formalism : ``"2d"`` line source with F(r, theta), or ``"1d"`` with phi_an(r).
    backend : where to compute and keep the matrix (default: CPU, every core).
    storage : ``"float32"`` (default) or ``"float16"`` (computed in float32, stored in half).
    cutoff_mm : truncation radius; entries farther than this are dropped and the result is a
        CSR sparse matrix (``scipy.sparse`` / ``cupyx.scipy.sparse``). ``None``: dense.
    days : dose delivered by this day after implant; ``None``: permanent-implant total.
    tile_entries : CPU tile size in entries, bounding temporary memory.
    use_kernel : on the GPU, ``False`` forces the pure-array path (for tests).
    progress : show a progress bar.
    """
    _check_options(formalism, storage, cutoff_mm)
    backend = backend or cpu_backend()
    prep = _Prepared(
        backend, points_mm, seeds_mm, axes, source, formalism, gy_per_seed(source, days)
    )
    cutoff_cm = None if cutoff_mm is None else cutoff_mm / MM_PER_CM
    n, m = prep.shape
    check_fits(backend, matrix_nbytes(n, m, storage), f"a {n} x {m} {storage} dose matrix")
    if backend.is_gpu and use_kernel is not False:
        from ..kernels.tg43 import influence_dense_cuda

        try:
            dense = influence_dense_cuda(
                prep.points,
                prep.seeds,
                prep.axes,
                prep.t,
                prep.scale,
                prep.formalism,
                cutoff_cm,
                storage,
            )
            return dense if cutoff_cm is None else _sparse_module(backend).csr_matrix(dense)
        except backend.xp.cuda.memory.OutOfMemoryError as exc:
            raise SeedoptError(
                f"GPU out of memory building a {n} x {m} dose matrix: {exc}; "
                "use float16 storage or fewer points"
            ) from None
    tile = tile_entries or CPU_TILE_ENTRIES
    blocks, workers = prep.row_blocks(tile)
    bar = _progress(len(blocks), progress, f"dose matrix {n} x {m}")
    if cutoff_cm is None:
        xp = backend.xp
        out = _parallel.shared_empty((n, m), storage) if workers else xp.empty((n, m), storage)

        def fill(k: int) -> None:
            for rows in prep.tiles(blocks[k], tile):
                out[rows] = prep.block(rows, None, False)

        _parallel.run_blocks(fill, len(blocks), workers, bar.update)
        bar.close()
        return out
    sparse = _sparse_module(backend)

    def fill_sparse(k: int) -> Any:
        parts = [
            sparse.csr_matrix(prep.block(rows, cutoff_cm, False).astype(storage))
            for rows in prep.tiles(blocks[k], tile)
        ]
        return sparse.vstack(parts, format="csr") if parts else None

    parts = [
        p
        for p in _parallel.run_blocks(fill_sparse, len(blocks), workers, bar.update)
        if p is not None
    ]
    bar.close()
    if not parts:
        return sparse.csr_matrix((n, m), dtype=storage)
    return sparse.vstack(parts, format="csr")


def _sparse_module(backend: Backend) -> Any:
    if backend.is_gpu:
        import cupyx.scipy.sparse as sparse
    else:
        import scipy.sparse as sparse
    return sparse


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="block", leave=False)


def dose_at_points(
    points_mm: Any,
    seeds_mm: Any,
    axes: Any,
    source: Source,
    *,
    formalism: str = "2d",
    backend: Backend | None = None,
    days: float | None = None,
    rate: bool = False,
    tile_entries: int | None = None,
) -> np.ndarray:
    """Dose in Gy at each point from every seed, summed; host float64 array (n_points,).

    ``rate=True`` gives the initial dose rate in cGy/h instead. Memory stays bounded: the
    seeds' contributions are summed block by block, never held as a full matrix.
    """
    _check_options(formalism, "float32", None)
    backend = backend or cpu_backend()
    scale = source.air_kerma_strength_u if rate else gy_per_seed(source, days)
    prep = _Prepared(backend, points_mm, seeds_mm, axes, source, formalism, scale)
    n, _ = prep.shape
    xp = backend.xp
    tile = tile_entries or (GPU_TILE_ENTRIES if backend.is_gpu else CPU_TILE_ENTRIES)
    blocks, workers = prep.row_blocks(tile)
    total = _parallel.shared_empty((n,), np.float64) if workers else xp.zeros(n, xp.float64)

    def accumulate(k: int) -> None:
        for rows in [blocks[k]] if backend.is_gpu else prep.tiles(blocks[k], tile):
            total[rows] = prep.block(rows, None, backend.is_gpu).sum(axis=1, dtype=xp.float64)

    _parallel.run_blocks(accumulate, len(blocks), workers)
    return backend.to_numpy(total).copy()
