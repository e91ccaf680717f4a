"""CT series import (one series, one frame of reference, axial, uniform slices) and the body
derived from it (HU threshold, largest component, holes filled)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from scipy import ndimage

from ..case.grid import Grid
from ..errors import SeedoptError
from .files import Study

AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
BODY_THRESHOLD_HU = -300.0


@dataclass(frozen=True)
class CTSeries:
    """A CT volume in Hounsfield units on its own grid.

    Attributes
    ----------
    hu : (nz, ny, nx) float32, Hounsfield units, slices sorted by z (inferior first).
    grid : the CT's voxel centres (x, y, z, mm), axial, uniform spacing.
    study : patient, study and frame of reference, as a new object should copy them.
    series_instance_uid : the series' UID.
    sop_instance_uids : one per slice, in ``hu``'s order.
    """

    hu: np.ndarray
    grid: Grid
    study: Study
    series_instance_uid: str
    sop_instance_uids: tuple[str, ...]

    @property
    def frame_of_reference_uid(self) -> str:
        return self.study.frame_of_reference_uid

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y, z) low and high edges of the volume (voxel centres +- half a voxel), mm."""
        return _edges(self.grid)


def _edges(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    spacing = np.asarray(grid.spacing_mm)
    lo = np.asarray(grid.origin_mm) - spacing / 2
    return lo, lo + np.asarray(grid.shape[::-1]) * spacing


def _ct_files(directory: Path) -> list[tuple[Path, pydicom.Dataset]]:
    if not directory.is_dir():
        raise SeedoptError(f"--ct {directory}: not a folder of CT slices")
    found: list[tuple[Path, pydicom.Dataset]] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
        if ds.get("Modality") == "CT":
            found.append((path, ds))
    if not found:
        raise SeedoptError(f"--ct {directory}: no CT slices (DICOM files of modality CT)")
    return found


def _one(values: dict[str, int], what: str, directory: Path) -> str:
    if len(values) > 1:
        listed = ", ".join(f"{uid} ({n} slices)" for uid, n in values.items())
        raise SeedoptError(f"--ct {directory}: {len(values)} {what} mixed: {listed}")
    return next(iter(values))


def load_ct(directory: Path) -> CTSeries:
    """Read the CT slices in ``directory`` (other modalities are skipped) into one volume.

    Raises
    ------
    SeedoptError
        Two series or frames of reference mixed, a non-axial orientation, slices of different
        size, a duplicate or missing slice (non-uniform spacing).
    """
    directory = Path(directory)
    files = _ct_files(directory)
    series: dict[str, int] = {}
    frames: dict[str, int] = {}
    for _, ds in files:
        series[ds.SeriesInstanceUID] = series.get(ds.SeriesInstanceUID, 0) + 1
        frame = str(ds.get("FrameOfReferenceUID", "none"))
        frames[frame] = frames.get(frame, 0) + 1
    series_uid = _one(series, "series", directory)
    frame_uid = _one(frames, "frames of reference", directory)
    first = files[0][1]
    shape = (int(first.Rows), int(first.Columns))
    pixel = [float(v) for v in first.PixelSpacing]  # row spacing (y), column spacing (x)
    for path, ds in files:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        if not np.allclose(iop, AXIAL, atol=1e-3):
            raise SeedoptError(
                f"--ct {directory}: {path.name} is not axial (ImageOrientationPatient "
                f"{np.round(iop, 3).tolist()}; seedopt reads [1, 0, 0, 0, 1, 0] only)"
            )
        if (int(ds.Rows), int(ds.Columns)) != shape or not np.allclose(
            [float(v) for v in ds.PixelSpacing], pixel
        ):
            raise SeedoptError(f"--ct {directory}: {path.name} differs in size or pixel spacing")
    files.sort(key=lambda f: float(f[1].ImagePositionPatient[2]))
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in files])
    if not np.allclose(positions[:, :2], positions[0, :2], atol=1e-3):
        raise SeedoptError(f"--ct {directory}: slices are not stacked along z (x, y differ)")
    z = positions[:, 2]
    dz = float(first.get("SliceThickness") or 1.0) if len(z) == 1 else _uniform_step(z, directory)
    hu = np.stack(
        [
            ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1.0))
            + float(ds.get("RescaleIntercept", 0.0))
            for _, ds in files
        ]
    )
    grid = Grid(
        (float(positions[0, 0]), float(positions[0, 1]), float(z[0])),
        (pixel[1], pixel[0], dz),
        hu.shape,  # type: ignore[arg-type]
    )
    return CTSeries(
        hu,
        grid,
        Study.of(first, frame_uid),
        series_uid,
        tuple(str(ds.SOPInstanceUID) for _, ds in files),
    )


def _uniform_step(z: np.ndarray, directory: Path) -> float:
    """The slice spacing, or an error naming the duplicate or missing slice."""
    steps = np.diff(z)
    if (steps < 1e-3).any():
        k = int(np.argmax(steps < 1e-3))
        raise SeedoptError(f"--ct {directory}: two slices at z = {z[k]:g} mm")
    step = float(np.min(steps))
    bad = np.flatnonzero(np.abs(steps - step) > 0.01 * step + 1e-3)
    if bad.size:
        k = int(bad[0])
        raise SeedoptError(
            f"--ct {directory}: missing slice between z = {z[k]:g} and {z[k + 1]:g} mm "
            f"(slices are {step:g} mm apart elsewhere)"
        )
    return step


def body_from_ct(ct: CTSeries, grid: Grid, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """The body on ``grid``: CT voxels above ``threshold_hu``, the largest connected component,
    holes filled slice by slice (lungs, bowel gas), read at each grid voxel's centre."""
    above = ct.hu > threshold_hu
    labels, n = ndimage.label(above)
    if n == 0:
        raise SeedoptError(f"no CT voxel above {threshold_hu:g} HU: cannot derive the body")
    sizes = np.bincount(labels.ravel())[1:]
    body = labels == (int(np.argmax(sizes)) + 1)
    body = np.stack([ndimage.binary_fill_holes(s) for s in body])
    idx = ct.grid.mm_to_index(grid.points_mm())
    inside = ct.grid.contains_index(idx)
    out = np.zeros(len(idx), dtype=bool)
    out[inside] = body[tuple(idx[inside].T)]
    return out.reshape(grid.shape)
