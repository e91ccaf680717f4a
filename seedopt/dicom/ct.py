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
from .files import Study, has_preamble, integer, number, numbers, read_dataset

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
    """The CT slices under ``directory``: files without the DICOM preamble and DICOM files of
    other modalities are skipped; a DICOM file that is cut or damaged is an error."""
    if not directory.is_dir():
        raise SeedoptError(f"--ct {directory}: not a folder of CT slices")
    found: list[tuple[Path, pydicom.Dataset]] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if not has_preamble(path):
            continue
        ds = read_dataset(path, "DICOM")
        if ds.get("Modality") == "CT":
            found.append((path, ds))
    if not found:
        raise SeedoptError(f"--ct {directory}: no CT slices (DICOM files of modality CT)")
    return found


def _hu(path: Path, ds: pydicom.Dataset, shape: tuple[int, int]) -> np.ndarray:
    """One slice in HU: its pixels decoded and rescaled, or an error naming the slice."""
    if "PixelData" not in ds:
        raise SeedoptError(f"{path}: PixelData is missing")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # the pixel decoders raise many types
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", str(syntax))
        hint = (
            "; convert the series to an uncompressed transfer syntax (e.g. gdcmconv --raw)"
            if getattr(syntax, "is_compressed", False)
            else ""
        )
        reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
        raise SeedoptError(
            f"{path}: PixelData cannot be decoded (transfer syntax {name}): {reason}{hint}"
        ) from None
    if pixels.shape != shape:
        raise SeedoptError(
            f"{path}: PixelData decodes to {pixels.shape}, expected Rows x Columns {shape}"
        )
    slope = number(ds, "RescaleSlope", path) if "RescaleSlope" in ds else 1.0
    intercept = number(ds, "RescaleIntercept", path) if "RescaleIntercept" in ds else 0.0
    return pixels.astype(np.float32) * slope + intercept


def _geometry(path: Path, ds: pydicom.Dataset) -> tuple[tuple[int, int], np.ndarray]:
    """(Rows, Columns) and the positive PixelSpacing (row, column) of one slice, mm."""
    shape = (integer(ds, "Rows", path), integer(ds, "Columns", path))
    if min(shape) <= 0:
        raise SeedoptError(f"{path.name}: Rows x Columns is {shape[0]} x {shape[1]}")
    pixel = numbers(ds, "PixelSpacing", path, count=2)
    if np.any(pixel <= 0):
        raise SeedoptError(f"{path.name}: PixelSpacing {pixel.tolist()} mm must be positive")
    return shape, pixel


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
    shape, pixel = _geometry(files[0][0], first)  # row spacing (y), column spacing (x)
    for path, ds in files:
        iop = numbers(ds, "ImageOrientationPatient", path, count=6)
        if not np.allclose(iop, AXIAL, atol=1e-3):
            raise SeedoptError(
                f"--ct {directory}: {path.name} is not axial (ImageOrientationPatient "
                f"{np.round(iop, 3).tolist()}; seedopt reads [1, 0, 0, 0, 1, 0] only)"
            )
        size, spacing = _geometry(path, ds)
        if size != shape or not np.allclose(spacing, pixel):
            raise SeedoptError(f"--ct {directory}: {path.name} differs in size or pixel spacing")
    where = {id(ds): numbers(ds, "ImagePositionPatient", p, count=3) for p, ds in files}
    files.sort(key=lambda f: float(where[id(f[1])][2]))
    positions = np.array([where[id(ds)] for _, ds in files])
    if not np.allclose(positions[:, :2], positions[0, :2], atol=1e-3):
        raise SeedoptError(f"--ct {directory}: slices are not stacked along z (x, y differ)")
    z = positions[:, 2]
    if len(z) == 1:
        dz = number(first, "SliceThickness", files[0][0])  # one slice: no spacing to tell
        if dz <= 0:
            raise SeedoptError(f"{files[0][0].name}: SliceThickness {dz:g} mm must be positive")
    else:
        dz = _uniform_step(z, directory)
    hu = np.stack([_hu(path, ds, shape) for path, ds in files])
    grid = Grid(
        (float(positions[0, 0]), float(positions[0, 1]), float(z[0])),
        (float(pixel[1]), float(pixel[0]), dz),
        hu.shape,  # type: ignore[arg-type]
    )
    return CTSeries(
        hu,
        grid,
        Study.of(first, frame_uid, f"the CT ({files[0][0].name})"),
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


def ct_body_voxels(ct: CTSeries, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """The body on the CT's own voxels: those above ``threshold_hu``, the largest connected
    component, holes filled slice by slice (lungs, bowel gas), (nz, ny, nx) bool."""
    above = ct.hu > threshold_hu
    labels, n = ndimage.label(above)
    if n == 0:
        raise SeedoptError(f"no CT voxel above {threshold_hu:g} HU: cannot derive the body")
    sizes = np.bincount(labels.ravel())[1:]
    body = labels == (int(np.argmax(sizes)) + 1)
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def body_from_ct(ct: CTSeries, grid: Grid, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """The body on ``grid`` (``ct_body_voxels``), read at each grid voxel's centre."""
    body = ct_body_voxels(ct, threshold_hu)
    idx = ct.grid.mm_to_index(grid.points_mm())
    inside = ct.grid.contains_index(idx)
    out = np.zeros(len(idx), dtype=bool)
    out[inside] = body[tuple(idx[inside].T)]
    return out.reshape(grid.shape)
