"""DICOM series built in the tests: a small CT of a water cylinder and structure sets of
analytic shapes (spheres, boxes, boxes with holes), written with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
SHAPE = (20, 40, 40)  # nz, ny, nx
SPACING_MM = 2.5
ORIGIN_MM = (-48.75, -48.75, -23.75)  # centre of voxel [0, 0, 0]
BODY_RADIUS_MM = 45.0


def _base(sop_class: str, modality: str, study_uid: str, frame_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID = "Phantom^Water", "SEEDOPT-TEST"
    ds.StudyInstanceUID, ds.StudyID = study_uid, "1"
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.Modality = modality
    ds.FrameOfReferenceUID = frame_uid
    return ds


def write_ct(
    folder: Path,
    *,
    study_uid: str,
    frame_uid: str,
    series_uid: str | None = None,
    skip: int | None = None,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    z_offset_mm: float = 0.0,
    inserts: tuple[tuple[float, float, float, float, int], ...] = (),
) -> list[Path]:
    """A water cylinder (radius 45 mm, 0 HU) in air (-1000 HU) with a gas pocket (-800 HU)
    inside it, and ``inserts`` (x0, x1, y0, y1, HU: boxes through every slice, mm, drawn
    last); slice k's corner pixel holds k (to check the order). Files are named in reverse
    order of z so that sorting by name would be wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    nz, ny, nx = SHAPE
    x = ORIGIN_MM[0] + SPACING_MM * np.arange(nx)
    y = ORIGIN_MM[1] + SPACING_MM * np.arange(ny)
    r = np.hypot(x[None, :], y[:, None])
    slice_hu = np.where(r <= BODY_RADIUS_MM, 0, -1000).astype(np.int16)
    slice_hu[np.hypot(x[None, :] + 15, y[:, None] - 10) <= 8] = -800
    for x0, x1, y0, y1, hu in inserts:
        slice_hu[
            (y[:, None] >= y0) & (y[:, None] <= y1) & (x[None, :] >= x0) & (x[None, :] <= x1)
        ] = hu
    paths = []
    for k in range(nz):
        if k == skip:
            continue
        ds = _base(CT_STORAGE, "CT", study_uid, frame_uid)
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [
            ORIGIN_MM[0],
            ORIGIN_MM[1],
            ORIGIN_MM[2] + z_offset_mm + SPACING_MM * k,
        ]
        ds.ImageOrientationPatient = list(orientation)
        ds.PixelSpacing = [SPACING_MM, SPACING_MM]
        ds.SliceThickness = SPACING_MM
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        pixels = slice_hu.copy()
        pixels[0, 0] = -1000 + k
        ds.PixelData = pixels.tobytes()
        path = folder / f"slice_{nz - k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def circle(cx: float, cy: float, r: float, n: int = 72) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])


def square(cx: float, cy: float, half: float) -> np.ndarray:
    return np.array(
        [
            [cx - half, cy - half],
            [cx + half, cy - half],
            [cx + half, cy + half],
            [cx - half, cy + half],
        ]
    )


def sphere_planes(
    centre: tuple[float, float, float], radius: float, zs: np.ndarray
) -> dict[float, list[np.ndarray]]:
    """The sphere's cross-sections on the planes ``zs``, as polygons of 72 vertices."""
    out = {}
    for z in zs:
        h = radius**2 - (z - centre[2]) ** 2
        if h > 0:
            out[float(z)] = [circle(centre[0], centre[1], float(np.sqrt(h)))]
    return out


def ct_planes() -> np.ndarray:
    return ORIGIN_MM[2] + SPACING_MM * np.arange(SHAPE[0])


def write_rtstruct(
    path: Path,
    rois: dict[str, tuple[str, dict[float, list[np.ndarray]]]],
    *,
    study_uid: str,
    frame_uid: str,
) -> Path:
    """An RT Structure Set of ``rois``: name -> (RT ROI Interpreted Type, z -> polygons)."""
    ds = _base(RTSTRUCT_STORAGE, "RTSTRUCT", study_uid, frame_uid)
    ds.SeriesInstanceUID = generate_uid()
    ds.StructureSetLabel = "test"
    ref = Dataset()
    ref.FrameOfReferenceUID = frame_uid
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref])
    rois_seq, contour_seq, obs_seq = [], [], []
    for number, (name, (kind, planes)) in enumerate(rois.items(), start=1):
        r = Dataset()
        r.ROINumber, r.ROIName, r.ReferencedFrameOfReferenceUID = number, name, frame_uid
        r.ROIGenerationAlgorithm = "MANUAL"
        rois_seq.append(r)
        c = Dataset()
        c.ReferencedROINumber = number
        contours = []
        for z, polys in planes.items():
            for poly in polys:
                item = Dataset()
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(poly)
                item.ContourData = [
                    f"{v:.4f}" for p in poly for v in (float(p[0]), float(p[1]), float(z))
                ]
                contours.append(item)
        c.ContourSequence = Sequence(contours)
        contour_seq.append(c)
        o = Dataset()
        o.ObservationNumber, o.ReferencedROINumber = number, number
        o.RTROIInterpretedType, o.ROIInterpreter = kind, ""
        obs_seq.append(o)
    ds.StructureSetROISequence = Sequence(rois_seq)
    ds.ROIContourSequence = Sequence(contour_seq)
    ds.RTROIObservationsSequence = Sequence(obs_seq)
    ds.save_as(path, enforce_file_format=True)
    return path


