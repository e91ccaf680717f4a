"""HDF5 cache of dose-influence matrices, keyed by geometry, source model and formalism.

Matrices are stored per unit air-kerma strength (Gy per U per seed), so re-planning a case
with new goals, a new prescription or another seed strength reuses them.

An entry ``<key>.h5`` holds the dataset ``A_gy_per_u`` (points x seeds, the storage dtype)
and attributes ``key``, ``blake2b`` (hex digest of the matrix's bytes, C order), ``model``,
``formalism``, ``engine``, ``half_life_d``. Before use an entry is verified: readable, its
key, shape and dtype those asked for, every value finite and >= 0, the digest matching. An
entry failing any check is never used: the matrix is recomputed and the entry rewritten, with
a note. Entries are written atomically and durably (``seedopt.atomic``); a cache that cannot
be written is a note, never a lost plan.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, remove_stale_temporaries
from ..backend import Backend
from ..notes import note
from ..output_set import os_reason
from ..sources import Source
from .influence import influence_matrix

DATASET = "A_gy_per_u"
ENTRY_SLACK_BYTES = 1 << 20
"""Room an entry needs on disk beyond its matrix's bytes (HDF5 metadata, with a margin)."""
CHECK_ROWS_BYTES = 64 << 20
"""Values are checked for finiteness in row blocks of about this size (bounded memory)."""

ENGINE_VERSION = "tg43-1"
"""Bumped whenever the dose engine's numbers change, so old cache entries are not reused."""


def default_cache_dir() -> Path:
    root = os.environ.get("SEEDOPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "seedopt"
    )
    return Path(root)


def matrix_key(
    points_mm: np.ndarray,
    seeds_mm: np.ndarray,
    axes: np.ndarray,
    source: Source,
    formalism: str,
    storage: str,
) -> str:
    h = hashlib.sha256()
    for a in (points_mm, seeds_mm, axes):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    h.update(
        f"{ENGINE_VERSION}|{source.model.model_id}|{source.half_life_d!r}|{formalism}|{storage}".encode()
    )
    return h.hexdigest()[:24]


def matrix_digest(a: np.ndarray) -> str:
    """BLAKE2b (256 bit) hex digest of a matrix's bytes in C order."""
    data = np.ascontiguousarray(a).data.cast("B")  # the bytes, without a copy
    return hashlib.blake2b(data, digest_size=32).hexdigest()


class DamagedEntry(Exception):
    """A cache entry that must not be used; the message says why."""


def _reason(exc: Exception) -> str:
    """One line for an error of HDF5 or the file system."""
    return os_reason(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"


def _not_written(path: Path, why: str) -> None:
    note(f"cannot write the dose-matrix cache entry {path} ({why}); going on without it")


def _all_finite_nonnegative(a: np.ndarray) -> bool:
    step = max(1, CHECK_ROWS_BYTES // max(1, a.itemsize * (a.shape[1] if a.ndim > 1 else 1)))
    for start in range(0, a.shape[0], step):
        block = a[start : start + step]
        if not (np.isfinite(block).all() and (block >= 0).all()):
            return False
    return True


def read_entry(path: Path, key: str, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """The verified matrix of the cache entry at ``path`` (Gy per U per seed); raises
    ``DamagedEntry`` saying what is wrong when any check fails."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            data = f.get(DATASET)
            if not isinstance(data, h5py.Dataset):
                raise DamagedEntry(f"has no dataset {DATASET}")
            stored_key, digest = f.attrs.get("key"), f.attrs.get("blake2b")
            if digest is None or stored_key is None:
                raise DamagedEntry("has no key or checksum (an older seedopt wrote it)")
            if stored_key != key:
                raise DamagedEntry(f"belongs to key {stored_key}")
            if data.shape != shape:
                raise DamagedEntry(
                    f"holds a {' x '.join(map(str, data.shape))} matrix where "
                    f"{shape[0]} x {shape[1]} is expected"
                )
            if data.dtype != dtype:
                raise DamagedEntry(f"holds {data.dtype} values where {dtype} is expected")
            a = np.asarray(data[()])
    except DamagedEntry:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError, ... on damage
        raise DamagedEntry(f"cannot be read ({_reason(exc)})") from None
    if not _all_finite_nonnegative(a):
        raise DamagedEntry("holds values that are not finite or are negative")
    if matrix_digest(a) != digest:
        raise DamagedEntry("does not match its checksum")
    return a


def write_entry(path: Path, key: str, a: np.ndarray, attrs: dict[str, Any]) -> None:
    """Write a cache entry atomically and durably; failing, say so in a note and go on.
    An entry is written only where the disk has room for it: HDF5 does not survive a write
    that fails (it can crash the process)."""
    import h5py

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        need, free = a.nbytes + ENTRY_SLACK_BYTES, shutil.disk_usage(path.parent).free
        if free < need:
            _not_written(path, f"it needs {need / 1e6:.1f} MB, {free / 1e6:.1f} MB are free")
            return
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset(DATASET, data=a)
            f.attrs.update(key=key, blake2b=matrix_digest(a), **attrs)
    except MemoryError:
        raise
    except Exception as exc:
        _not_written(path, _reason(exc))


def cached_influence_matrix(
    points_mm: np.ndarray,
    seeds_mm: np.ndarray,
    axes: np.ndarray,
    source: Source,
    *,
    formalism: str,
    storage: str,
    backend: Backend,
    cache_dir: Path | None,
) -> tuple[Any, bool]:
    """The influence matrix (Gy per seed at ``source``'s strength) and whether it came from the
    cache. ``cache_dir=None`` disables caching. An entry is verified before use (module
    docstring); a bad one is recomputed and rewritten, with a note."""
    unit = Source(source.model, 1.0, source.half_life_d)
    scale = source.air_kerma_strength_u
    path = key = None
    if cache_dir is not None:
        key = matrix_key(points_mm, seeds_mm, axes, unit, formalism, storage)
        path = Path(cache_dir) / f"{key}.h5"
        if path.exists():
            shape = (len(points_mm), len(seeds_mm))
            try:
                A = backend.asarray(read_entry(path, key, shape, np.dtype(storage)))
            except DamagedEntry as exc:
                note(f"dose-matrix cache entry {path} cannot be used: it {exc}; recomputing it")
            else:
                A *= scale
                return A, True
    A = influence_matrix(
        points_mm, seeds_mm, axes, unit, formalism=formalism, backend=backend, storage=storage
    )
    if path is not None and key is not None:
        attrs = {
            "model": source.model.model_id,
            "formalism": formalism,
            "engine": ENGINE_VERSION,
            "half_life_d": source.half_life_d,
        }
        write_entry(path, key, backend.to_numpy(A), attrs)
    A *= scale
    return A, False
