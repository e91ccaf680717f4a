"""RT Dose export (total dose of the permanent implant, Gy, on the case's dose grid and frame
of reference) and import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ..case.grid import Grid
from ..errors import SeedoptError
from .files import (
    RT_DOSE_STORAGE,
    Study,
    integer,
    new_dataset,
    number,
    numbers,
    read_dataset,
    require_modality,
    save,
)

UINT32_MAX = 2**32 - 1


def build_rtdose(
    dose_gy: np.ndarray,
    grid: Grid,
    study: Study,
    rtplan: Dataset | None,
    bits: int = 32,
    *,
    effective: str | None = None,
) -> Dataset:
    """An RT Dose of ``dose_gy`` (shape ``grid.shape``, Gy) as unsigned integers of ``bits``
    bits times DoseGridScaling, axial, referencing ``rtplan`` (DoseSummationType PLAN; without
    a plan PLAN_OVERVIEW). ``effective``: the dose is a biologically weighted one (DoseType
    EFFECTIVE), described by this comment (at most 64 characters)."""
    if dose_gy.shape != grid.shape:
        raise ValueError(f"dose shape {dose_gy.shape} differs from the grid's {grid.shape}")
    ds = new_dataset(
        RT_DOSE_STORAGE, "RTDOSE", study, "seedopt EQD2" if effective else "seedopt total dose"
    )
    nz, ny, nx = grid.shape
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [round(float(v), 4) for v in grid.origin_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    sx, sy, sz = grid.spacing_mm
    ds.PixelSpacing = [sy, sx]  # row spacing (y), column spacing (x)
    ds.SliceThickness = sz
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = 0x3004000C  # GridFrameOffsetVector
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = "EFFECTIVE" if effective else "PHYSICAL"
    # PLAN requires the plan's reference; without one (post-implant dosimetry of seeds as
    # placed) the dose is an overview of the implant, not for treatment.
    ds.DoseSummationType = "PLAN" if rtplan is not None else "PLAN_OVERVIEW"
    ds.DoseComment = effective or "TG-43U1 total dose of the permanent implant"
    ds.GridFrameOffsetVector = [round(k * sz, 4) for k in range(nz)]
    top = float(np.max(dose_gy)) if dose_gy.size else 0.0
    levels = 2**bits - 1
    scale = top / levels if top > 0 else 1.0
    ds.DoseGridScaling = f"{scale:.8e}"  # DS: at most 16 characters
    scale = float(ds.DoseGridScaling)
    dtype = np.uint32 if bits == 32 else np.uint16
    counts = np.rint(np.asarray(dose_gy, dtype=np.float64) / scale)
    ds.PixelData = np.clip(counts, 0, levels).astype(dtype).tobytes()
    if rtplan is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = rtplan.SOPClassUID
        ref.ReferencedSOPInstanceUID = rtplan.SOPInstanceUID
        ds.ReferencedRTPlanSequence = Sequence([ref])
    return ds


def write_rtdose(
    dose_gy: np.ndarray, grid: Grid, study: Study, rtplan: Dataset | None, path: Path
) -> Dataset:
    ds = build_rtdose(dose_gy, grid, study, rtplan)
    save(ds, path)
    return ds


def scaled_frames(ds: Dataset, path: Path) -> np.ndarray:
    """The frames (frames, rows, columns) of an axial RT Dose times DoseGridScaling, in its
    DoseUnits; a tilted grid or undecodable pixels are refused in one line."""
    if not np.allclose(numbers(ds, "ImageOrientationPatient", path, count=6), [1, 0, 0, 0, 1, 0]):
        raise SeedoptError(f"{path}: the RT Dose is not axial (ImageOrientationPatient)")
    rows, cols = integer(ds, "Rows", path), integer(ds, "Columns", path)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # the pixel decoders raise many types
        raise SeedoptError(f"{path}: PixelData cannot be decoded: {exc}") from None
    return pixels.astype(np.float64).reshape(-1, rows, cols) * number(ds, "DoseGridScaling", path)


def read_rtdose(path: Path) -> tuple[np.ndarray, Grid]:
    """Dose (Gy, (z, y, x)) and grid of an axial RT Dose with a uniform frame offset."""
    path = Path(path)
    ds = read_dataset(path, "RT Dose")
    require_modality(ds, path, "RTDOSE")
    dose = scaled_frames(ds, path)
    offsets = numbers(ds, "GridFrameOffsetVector", path, count=len(dose))
    sz = float(np.diff(offsets).mean()) if len(offsets) > 1 else number(ds, "SliceThickness", path)
    x, y, z = numbers(ds, "ImagePositionPatient", path, count=3)
    row, col = numbers(ds, "PixelSpacing", path, count=2)
    if min(row, col, sz) <= 0:
        raise SeedoptError(f"{path}: PixelSpacing and frame spacing must be positive")
    grid = Grid(
        (float(x), float(y), float(z + offsets[0])),
        (float(col), float(row), sz),
        dose.shape,  # type: ignore[arg-type]
    )
    return dose, grid
