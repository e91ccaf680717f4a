"""RT Structure Set import and contour rasterization onto a dose grid.

A contour at height z stands for the slab z +- t/2, t the slice thickness (the CT's, or the
spacing of the contour planes). Each voxel is sampled at ``SUBSAMPLES`` x ``SUBSAMPLES``
points in plane and ``SUBSAMPLES`` heights; a sample is inside a structure when an odd number
of the structure's contours on the nearest plane enclose it (so holes subtract and separate
islands add), and a voxel belongs to the structure when at least half its samples do.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ..case.grid import Grid
from ..errors import SeedoptError
from .files import Study, integer, numbers, read_dataset, require_modality, sequence

SUBSAMPLES = 4
PLANE_DECIMALS = 2  # contour heights are grouped to 0.01 mm


@dataclass(frozen=True)
class ROI:
    """One structure of a structure set.

    Attributes
    ----------
    number : ROI Number.
    name : ROI Name as the planning system wrote it.
    interpreted_type : RT ROI Interpreted Type (EXTERNAL, ORGAN, PTV, ...; "" when absent).
    planes : z (mm) -> list of (n, 2) x, y polygons (mm) of the closed planar contours there.
    """

    number: int
    name: str
    interpreted_type: str
    planes: dict[float, list[np.ndarray]] = field(repr=False)

    def points_mm(self) -> np.ndarray:
        """(n, 3) every contour point, mm."""
        pts = [
            np.column_stack([p, np.full(len(p), z)]) for z, ps in self.planes.items() for p in ps
        ]
        return np.concatenate(pts) if pts else np.zeros((0, 3))


ROI_NUMBER = re.compile(r"^#(\d+)$")


@dataclass(frozen=True)
class StructureSet:
    """An RT Structure Set: its ROIs (in the file's order) and what new objects must
    reference."""

    path: Path
    rois: tuple[ROI, ...]
    study: Study
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str

    @property
    def frame_of_reference_uid(self) -> str:
        return self.study.frame_of_reference_uid

    def numbered(self, number: int, key: str = "roi") -> ROI:
        """The ROI whose ROI Number is ``number``; an error listing the numbers otherwise."""
        for r in self.rois:
            if r.number == number:
                return r
        listed = ", ".join(f"{r.number} {r.name!r}" for r in self.rois)
        raise SeedoptError(f"{key}: no ROI number {number} in {self.path.name} (ROIs: {listed})")

    def roi(self, selector: str, key: str = "roi") -> ROI:
        """The ROI ``selector`` names: ``#N`` is ROI number N, anything else a ROI name
        (case-insensitive; an exact match wins over a case-folded one). A name two ROIs share
        is an error listing their numbers; an unknown name one with a suggestion."""
        m = ROI_NUMBER.match(selector.strip())
        if m:
            return self.numbered(int(m.group(1)), key)
        exact = [r for r in self.rois if r.name == selector]
        folded = [r for r in self.rois if r.name.casefold() == selector.casefold()]
        found = exact if len(exact) == 1 else folded
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            numbers = ", ".join(f"#{r.number} {r.name!r}" for r in found)
            raise SeedoptError(
                f"{key}: {len(found)} ROIs of {self.path.name} are named {selector!r} "
                f'({numbers}); select one by its number, as "#{found[0].number}" (or '
                f"roi_number: {found[0].number} in a config)"
            )
        names = {r.name.casefold(): r.name for r in self.rois}
        match = difflib.get_close_matches(selector.casefold(), list(names), n=1, cutoff=0.5)
        hint = (
            f" (did you mean {names[match[0]]!r}?)"
            if match
            else f" (structures: {', '.join(r.name for r in self.rois)})"
        )
        raise SeedoptError(f"{key}: no structure named {selector!r} in {self.path.name}{hint}")

    def shares_name(self, roi: ROI) -> bool:
        """Whether another ROI has ``roi``'s name (case-insensitively)."""
        return sum(r.name.casefold() == roi.name.casefold() for r in self.rois) > 1

    def plane_spacing_mm(self) -> float | None:
        """The most common distance between neighbouring contour planes, mm (None: < 2 planes)."""
        zs = np.unique(np.concatenate([list(r.planes) for r in self.rois] or [[]]))
        steps = np.round(np.diff(zs), PLANE_DECIMALS)
        steps = steps[steps > 0]
        if steps.size == 0:
            return None
        values, counts = np.unique(steps, return_counts=True)
        return float(values[np.argmax(counts)])


def _contour_points(c: Dataset, path: Path, where: str) -> np.ndarray:
    """(n, 3) points of one contour, checked against NumberOfContourPoints."""
    data = numbers(c, "ContourData", path, where)
    if len(data) % 3:
        raise SeedoptError(
            f"{path.name}: {where}ContourData has {len(data)} values, not a multiple of 3 "
            "(x, y, z per point)"
        )
    if "NumberOfContourPoints" in c:
        declared = integer(c, "NumberOfContourPoints", path, where)
        if declared != len(data) // 3:
            raise SeedoptError(
                f"{path.name}: {where}ContourData holds {len(data) // 3} points but "
                f"NumberOfContourPoints is {declared} (a cut or edited file?)"
            )
    return data.reshape(-1, 3)


def _roi_contours(ds: Dataset, path: Path, numbers_known: set[int]) -> dict[int, Dataset]:
    """ROIContourSequence items by their ReferencedROINumber, each naming a known ROI once."""
    out: dict[int, Dataset] = {}
    for k, item in enumerate(sequence(ds, "ROIContourSequence")):
        number = integer(item, "ReferencedROINumber", path, f"ROIContourSequence[{k}].")
        if number not in numbers_known:
            raise SeedoptError(
                f"{path.name}: ROIContourSequence[{k}].ReferencedROINumber {number} names no "
                "ROI of the StructureSetROISequence"
            )
        if number in out:
            raise SeedoptError(
                f"{path.name}: ROIContourSequence holds two items for ROI number {number}"
            )
        out[number] = item
    return out


def load_rtstruct(path: Path) -> StructureSet:
    """Read an RT Structure Set's ROIs and closed planar contours (axial planes only).

    Raises
    ------
    SeedoptError
        A cut or damaged file, two ROIs with one number, a contour item without its ROI or
        with malformed points, contours off axial planes, more than one frame of reference.
    """
    path = Path(path)
    ds = read_dataset(path, "RT Structure Set")
    require_modality(ds, path, "RTSTRUCT")
    frames = {
        str(f.get("FrameOfReferenceUID", ""))
        for f in sequence(ds, "ReferencedFrameOfReferenceSequence")
    }
    frames |= {
        str(r.ReferencedFrameOfReferenceUID)
        for r in sequence(ds, "StructureSetROISequence")
        if "ReferencedFrameOfReferenceUID" in r
    }
    frames.discard("")
    if len(frames) != 1:
        raise SeedoptError(
            f"{path}: the structure set names {len(frames)} frames of reference; seedopt "
            "reads structure sets on one"
        )
    declared: dict[int, str] = {}
    for k, r in enumerate(sequence(ds, "StructureSetROISequence")):
        number = integer(r, "ROINumber", path, f"StructureSetROISequence[{k}].")
        if number in declared:
            raise SeedoptError(
                f"{path.name}: ROI number {number} is used twice in the StructureSetROISequence "
                f"({declared[number]!r} and {str(r.get('ROIName', ''))!r})"
            )
        declared[number] = str(r.get("ROIName", "") or "")
    for keyword in ("ROIContourSequence", "RTROIObservationsSequence"):
        if declared and keyword not in ds:
            raise SeedoptError(
                f"{path.name}: {keyword} is missing ({len(declared)} ROIs declared; required "
                "in a structure set: a cut file?)"
            )
    types: dict[int, str] = {}
    for k, o in enumerate(sequence(ds, "RTROIObservationsSequence")):
        number = integer(o, "ReferencedROINumber", path, f"RTROIObservationsSequence[{k}].")
        types[number] = str(o.get("RTROIInterpretedType", "") or "")
    contours = _roi_contours(ds, path, set(declared))
    rois: list[ROI] = []
    for number, name in declared.items():
        planes: dict[float, list[np.ndarray]] = {}
        item = contours.get(number)
        for j, c in enumerate(sequence(item, "ContourSequence") if item is not None else []):
            if c.get("ContourGeometricType", "CLOSED_PLANAR") != "CLOSED_PLANAR":
                continue
            where = f"ROI {number} {name!r} ContourSequence[{j}]."
            pts = _contour_points(c, path, where)
            if np.ptp(pts[:, 2]) > 10**-PLANE_DECIMALS:
                raise SeedoptError(f"{path}: a contour of {name!r} is not in an axial plane")
            z = round(float(pts[0, 2]), PLANE_DECIMALS)
            planes.setdefault(z, []).append(pts[:, :2])
        rois.append(ROI(number, name, types.get(number, ""), planes))
    study = Study.of(ds, frames.pop(), path.name)
    return StructureSet(
        path,
        tuple(rois),
        study,
        str(ds.get("SOPClassUID", "")),
        str(ds.get("SOPInstanceUID", "")),
        str(ds.get("SeriesInstanceUID", "")),
    )


def _sub_offsets(spacing: float, n: int) -> np.ndarray:
    return ((np.arange(n) + 0.5) / n - 0.5) * spacing


def even_odd_inside(polygons: list[np.ndarray], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(len(ys), len(xs)) whether each point of the lattice ``xs`` x ``ys`` (ascending, mm) is
    enclosed by an odd number of ``polygons`` ((n, 2) x, y vertices, closed implicitly).

    Scanline fill: each edge crosses the rows with min(y0, y1) <= y < max(y0, y1); a point is
    inside when an odd number of crossings lie to its left.
    """
    edges = [(p, np.roll(p, -1, axis=0)) for p in polygons if len(p) >= 3]
    n_rows, n_cols = len(ys), len(xs)
    if not edges:
        return np.zeros((n_rows, n_cols), dtype=bool)
    a = np.concatenate([e[0] for e in edges])
    b = np.concatenate([e[1] for e in edges])
    lo = np.searchsorted(ys, np.minimum(a[:, 1], b[:, 1]), side="left")
    hi = np.searchsorted(ys, np.maximum(a[:, 1], b[:, 1]), side="left")
    counts = hi - lo
    edge = np.repeat(np.arange(len(a)), counts)
    row = lo[edge] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    (x0, y0), (x1, y1) = a[edge].T, b[edge].T
    x_cross = x0 + (ys[row] - y0) * (x1 - x0) / (y1 - y0)
    col = np.searchsorted(xs, x_cross, side="right")  # first sample right of the crossing
    toggles = np.bincount(row * (n_cols + 1) + col, minlength=n_rows * (n_cols + 1))
    parity = np.cumsum(toggles.reshape(n_rows, n_cols + 1)[:, :n_cols], axis=1) % 2
    return parity.astype(bool)


def _plane_fraction(
    polygons: list[np.ndarray], x_mm: np.ndarray, y_mm: np.ndarray, sx: float, sy: float, n: int
) -> np.ndarray:
    """(len(y), len(x)) fraction of each voxel's n x n in-plane samples inside the polygons
    (even-odd rule over all polygons of the plane)."""
    xs = (x_mm[:, None] + _sub_offsets(sx, n)[None, :]).ravel()
    ys = (y_mm[:, None] + _sub_offsets(sy, n)[None, :]).ravel()
    inside = even_odd_inside(polygons, xs, ys)
    return inside.reshape(len(y_mm), n, len(x_mm), n).mean(axis=(1, 3))


def rasterize(
    roi: ROI, grid: Grid, slice_thickness_mm: float, subsamples: int = SUBSAMPLES
) -> np.ndarray:
    """Occupancy of each grid voxel by ``roi`` (0..1, shape ``grid.shape``), by sub-voxel
    sampling; see the module docstring."""
    frac = np.zeros(grid.shape, dtype=np.float32)
    if not roi.planes:
        return frac
    zs = np.array(sorted(roi.planes))
    pts = roi.points_mm()
    x_axis, y_axis, z_axis = grid.axes_mm()
    sx, sy, sz = grid.spacing_mm
    cols = np.flatnonzero(
        (x_axis + sx / 2 >= pts[:, 0].min()) & (x_axis - sx / 2 <= pts[:, 0].max())
    )
    rows = np.flatnonzero(
        (y_axis + sy / 2 >= pts[:, 1].min()) & (y_axis - sy / 2 <= pts[:, 1].max())
    )
    if not cols.size or not rows.size:
        return frac
    cache: dict[float, np.ndarray] = {}
    half = slice_thickness_mm / 2 + 1e-6
    for k, zc in enumerate(z_axis):
        for dz in _sub_offsets(sz, subsamples):
            z = zc + dz
            j = int(np.argmin(np.abs(zs - z)))
            if abs(zs[j] - z) > half:
                continue
            plane = float(zs[j])
            if plane not in cache:
                cache[plane] = _plane_fraction(
                    roi.planes[plane], x_axis[cols], y_axis[rows], sx, sy, subsamples
                )
            frac[k, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] += cache[plane] / subsamples
    return frac
