"""The skin surface of a case: its body mask smoothed into a field whose 0.5 level is the skin.

The body mask is a voxel staircase; a Gaussian of one voxel (``SMOOTHING_VOXELS``) turns it
into a smooth field in [0, 1] whose 0.5 level runs through the staircase's faces on flat
skin. The field is sampled anywhere by trilinear interpolation (beyond the grid, the edge
voxels' values extend outward), and its 0.5 level is meshed by scikit-image's marching
cubes.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes

from ..case import Case

SMOOTHING_VOXELS = 1.0
"""Standard deviation of the Gaussian that smooths the body mask, voxels."""
SKIN_LEVEL = 0.5
"""The level of the smoothed body field taken as the skin."""


class BodyField:
    """The smoothed body mask of a case, sampled at points in patient coordinates (mm)."""

    def __init__(self, case: Case) -> None:
        self.grid = case.grid
        mask = case.masks[case.body].astype(np.float32)
        self.values = ndimage.gaussian_filter(mask, SMOOTHING_VOXELS, mode="nearest")

    def _index(self, points_mm: np.ndarray) -> np.ndarray:
        """(3, n) fractional voxel indices (z, y, x) of the (n, 3) points."""
        p = np.asarray(points_mm, float).reshape(-1, 3)
        return ((p - self.grid.origin_mm) / self.grid.spacing_mm)[:, ::-1].T

    def at(self, points_mm: np.ndarray) -> np.ndarray:
        """(n,) the field at the (n, 3) points: 1 deep in the body, 0 far outside."""
        return ndimage.map_coordinates(self.values, self._index(points_mm), order=1, mode="nearest")

    def on_grid(self, points_mm: np.ndarray) -> np.ndarray:
        """(n,) whether each point lies within the grid's voxel centres."""
        idx = self._index(points_mm)
        top = np.asarray(self.grid.shape, float)[:, None] - 1.0
        return np.all((idx >= 0) & (idx <= top), axis=0)

    def skin_mesh(self, lo_mm: np.ndarray, hi_mm: np.ndarray) -> trimesh.Trimesh:
        """The skin (the field's 0.5 level) within the box [lo, hi] (x, y, z, mm) grown by
        two voxels, as a triangle mesh in mm; marching cubes on the grid's own voxels."""
        g = self.grid
        spacing = np.asarray(g.spacing_mm)
        a = np.floor((np.asarray(lo_mm) - g.origin_mm) / spacing).astype(int) - 2
        b = np.ceil((np.asarray(hi_mm) - g.origin_mm) / spacing).astype(int) + 3
        a = np.clip(a, 0, np.asarray(g.shape[::-1]) - 2)
        b = np.clip(b, a + 2, np.asarray(g.shape[::-1]))
        part = self.values[a[2] : b[2], a[1] : b[1], a[0] : b[0]]
        verts, faces, _, _ = marching_cubes(part, SKIN_LEVEL, spacing=tuple(spacing[::-1]))
        return trimesh.Trimesh(verts[:, ::-1] + g.origin_mm + a * spacing, faces, process=False)
