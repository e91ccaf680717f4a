"""A case's DICOM images: the structure set and, optionally, the CT it was drawn on, checked
against each other (one frame of reference, contours inside the CT)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..case.ct_volume import CTVolume, crop_to
from ..case.grid import Grid
from ..errors import SeedoptError
from .ct import CTSeries, body_from_ct, ct_body_voxels, load_ct
from .files import Study
from .rtstruct import StructureSet, load_rtstruct, rasterize

EDGE_TOLERANCE_MM = 0.5


@dataclass(frozen=True)
class CaseImages:
    """The structure set, the CT (None: structures alone, TG-43 assumes water) and the slice
    thickness contours stand for (mm)."""

    structure_set: StructureSet
    ct: CTSeries | None
    slice_thickness_mm: float

    @property
    def study(self) -> Study:
        return self.structure_set.study

    def roi_mask(self, selector: str, grid: Grid, key: str = "roi") -> np.ndarray:
        """The ROI ``selector`` names (a name, case-insensitive, or ``#N`` for ROI number N;
        see ``StructureSet.roi``) as a boolean mask on ``grid``."""
        roi = self.structure_set.roi(selector, key)
        if not roi.planes:
            raise SeedoptError(f"{key}: structure {roi.name!r} has no contours")
        return rasterize(roi, grid, self.slice_thickness_mm) >= 0.5

    def body_mask(self, grid: Grid, threshold_hu: float, key: str = "body") -> np.ndarray:
        """The body derived from the CT (see ``body_from_ct``)."""
        if self.ct is None:
            raise SeedoptError(f"{key}: deriving the body needs a CT (dicom.ct)")
        return body_from_ct(self.ct, grid, threshold_hu)

    def ct_volume(self, grid: Grid) -> CTVolume | None:
        """The CT over ``grid`` on the CT's own voxels, for the needle-path rules (None
        without a CT): HU and the body derived at the default threshold."""
        if self.ct is None:
            return None
        return crop_to(self.ct.hu, self._ct_body, self.ct.grid, grid)

    @cached_property
    def _ct_body(self) -> np.ndarray:
        """The body on the CT's voxels, derived once (cases are built more than once from
        the same images: ``seedopt.beyond_grid``)."""
        assert self.ct is not None
        return ct_body_voxels(self.ct)


def _check_inside_ct(ss: StructureSet, ct: CTSeries) -> None:
    lo, hi = ct.bounds_mm()
    tol = np.array([EDGE_TOLERANCE_MM, EDGE_TOLERANCE_MM, 0.01])
    for roi in ss.rois:
        pts = roi.points_mm()
        if not len(pts):
            continue
        out = np.any((pts < lo - tol) | (pts > hi + tol), axis=1)
        if out.any():
            p = pts[np.argmax(out)]
            raise SeedoptError(
                f"{ss.path.name}: structure {roi.name!r} has contours outside the CT (point "
                f"{np.round(p, 1).tolist()} mm; the CT covers x {lo[0]:.1f}..{hi[0]:.1f}, "
                f"y {lo[1]:.1f}..{hi[1]:.1f}, z {lo[2]:.1f}..{hi[2]:.1f} mm)"
            )


def case_images(
    ss: StructureSet, series: CTSeries | None, slice_thickness_mm: float | None = None
) -> CaseImages:
    """Cross-check a structure set and its CT (see ``load_images``)."""
    if series is not None:
        if ss.frame_of_reference_uid != series.frame_of_reference_uid:
            raise SeedoptError(
                f"{ss.path.name}: the structure set's frame of reference "
                f"{ss.frame_of_reference_uid} is not the CT's ({series.frame_of_reference_uid})"
            )
        _check_inside_ct(ss, series)
        thickness = slice_thickness_mm or series.grid.spacing_mm[2]
    else:
        thickness = slice_thickness_mm or ss.plane_spacing_mm()  # type: ignore[assignment]
        if thickness is None:
            raise SeedoptError(
                f"{ss.path.name}: contours lie on one plane; give dicom.slice_thickness_mm"
            )
    return CaseImages(ss, series, float(thickness))


def load_images(
    rtstruct: Path, ct: Path | None = None, slice_thickness_mm: float | None = None
) -> CaseImages:
    """Read and cross-check a structure set and its CT.

    Raises
    ------
    SeedoptError
        The structure set is on another frame of reference than the CT, has contours outside
        it, or (without a CT) the slice thickness cannot be told from the contours.
    """
    series = load_ct(ct) if ct is not None else None
    return case_images(load_rtstruct(rtstruct), series, slice_thickness_mm)
