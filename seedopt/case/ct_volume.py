"""The part of a case's CT that needle paths are checked against, on the CT's own voxels.

A case built from DICOM with a CT keeps the CT's Hounsfield units over its dose grid (plus
``MAX_MARGIN_MM`` and a voxel's diagonal all round, so the largest clearance margin reaching
past the grid still sees the CT), at the CT's own resolution: thin cortical bone that a 2 mm
dose grid would blur stays resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SeedoptError
from .grid import Grid

MAX_MARGIN_MM = 20.0
"""The largest clearance of a needle path from bone or air, mm (``ct_keepout.margin_mm``)."""


@dataclass(frozen=True)
class CTVolume:
    """CT numbers and the CT-derived body on a crop of the CT's voxel grid.

    Attributes
    ----------
    hu : (nz, ny, nx) float32, Hounsfield units.
    body : (nz, ny, nx) bool, the body as ``seedopt.dicom.ct.body_from_ct`` derives it from
        the whole CT (above the body threshold, largest component, holes filled slice by
        slice), so enclosed gas and lung are inside it and the air around the patient is not.
    grid : the voxel centres of ``hu`` (a crop of the CT's grid), mm.
    """

    hu: np.ndarray = field(repr=False)
    body: np.ndarray = field(repr=False)
    grid: Grid

    def __post_init__(self) -> None:
        if self.hu.shape != self.grid.shape or self.body.shape != self.grid.shape:
            raise SeedoptError("CT volume: HU and body arrays must have the grid's shape")

    @property
    def half_diagonal_mm(self) -> float:
        """Half the diagonal of one CT voxel, mm: the farthest a point lies from the centre of
        the voxel it falls in."""
        return float(np.linalg.norm(self.grid.spacing_mm)) / 2.0

    def bone(self, above_hu: float) -> np.ndarray:
        """(nz, ny, nx) voxels above ``above_hu``."""
        return self.hu > above_hu

    def air_in_body(self, below_hu: float) -> np.ndarray:
        """(nz, ny, nx) voxels below ``below_hu`` inside the body (lung, gas, airways)."""
        return (self.hu < below_hu) & self.body


def crop_to(hu: np.ndarray, body: np.ndarray, ct_grid: Grid, covering: Grid) -> CTVolume:
    """The voxels of a whole CT (``hu``, ``body`` on ``ct_grid``) within ``MAX_MARGIN_MM`` and
    a CT voxel's diagonal of the box of ``covering``'s voxels; an error when the two boxes do
    not overlap."""
    spacing = np.asarray(covering.spacing_mm)
    pad = MAX_MARGIN_MM + 2 * float(np.linalg.norm(ct_grid.spacing_mm))
    lo = np.asarray(covering.origin_mm) - spacing / 2 - pad
    hi = lo + np.asarray(covering.shape[::-1]) * spacing + 2 * pad
    k_lo = np.maximum(ct_grid.mm_to_index(lo[None])[0], 0)
    k_hi = np.minimum(ct_grid.mm_to_index(hi[None])[0], np.asarray(ct_grid.shape) - 1)
    if np.any(k_hi < k_lo):
        raise SeedoptError("the CT does not overlap the dose grid")
    window = tuple(slice(a, b + 1) for a, b in zip(k_lo, k_hi, strict=True))
    origin = ct_grid.index_to_mm(k_lo[None])[0]
    grid = Grid(
        tuple(float(v) for v in origin),  # type: ignore[arg-type]
        ct_grid.spacing_mm,
        tuple(int(b - a + 1) for a, b in zip(k_lo, k_hi, strict=True)),  # type: ignore[arg-type]
    )
    return CTVolume(
        np.ascontiguousarray(hu[window], dtype=np.float32),
        np.ascontiguousarray(body[window], dtype=bool),
        grid,
    )
