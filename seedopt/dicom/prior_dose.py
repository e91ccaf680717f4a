"""The dose of an earlier course (a DICOM RT Dose on its own grid) read for re-irradiation
planning and resampled, trilinearly, at the case's points.

The RT Dose may have any axial grid: frames at increasing or decreasing z (the
GridFrameOffsetVector relative to the first frame, or absolute), uneven frame spacing,
16- or 32-bit pixels times DoseGridScaling, in Gy or cGy. Refused with one line each: another
frame of reference than the case's, a RELATIVE dose or one whose DoseType is not PHYSICAL, a
tilted grid, and, where asked (``covering``), a dose that leaves part of a structure outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from ..errors import SeedoptError
from .files import numbers, read_dataset, require_modality
from .rtdose import scaled_frames

UNITS_GY = {"GY": 1.0, "CGY": 0.01}


@dataclass(frozen=True)
class DoseVolume:
    """A physical dose on an axial grid of its own.

    Attributes
    ----------
    gy : (z, y, x) dose, Gy.
    z_mm, y_mm, x_mm : each axis's coordinates (patient, mm), increasing.
    frame_of_reference_uid : the RT Dose's frame of reference.
    path : where it was read from (for messages).
    """

    gy: np.ndarray
    z_mm: np.ndarray
    y_mm: np.ndarray
    x_mm: np.ndarray
    frame_of_reference_uid: str
    path: Path

    def at(self, points_mm: np.ndarray) -> np.ndarray:
        """The dose (Gy) at ``points_mm`` ((n, 3) x, y, z), trilinear; NaN outside the grid."""
        interp = RegularGridInterpolator(
            (self.z_mm, self.y_mm, self.x_mm), self.gy, bounds_error=False, fill_value=np.nan
        )
        p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        return interp(p[:, ::-1])

    def covering(self, name: str, points_mm: np.ndarray) -> np.ndarray:
        """The dose at ``name``'s points, refusing a dose that does not cover all of them."""
        d = self.at(points_mm)
        outside = np.isnan(d)
        if outside.any():
            raise SeedoptError(
                f"{self.path}: the prior dose does not cover {name}: {outside.sum()} of its "
                f"{d.size} points ({100 * outside.mean():.1f} %) lie outside the RT Dose grid "
                f"(x {self.x_mm[0]:g}..{self.x_mm[-1]:g}, y {self.y_mm[0]:g}..{self.y_mm[-1]:g}, "
                f"z {self.z_mm[0]:g}..{self.z_mm[-1]:g} mm)"
            )
        return d


def read_prior_dose(path: Path, frame_of_reference_uid: str | None) -> DoseVolume:
    """The physical dose of an RT Dose file (Gy), on the case's frame of reference
    ``frame_of_reference_uid`` (None: the case has none to compare with)."""
    path = Path(path)
    ds = read_dataset(path, "RT Dose")
    require_modality(ds, path, "RTDOSE")
    frame = str(ds.get("FrameOfReferenceUID", ""))
    if frame_of_reference_uid is not None and frame != frame_of_reference_uid:
        raise SeedoptError(
            f"{path}: the prior dose is on frame of reference {frame or '(none)'}, not the "
            f"case's ({frame_of_reference_uid}); register it to the case first"
        )
    units = str(ds.get("DoseUnits", "")).upper()
    if units not in UNITS_GY:
        raise SeedoptError(
            f"{path}: DoseUnits {units or '(none)'}: a physical dose in GY or CGY is needed, "
            "not a relative one"
        )
    kind = str(ds.get("DoseType", "")).upper()
    if kind != "PHYSICAL":
        raise SeedoptError(
            f"{path}: DoseType {kind or '(none)'}: the prior course's physical dose is needed "
            "(seedopt converts it to EQD2 itself)"
        )
    gy = scaled_frames(ds, path) * UNITS_GY[units]
    rows, cols = gy.shape[1:]
    x0, y0, z0 = numbers(ds, "ImagePositionPatient", path, count=3)
    row_mm, col_mm = numbers(ds, "PixelSpacing", path, count=2)
    if min(row_mm, col_mm) <= 0:
        raise SeedoptError(f"{path}: PixelSpacing must be positive")
    if len(gy) < 2:
        raise SeedoptError(f"{path}: a prior dose of one frame cannot be interpolated in z")
    offsets = np.asarray(numbers(ds, "GridFrameOffsetVector", path, count=len(gy)), float)
    # relative to the first frame (first offset 0) or absolute z (first offset z0): DICOM
    if abs(offsets[0]) < 1e-6:
        z = z0 + offsets
    elif abs(offsets[0] - z0) < 1e-3:
        z = offsets
    else:
        raise SeedoptError(
            f"{path}: GridFrameOffsetVector starts at {offsets[0]:g}, neither 0 (relative) "
            f"nor the first frame's z {z0:g} (absolute)"
        )
    step = np.diff(z)
    if not (np.all(step > 0) or np.all(step < 0)):
        raise SeedoptError(f"{path}: the frames' z positions are not strictly monotonic")
    if step[0] < 0:
        z, gy = z[::-1], gy[::-1]
    return DoseVolume(
        gy=np.ascontiguousarray(gy),
        z_mm=z,
        y_mm=y0 + row_mm * np.arange(rows),
        x_mm=x0 + col_mm * np.arange(cols),
        frame_of_reference_uid=frame,
        path=path,
    )
