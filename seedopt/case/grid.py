"""The regular dose grid: voxel centres in patient coordinates (mm), arrays indexed (z, y, x)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backend import free_bytes
from ..errors import SeedoptError

BYTES_PER_VOXEL = 64
"""Working memory per voxel of a case on its grid, bytes (a bool mask per structure, the
float64 temporaries of the shapes, the distance transforms of margins and skin, the dose):
the estimate the memory check of ``Grid.covering`` compares with the memory available."""


@dataclass(frozen=True)
class Grid:
    """A regular grid.

    Attributes
    ----------
    origin_mm : (x, y, z) of the centre of voxel [0, 0, 0], mm.
    spacing_mm : (x, y, z) voxel size, mm.
    shape : (nz, ny, nx), the shape of every array on this grid.
    """

    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    shape: tuple[int, int, int]

    @classmethod
    def covering(
        cls,
        lo_mm: tuple[float, float, float],
        hi_mm: tuple[float, float, float],
        spacing_mm: float | tuple[float, float, float],
    ) -> Grid:
        """The grid whose voxel centres cover the box [lo, hi] (x, y, z, mm); cubic voxels when
        ``spacing_mm`` is one number, else (x, y, z) spacings."""
        step = (spacing_mm,) * 3 if isinstance(spacing_mm, (int, float)) else tuple(spacing_mm)
        with np.errstate(all="ignore"):
            counts = [
                np.floor((h - lo) / s + 1e-9) + 1
                for lo, h, s in zip(lo_mm, hi_mm, step, strict=True)
            ]
        if not all(np.isfinite(c) and c >= 1 for c in counts):
            raise SeedoptError(
                f"grid from {tuple(lo_mm)} to {tuple(hi_mm)} mm with spacing {step} mm: "
                "every bound and spacing must be finite, spacings positive, max >= min"
            )
        check_grid_memory(counts)
        n = [int(c) for c in counts]
        spacing = tuple(float(v) for v in step)
        return cls(tuple(float(v) for v in lo_mm), spacing, (n[2], n[1], n[0]))  # type: ignore[arg-type]

    @property
    def voxel_cc(self) -> float:
        sx, sy, sz = self.spacing_mm
        return sx * sy * sz / 1000.0

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates along x, y and z, mm."""
        nz, ny, nx = self.shape
        return tuple(
            o + s * np.arange(n)
            for o, s, n in zip(self.origin_mm, self.spacing_mm, (nx, ny, nz), strict=True)  # type: ignore[return-value]
        )

    def coordinates_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y, z of every voxel centre, each of shape ``shape`` (broadcast views)."""
        x, y, z = self.axes_mm()
        return x[None, None, :], y[None, :, None], z[:, None, None]

    def points_mm(self, mask: np.ndarray | None = None) -> np.ndarray:
        """(n, 3) x, y, z of the voxel centres in ``mask`` (all voxels when None), C order."""
        idx = np.argwhere(np.ones(self.shape, bool) if mask is None else mask)  # (z, y, x)
        return self.index_to_mm(idx)

    def index_to_mm(self, idx_zyx: np.ndarray) -> np.ndarray:
        """(n, 3) voxel indices (z, y, x) to (n, 3) positions (x, y, z), mm."""
        idx = np.asarray(idx_zyx, dtype=float)
        return np.asarray(self.origin_mm) + idx[:, ::-1] * np.asarray(self.spacing_mm)

    def mm_to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """(n, 3) positions (x, y, z, mm) to nearest voxel indices (z, y, x); may lie outside."""
        p = (np.asarray(points_mm, dtype=float) - np.asarray(self.origin_mm)) / np.asarray(
            self.spacing_mm
        )
        return np.rint(p[:, ::-1]).astype(int)

    def contains_index(self, idx_zyx: np.ndarray) -> np.ndarray:
        return np.all((idx_zyx >= 0) & (idx_zyx < np.asarray(self.shape)), axis=1)


def check_grid_memory(counts_xyz: list[float]) -> None:
    """Refuse, in one line naming what to change, a grid of ``counts_xyz`` voxels along x, y
    and z whose case would not fit in the memory available (``BYTES_PER_VOXEL`` a voxel)."""
    voxels = math.prod(counts_xyz)
    need, free = voxels * BYTES_PER_VOXEL, free_bytes(np)
    if need > free:
        shape = " x ".join(f"{c:.0f}" for c in counts_xyz)
        raise SeedoptError(
            f"a dose grid of {shape} voxels ({voxels:.3g}) needs about {need / 2**30:.3g} GiB "
            f"but {free / 2**30:.3g} GiB is available; use a coarser grid spacing "
            "(grid.spacing_mm, init-case --spacing-mm) or a smaller grid "
            "(grid.min_mm/max_mm, init-case --margin-mm)"
        )
