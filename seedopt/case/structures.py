"""Operations on structure masks: margins and the skin shell (distances in mm)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grid import Grid


def _sampling(grid: Grid) -> tuple[float, float, float]:
    sx, sy, sz = grid.spacing_mm
    return (sz, sy, sx)


def expand(mask: np.ndarray, margin_mm: float, grid: Grid) -> np.ndarray:
    """Voxels within ``margin_mm`` of ``mask`` (Euclidean, voxel centre to voxel centre).

    Measured between centres the expansion is slightly conservative: a sphere grown on a 1 mm
    grid comes out 2-4 % under the exact volume (6-7 % on a 2 mm grid).
    """
    if margin_mm <= 0:
        return mask.copy()
    dist = ndimage.distance_transform_edt(~mask, sampling=_sampling(grid))
    return dist <= margin_mm + 1e-6


def skin_shell(body: np.ndarray, thickness_mm: float, grid: Grid) -> np.ndarray:
    """The outer shell of ``body``: body voxels whose centre lies less than ``thickness_mm``
    deep (the surface taken half a voxel outside the outermost centres). Where the body is cut
    by the grid's edge there is no skin: the real surface lies outside the grid."""
    if body.all() or not body.any():
        return np.zeros_like(body)
    depth = ndimage.distance_transform_edt(body, sampling=_sampling(grid))
    half_voxel = min(grid.spacing_mm) / 2.0
    return body & (depth - half_voxel < thickness_mm - 1e-6)