def phantom_rois() -> dict[str, tuple[str, dict[float, list[np.ndarray]]]]:
    """A 12 mm-radius GTV 20 mm anterior of the cylinder's axis and a spinal cord (radius
    5 mm) 30 mm posterior; no body contour (the body comes from the CT)."""
    zs = ct_planes()
    cord = {float(z): [circle(0.0, 30.0, 5.0, 36)] for z in zs}
    return {
        "GTV": ("GTV", sphere_planes((0.0, -20.0, 0.0), 12.0, zs)),
        "Spinal Cord": ("ORGAN", cord),
    }


RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"


def post_implant_rois() -> dict[str, tuple[str, dict[float, list[np.ndarray]]]]:
    """A post-implant export as commercial planning systems write it: a prostate (radius
    18 mm) with its urethra (radius 3 mm) and a rectum behind it, contoured every 2.5 mm, and
    a BODY ROI with no contours."""
    zs = np.arange(-20.0, 20.1, 2.5)
    return {
        "BODY": ("EXTERNAL", {}),
        "Prostate": ("PTV", sphere_planes((0.0, 0.0, 0.0), 18.0, zs)),
        "Urethra": ("ORGAN", {float(z): [circle(0.0, 0.0, 3.0, 24)] for z in zs[2:-2]}),
        "Rectum": ("ORGAN", {float(z): [circle(0.0, 28.0, 8.0, 36)] for z in zs}),
    }


def write_vendor_rtplan(
    path: Path,
    seeds_mm: np.ndarray,
    structure_set: Path,
    *,
    strength_u: float = 0.5,
    technique: str = "PERMANENT",
    source_strength: bool = False,
) -> Path:
    """An LDR seed RT Plan as a commercial planning system writes it: one application setup
    per seed (one channel, two control points at the seed, weights 0 and 1), a dummy second
    source that no channel uses, the strength as ReferenceAirKermaRate only (with
    ``source_strength`` also as SourceStrength), every setup named in the fraction group."""
    rs = pydicom.dcmread(structure_set, stop_before_pixels=True)
    ds = _base(RT_PLAN_STORAGE, "RTPLAN", rs.StudyInstanceUID, rs.FrameOfReferenceUID)
    ds.SeriesInstanceUID = generate_uid()
    ds.RTPlanLabel, ds.RTPlanGeometry = "POST", "PATIENT"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = rs.SOPClassUID, rs.SOPInstanceUID
    ds.ReferencedStructureSetSequence = Sequence([ref])
    ds.BrachyTreatmentTechnique, ds.BrachyTreatmentType = technique, "LDR"
    seed, dummy = Dataset(), Dataset()
    seed.SourceNumber, seed.SourceModelID, seed.SourceIsotopeName = 1, "6711", "I-125"
    seed.ReferenceAirKermaRate = strength_u
    if source_strength:
        seed.SourceStrengthUnits, seed.SourceStrength = "AIR_KERMA_RATE", strength_u
    dummy.SourceNumber, dummy.SourceModelID, dummy.ReferenceAirKermaRate = 2, "DUMMY", 0.0
    ds.SourceSequence = Sequence([seed, dummy])
    setups, used = [], []
    for k, p in enumerate(np.asarray(seeds_mm, dtype=float)):
        ch = Dataset()
        ch.ChannelNumber, ch.ReferencedSourceNumber, ch.NumberOfControlPoints = 1, 1, 2
        ch.FinalCumulativeTimeWeight = 1.0
        points = []
        for j in (0, 1):
            cp = Dataset()
            cp.ControlPointIndex, cp.CumulativeTimeWeight = j, float(j)
            cp.ControlPoint3DPosition = [f"{v:.3f}" for v in p]
            points.append(cp)
        ch.BrachyControlPointSequence = Sequence(points)
        setup = Dataset()
        setup.ApplicationSetupNumber, setup.ApplicationSetupType = k + 1, "FREE"
        setup.ChannelSequence = Sequence([ch])
        setups.append(setup)
        r = Dataset()
        r.ReferencedBrachyApplicationSetupNumber = k + 1
        used.append(r)
    ds.ApplicationSetupSequence = Sequence(setups)
    group = Dataset()
    group.FractionGroupNumber, group.NumberOfBrachyApplicationSetups = 1, len(setups)
    group.ReferencedBrachyApplicationSetupSequence = Sequence(used)
    ds.FractionGroupSequence = Sequence([group])
    ds.save_as(path, enforce_file_format=True)
    return path
