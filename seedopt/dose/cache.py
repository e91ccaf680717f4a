"""HDF5 cache of dose-influence matrices, keyed by geometry, source model and formalism.

Matrices are stored per unit air-kerma strength (Gy per U per seed), so re-planning a case
with new goals, a new prescription or another seed strength reuses them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..backend import Backend
from ..sources import Source
from .influence import influence_matrix

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
    cache. ``cache_dir=None`` disables caching. Files are written atomically."""
    import h5py

    unit = Source(source.model, 1.0, source.half_life_d)
    scale = source.air_kerma_strength_u
    path = None
    if cache_dir is not None:
        path = (
            Path(cache_dir)
            / f"{matrix_key(points_mm, seeds_mm, axes, unit, formalism, storage)}.h5"
        )
        if path.exists():
            try:
                with h5py.File(path, "r") as f:
                    A = backend.asarray(np.asarray(f["A_gy_per_u"]))
                A *= scale
                return A, True
            except (OSError, KeyError):
                path.unlink(missing_ok=True)  # a damaged entry is recomputed
    A = influence_matrix(
        points_mm, seeds_mm, axes, unit, formalism=formalism, backend=backend, storage=storage
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("A_gy_per_u", data=backend.to_numpy(A))
            f.attrs.update(
                model=source.model.model_id,
                formalism=formalism,
                engine=ENGINE_VERSION,
                half_life_d=source.half_life_d,
            )
    A *= scale
    return A, False
