"""DICOM RT in and out: CT and structure set import, rasterization, init-case, RT Plan and RT
Dose export checked by dciodvfy and plastimatch, post-implant evaluation, bad input."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_series import (
    BODY_RADIUS_MM,
    SHAPE,
    SPACING_MM,
    ct_planes,
    phantom_rois,
    post_implant_rois,
    sphere_planes,
    square,
    write_ct,
    write_rtstruct,
    write_vendor_rtplan,
)
from pydicom.uid import generate_uid
from test_cli import one_line_error, seedopt

from seedopt.case import Grid
from seedopt.dicom import load_ct, load_rtstruct, rasterize, read_rtdose, read_rtplan_seeds
from seedopt.dicom.ct import body_from_ct
from seedopt.plan_config import load_plan_spec

SAMPLE = Path(__file__).parent / "data" / "dicom" / "dicompyler_breast"
needs_dciodvfy = pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (dicom3tools) not installed; make test installs it",
)
needs_plastimatch = pytest.mark.skipif(
    shutil.which("plastimatch") is None, reason="plastimatch not installed; make test installs it"
)


@pytest.fixture
def uids() -> dict[str, str]:
    return {"study_uid": generate_uid(), "frame_uid": generate_uid()}


@pytest.fixture
def phantom(tmp_path: Path, uids: dict[str, str]) -> tuple[Path, Path]:
    """A synthetic CT folder (40 x 40 x 20 voxels of 2.5 mm) and its structure set."""
    ct = tmp_path / "ct"
    write_ct(ct, **uids)
    rs = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids)
    return ct, rs


# --- import -------------------------------------------------------------------------------


def test_ct_is_sorted_by_position_whatever_the_file_order(phantom: tuple[Path, Path]) -> None:
    ct = load_ct(phantom[0])
    assert ct.hu.shape == SHAPE
    assert ct.grid.spacing_mm == (SPACING_MM,) * 3
    assert ct.grid.origin_mm[2] == pytest.approx(ct_planes()[0])
    np.testing.assert_array_equal(ct.hu[:, 0, 0], -1000 + np.arange(SHAPE[0]))


def test_body_from_ct_is_the_cylinder_with_its_gas_pocket_filled(phantom) -> None:
    ct = load_ct(phantom[0])
    grid = Grid.covering((-50, -50, -20), (50, 50, 20), 1.0)
    body = body_from_ct(ct, grid)
    area = body[20].sum() * 1.0
    assert area == pytest.approx(np.pi * BODY_RADIUS_MM**2, rel=0.03)
    assert body[20, 60, 35]  # inside the -800 HU pocket at (-15, 10)


@pytest.mark.parametrize("spacing", [1.0, 2.0])
def test_rasterized_sphere_matches_the_contour_stack_volume(tmp_path, uids, spacing) -> None:
    """Contours every 2.5 mm on a finer (1 mm) or comparable (2 mm) grid: the volume is the
    stack's (sum of slice areas x thickness) within 2 %, and the sphere's within 4 %."""
    zs = np.arange(-20, 20.1, 2.5)
    planes = sphere_planes((3.3, -1.7, 0.4), 15.0, zs)
    rs = write_rtstruct(tmp_path / "rs.dcm", {"S": ("PTV", planes)}, **uids)
    roi = load_rtstruct(rs).roi("S")
    grid = Grid.covering((-25, -25, -25), (25, 25, 25), spacing)
    volume = float((rasterize(roi, grid, 2.5) >= 0.5).sum()) * spacing**3
    stack = sum(_area(p[0]) * 2.5 for p in planes.values())
    assert volume == pytest.approx(stack, rel=0.02)
    assert volume == pytest.approx(4 / 3 * np.pi * 15.0**3, rel=0.04)


def _area(poly: np.ndarray) -> float:
    x, y = poly.T
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_holes_subtract_and_islands_add(tmp_path, uids) -> None:
    """Per slice: a 30 mm square with a 10 mm square hole, and a separate 10 mm square."""
    planes = {
        float(z): [square(0, 0, 15), square(0, 0, 5), square(30, 0, 5)]
        for z in np.arange(-10, 10.1, 2.5)
    }
    rs = write_rtstruct(tmp_path / "rs.dcm", {"Ring": ("ORGAN", planes)}, **uids)
    roi = load_rtstruct(rs).roi("Ring")
    grid = Grid.covering((-19.5, -19.5, -15), (40, 20, 15), 1.0)  # edges on voxel faces
    occupancy = rasterize(roi, grid, 2.5)
    area = float((occupancy >= 0.5)[15].sum())
    assert area == pytest.approx(900 - 100 + 100, rel=0.01)
    centre = grid.mm_to_index(np.array([[0.5, 0.5, 0.0]]))[0]
    assert occupancy[tuple(centre)] == 0.0


def test_structure_names_match_case_insensitively_with_suggestions(phantom) -> None:
    ss = load_rtstruct(phantom[1])
    assert ss.roi("spinal cord").name == "Spinal Cord"
    with pytest.raises(Exception, match="did you mean 'Spinal Cord'"):
        ss.roi("spinal chord")


def test_real_sample_structure_volumes_match_the_planning_system(tmp_path) -> None:
    """dicompyler's breast sample: the Tumor Bed rasterized on its own RT Dose grid has the
    volume the planning system's DVH reports (DVHSequence) within 5 % (measured: seedopt
    13.28 cc, the planning system 12.81 cc, 3.6 %; systems differ in how far the first and
    last contours extend, seedopt takes half a slice)."""
    ss = load_rtstruct(SAMPLE / "rtss.dcm")
    dose_ds = pydicom.dcmread(SAMPLE / "rtdose.dcm", stop_before_pixels=True)
    _, grid = read_rtdose_header(dose_ds)
    roi = ss.roi("tumor bed")
    volume = float((rasterize(roi, grid, 3.0) >= 0.5).sum()) * grid.voxel_cc
    tps = next(
        d
        for d in dose_ds.DVHSequence
        if d.DVHReferencedROISequence[0].ReferencedROINumber == roi.number
    )
    assert volume == pytest.approx(float(tps.DVHData[1]), rel=0.05)


def read_rtdose_header(ds: pydicom.Dataset) -> tuple[None, Grid]:
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    row, col = (float(v) for v in ds.PixelSpacing)
    return None, Grid(
        (x, y, z), (col, row, offsets[1] - offsets[0]), (len(offsets), ds.Rows, ds.Columns)
    )


# --- plan, export, round trip ---------------------------------------------------------------


def _dciodvfy_errors(path: Path) -> list[str]:
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("Error")]


def _sixteen_bit_copy(path: Path, out: Path) -> Path:
    """dciodvfy aborts on 32-bit pixel data: the same dose rescaled to 16 bits."""
    ds = pydicom.dcmread(path)
    dose, _ = read_rtdose(path)
    scale = float(dose.max()) / 65535
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.DoseGridScaling = f"{scale:.8e}"
    ds.PixelData = np.rint(dose / scale).astype(np.uint16).tobytes()
    ds.save_as(out)
    return out


def _plan_from_dicom(
    tmp_path: Path, args: list[str], target: str, rx: str, name: str | None = None
) -> tuple[Path, Path]:
    """init-case (the case renamed ``name`` when given), then a clinical plan."""
    cfg = tmp_path / "case.yaml"
    r = seedopt("init-case", *args, "--target", target, "--rx", rx, "--out", str(cfg))
    assert r.returncode == 0, r.stderr
    if name is not None:
        line = f"name: {json.dumps(name)}"
        text = re.sub(r"(?m)^name: .*$", lambda _: line, cfg.read_text(), count=1)
        cfg.write_text(text)
    out = tmp_path / "plan"
    r = seedopt(
        "plan",
        str(cfg),
        "--out",
        str(out),
        "--method",
        "clinical",
        "--no-cache",
        "--backend",
        "cpu",
    )
    assert r.returncode in (0, 3), r.stderr
    return cfg, out


def test_init_case_from_ct_plans_and_exports_consistent_dicom(tmp_path, phantom) -> None:
    ct, rs = phantom
    args = ["--ct", str(ct), "--rtstruct", str(rs), "--margin-mm", "40"]
    cfg, out = _plan_from_dicom(tmp_path, args, "gtv", "120")
    text = cfg.read_text()
    assert "shape: ct_body" in text and 'cord: "Spinal Cord"' in text
    plan = pydicom.dcmread(out / "rtplan.dcm")
    dose = pydicom.dcmread(out / "rtdose.dcm")
    ss = pydicom.dcmread(rs)
    ct_slice = pydicom.dcmread(next(ct.iterdir()))
    assert plan.BrachyTreatmentType == "LDR" and plan.BrachyTreatmentTechnique == "INTERSTITIAL"
    assert plan.SourceSequence[0].SourceIsotopeName == "I-125"
    assert float(plan.SourceSequence[0].ReferenceAirKermaRate) == pytest.approx(0.762)
    for ds in (plan, dose):
        assert ds.FrameOfReferenceUID == ct_slice.FrameOfReferenceUID
        assert ds.StudyInstanceUID == ct_slice.StudyInstanceUID == ss.StudyInstanceUID
    assert plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == ss.SOPInstanceUID
    assert dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    doc = json.loads((out / "plan.json").read_text())
    assert len(plan.ApplicationSetupSequence[0].ChannelSequence) == len(doc["needles"])
    # Read back, the RT Plan places the plan's seeds.
    placed = np.concatenate([n["seeds_mm"] for n in doc["needles"]])
    seeds = read_rtplan_seeds(out / "rtplan.dcm")
    np.testing.assert_allclose(np.sort(seeds.positions_mm, 0), np.sort(placed, 0), atol=0.01)
    # A channel of several seeds gives its direction.
    assert seeds.axis_known[np.bincount(seeds.channel)[seeds.channel] > 1].all()
    # The RT Dose holds the plan's dose.
    import h5py

    with h5py.File(out / "dose.h5") as f:
        expected = f["dose_gy"][:]
    got, _ = read_rtdose(out / "rtdose.dcm")
    np.testing.assert_allclose(got, expected, atol=float(expected.max()) / 2**31)


@pytest.fixture(scope="module")
def sample_plan(tmp_path_factory) -> tuple[Path, Path, dict]:
    """dicompyler's breast structure set, no CT: init-case, then a clinical plan, exported."""
    tmp = tmp_path_factory.mktemp("sample")
    cfg, out = _plan_from_dicom(tmp, ["--rtstruct", str(SAMPLE / "rtss.dcm")], "tumor bed", "120")
    return cfg, out, json.loads((out / "metrics.json").read_text())


def test_real_sample_round_trip_gives_the_same_seeds_and_metrics(sample_plan, tmp_path) -> None:
    """The exported RT Plan read back gives the same seeds (0.01 mm), and evaluating them
    gives the same metrics beside the pre-plan's."""
    cfg, out, metrics = sample_plan
    seeds = read_rtplan_seeds(out / "rtplan.dcm")
    placed = np.concatenate(
        [n["seeds_mm"] for n in json.loads((out / "plan.json").read_text())["needles"]]
    )
    assert len(seeds.positions_mm) == len(placed) == metrics["n_seeds"]
    np.testing.assert_allclose(np.sort(seeds.positions_mm, 0), np.sort(placed, 0), atol=0.01)
    assert seeds.n_needles == metrics["n_needles"]

    post = tmp_path / "post"
    r = seedopt(
        "evaluate",
        str(cfg),
        "--seeds",
        str(out / "rtplan.dcm"),
        "--out",
        str(post),
        "--plan",
        str(out),
        "--backend",
        "cpu",
    )
    assert r.returncode in (0, 3), r.stderr
    again = json.loads((post / "metrics.json").read_text())
    for name, s in metrics["structures"].items():
        for key, value in s.items():
            if value is not None:
                assert again["structures"][name][key] == pytest.approx(value, rel=1e-5), (name, key)
    assert "pre-plan" in r.stdout and "D90_gy" in r.stdout


@needs_dciodvfy
def test_exported_rt_plan_and_rt_dose_pass_dciodvfy(sample_plan, tmp_path) -> None:
    _, out, _ = sample_plan
    assert _dciodvfy_errors(out / "rtplan.dcm") == []
    assert _dciodvfy_errors(_sixteen_bit_copy(out / "rtdose.dcm", tmp_path / "d16.dcm")) == []


@needs_plastimatch
def test_plastimatch_dvh_gives_seedopts_d90_and_d2cc_within_2_percent(
    sample_plan, tmp_path
) -> None:
    _, out, metrics = sample_plan
    dvh = _plastimatch_dvh(SAMPLE / "rtss.dcm", out / "rtdose.dcm", tmp_path)
    voxel_cc = read_rtdose(out / "rtdose.dcm")[1].voxel_cc
    d90 = _dose_at(dvh, "Tumor Bed", 0.9 * dvh["Tumor Bed"][0][0])
    d2cc = _dose_at(dvh, "Lt Lung", 2.0 / voxel_cc)
    assert d90 == pytest.approx(metrics["structures"]["Tumor Bed"]["D90_gy"], rel=0.02)
    assert d2cc == pytest.approx(metrics["structures"]["Lt Lung"]["D2cc_gy"], rel=0.02)


BIN_GY = 0.25


def _plastimatch_dvh(
    rtss: Path, rtdose: Path, work: Path
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """plastimatch: the structure set rasterized on the RT Dose's grid, then cumulative DVHs
    in voxels per 0.25 Gy bin; name -> (voxels at >= each bin's dose, the bin doses)."""
    run = {"capture_output": True, "text": True, "timeout": 120, "check": True}
    subprocess.run(
        [
            "plastimatch",
            "convert",
            "--input",
            str(rtss),
            "--fixed",
            str(rtdose),
            "--output-ss-img",
            str(work / "ss.nrrd"),
            "--output-ss-list",
            str(work / "ss.txt"),
        ],
        **run,
    )
    subprocess.run(
        [
            "plastimatch",
            "dvh",
            "--input-ss-img",
            str(work / "ss.nrrd"),
            "--input-ss-list",
            str(work / "ss.txt"),
            "--input-dose",
            str(rtdose),
            "--output-csv",
            str(work / "dvh.csv"),
            "--cumulative",
            "--normalization",
            "vox",
            "--num-bins",
            "20000",
            "--bin-width",
            str(BIN_GY),
        ],
        **run,
    )
    rows = list(csv.reader((work / "dvh.csv").open()))
    table = np.array([[float(v) for v in r] for r in rows[1:] if r])
    return {name: (table[:, k], table[:, 0]) for k, name in enumerate(rows[0]) if k}


def _dose_at(dvh: dict[str, tuple[np.ndarray, np.ndarray]], name: str, voxels: float) -> float:
    """The dose the hottest ``voxels`` voxels receive, interpolated within the bin."""
    counts, dose = dvh[name]
    k = int(np.flatnonzero(counts >= voxels).max())
    if k + 1 < len(counts) and counts[k] > counts[k + 1]:
        return float(dose[k] + BIN_GY * (counts[k] - voxels) / (counts[k] - counts[k + 1]))
    return float(dose[k])


def test_evaluate_reads_a_commercial_plan_with_one_setup_per_seed(tmp_path, phantom) -> None:
    """Each seed its own application setup and channel (two control points): the same metrics
    as the same seeds in a CSV."""
    ct, rs = phantom
    assert _init(ct, rs, tmp_path).returncode == 0
    cfg = tmp_path / "c.yaml"
    seeds = np.array([[x, -20.0 + y, z] for x in (-5, 5) for y in (-5, 5) for z in (-5, 5)], float)
    plan = pydicom.Dataset()
    plan.file_meta = pydicom.dataset.FileMetaDataset()
    plan.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    plan.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"
    plan.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    plan.SOPClassUID, plan.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.481.5", generate_uid()
    plan.Modality = "RTPLAN"
    src = pydicom.Dataset()
    src.SourceNumber, src.ReferenceAirKermaRate, src.SourceModelID = 1, 0.5, "6711"
    plan.SourceSequence = [src]
    setups = []
    for k, p in enumerate(seeds):
        ch = pydicom.Dataset()
        ch.ChannelNumber = 1
        cps = []
        for j in (0, 1):
            cp = pydicom.Dataset()
            cp.ControlPointIndex, cp.ControlPoint3DPosition, cp.CumulativeTimeWeight = (
                j,
                list(p),
                float(j),
            )
            cps.append(cp)
        ch.BrachyControlPointSequence = cps
        setup = pydicom.Dataset()
        setup.ApplicationSetupNumber = k + 1
        setup.ChannelSequence = [ch]
        setups.append(setup)
    plan.ApplicationSetupSequence = setups
    plan.save_as(tmp_path / "vendor_plan.dcm", enforce_file_format=True)
    # one seed per channel at one position: no channel gives a direction (axes +z)
    vendor = read_rtplan_seeds(tmp_path / "vendor_plan.dcm")
    assert not vendor.axis_known.any() and (vendor.axes == [0.0, 0.0, 1.0]).all()
    (tmp_path / "seeds.csv").write_text(
        "x_mm,y_mm,z_mm\n" + "".join(f"{a},{b},{c}\n" for a, b, c in seeds)
    )

    results = []
    for name, extra in (("vendor_plan.dcm", []), ("seeds.csv", ["--strength-u", "0.5"])):
        r = seedopt(
            "evaluate",
            str(cfg),
            "--seeds",
            str(tmp_path / name),
            "--out",
            str(tmp_path / name[:6]),
            "--backend",
            "cpu",
            *extra,
        )
        assert r.returncode in (0, 3), r.stderr
        results.append(json.loads((tmp_path / name[:6] / "metrics.json").read_text()))
    assert results[0]["n_seeds"] == 8
    assert results[0]["structures"]["GTV"] == results[1]["structures"]["GTV"]
    assert results[0]["structures"]["GTV"]["D90_gy"] > 0


# --- bad input: one line, exit code 2 -------------------------------------------------------


def _init(ct: Path | None, rs: Path, tmp_path: Path, target: str = "GTV"):
    """``seedopt init-case`` at 100 Gy into tmp_path / c.yaml."""
    args = ["--ct", str(ct)] if ct is not None else []
    return seedopt(
        "init-case",
        *args,
        "--rtstruct",
        str(rs),
        "--target",
        target,
        "--rx",
        "100",
        "--out",
        str(tmp_path / "c.yaml"),
    )


def test_missing_slice(tmp_path, uids) -> None:
    write_ct(tmp_path / "ct", skip=7, **uids)
    rs = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids)
    one_line_error(
        _init(tmp_path / "ct", rs, tmp_path), r"missing slice between z = -8\.75 and -3\.75 mm"
    )


def test_two_series_mixed(tmp_path, uids) -> None:
    write_ct(tmp_path / "ct", **uids)
    write_ct(tmp_path / "ct" / "other", z_offset_mm=0.5, **uids)
    rs = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids)
    one_line_error(_init(tmp_path / "ct", rs, tmp_path), r"2 series mixed")


def test_structure_set_from_another_frame_of_reference(tmp_path, uids) -> None:
    write_ct(tmp_path / "ct", **uids)
    rs = write_rtstruct(
        tmp_path / "rs.dcm", phantom_rois(), study_uid=uids["study_uid"], frame_uid=generate_uid()
    )
    one_line_error(_init(tmp_path / "ct", rs, tmp_path), r"frame of reference .* is not the CT's")


def test_unknown_structure_name(phantom, tmp_path) -> None:
    one_line_error(
        _init(*phantom, tmp_path, target="GVT"),
        r"--target: no structure named 'GVT' .*did you mean 'GTV'",
    )


def test_contours_outside_the_ct(tmp_path, uids) -> None:
    write_ct(tmp_path / "ct", **uids)
    rois = phantom_rois()
    rois["Far"] = ("ORGAN", sphere_planes((0, 0, 60.0), 5.0, np.arange(55, 65.1, 2.5)))
    rs = write_rtstruct(tmp_path / "rs.dcm", rois, **uids)
    one_line_error(
        _init(tmp_path / "ct", rs, tmp_path), r"structure 'Far' has contours outside the CT"
    )


def test_a_single_ct_slice_is_not_used_and_a_note_says_so(tmp_path) -> None:
    """The sample's one CT slice of the 98 its structure set was drawn on: init-case takes the
    grid from the structures, as without a CT."""
    ct = tmp_path / "ct"
    ct.mkdir()
    shutil.copy(SAMPLE / "ct.0.dcm", ct)
    r = _init(ct, SAMPLE / "rtss.dcm", tmp_path, "Tumor Bed")
    assert r.returncode == 0, r.stderr
    assert re.search(r"seedopt: note: --ct .* holds one CT slice: it is not used", r.stderr)
    assert "ct: null" in (tmp_path / "c.yaml").read_text()


def test_non_axial_ct(tmp_path, uids) -> None:
    write_ct(tmp_path / "ct", orientation=(1, 0, 0, 0, 0, -1), **uids)
    rs = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids)
    one_line_error(_init(tmp_path / "ct", rs, tmp_path), r"is not axial")


def test_rt_plan_with_no_seeds(tmp_path, phantom) -> None:
    ct, rs = phantom
    assert _init(ct, rs, tmp_path).returncode == 0
    cfg = tmp_path / "c.yaml"
    photon_plan = SAMPLE / "rtplan.dcm"  # a photon plan: beams, no seeds
    r = seedopt("evaluate", str(cfg), "--seeds", str(photon_plan), "--out", str(tmp_path / "o"))
    one_line_error(r, r"the RT Plan has no seeds")


# --- real-world post-implant input ----------------------------------------------------------


@pytest.mark.parametrize(
    "technique, ct_slices, source_strength",
    [("PERMANENT", 0, False), ("INTERSTITIAL", 1, True)],
    ids=["no CT", "one CT slice"],
)
def test_post_implant_from_a_commercial_export(
    tmp_path, uids, technique, ct_slices, source_strength
) -> None:
    """A commercial system's post-implant export: one application setup per seed, a dummy
    second source, the strength as ReferenceAirKermaRate (SourceStrength missing or given),
    a BODY ROI with no contours, no CT or one CT slice. init-case and evaluate give the target
    and organ metrics on a grid from the structures, no skin, and notes that say so."""
    rs = write_rtstruct(tmp_path / "rs.dcm", post_implant_rois(), **uids)
    args = []
    if ct_slices:
        for path in write_ct(tmp_path / "ct", **uids)[ct_slices:]:
            path.unlink()
        args = ["--ct", str(tmp_path / "ct")]
    seeds = np.array([[x, y, z] for x in (-8, 8) for y in (-8, 8) for z in (-10, 0, 10)], float)
    plan = write_vendor_rtplan(
        tmp_path / "plan.dcm", seeds, rs, technique=technique, source_strength=source_strength
    )
    cfg = tmp_path / "c.yaml"
    r = seedopt(
        "init-case", *args, "--rtstruct", str(rs), "--target", "prostate", "--rx", "145",
        "--out", str(cfg),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert re.search(
        r"seedopt: note: rs\.dcm: 'BODY' has no contours and no CT: the body is the dose grid "
        r"\(water\); skin metrics are unavailable",
        r.stderr,
    )
    r = seedopt("evaluate", str(cfg), "--seeds", str(plan), "--out", str(tmp_path / "post"))
    assert r.returncode in (0, 3), r.stderr
    assert "seedopt: note: plan.dcm: source 2 is used by no channel (a dummy source)" in r.stderr
    assert (
        "seedopt: note: the skin role is the body 'Dose grid (no body)': skin metrics are "
        "unavailable" in r.stderr
    )
    metrics = json.loads((tmp_path / "post" / "metrics.json").read_text())
    assert metrics["n_seeds"] == len(seeds)
    assert metrics["source"] == {"model": "6711", "air_kerma_strength_u": 0.5}
    structures = metrics["structures"]
    assert structures["Prostate"]["D90_gy"] > 0 and structures["Rectum"]["D2cc_gy"] > 0
    assert "Skin" not in structures and "BODY" not in structures
    spec = load_plan_spec(cfg)
    grid = np.array([spec.grid.min_mm, spec.grid.max_mm])
    np.testing.assert_allclose(grid[:, 0], [-38, 38])  # the prostate's +- 18 mm, plus 20 mm


# --- exported files conform although the input does not ------------------------------------

BAD_HEADER = {
    "PatientBirthDate": "9f86d081884c7d65",  # a hash in a date
    "StudyDate": "20261399",
    "StudyTime": "25:61",
    "PatientID": "P" * 80,  # LO: at most 64
    "AccessionNumber": "A" * 20,  # SH: at most 16
    "PatientSex": "MALE",
    "ReferringPhysicianName": "Dr\x07Who",
    "StudyInstanceUID": "1.2.840.abc",
}


@needs_dciodvfy
@pytest.mark.filterwarnings("ignore:Invalid value for VR", "ignore:The value length")
def test_exported_files_conform_although_the_input_does_not(tmp_path, uids) -> None:
    """A structure set whose patient and study attributes are invalid for their VR: the RT
    Plan and RT Dose (of plan and of evaluate) leave them empty (UIDs: replaced), with a note
    for each, keep a valid name that needs UTF-8, and pass dciodvfy without an Error line."""
    rois = {"BODY": ("EXTERNAL", sphere_planes((0, 0, 0), 45.0, ct_planes()))}
    rois.update(phantom_rois())
    rs = write_rtstruct(tmp_path / "rs.dcm", rois, **uids)
    ds = pydicom.dcmread(rs)
    for keyword, value in BAD_HEADER.items():
        setattr(ds, keyword, value)
    ds.SpecificCharacterSet, ds.PatientName = "ISO_IR 192", "山田^太郎"  # valid, not Latin-1
    ds.save_as(rs)
    name = "left\\right breast, " + "x" * 80  # a backslash would make two values
    cfg, out = _plan_from_dicom(tmp_path, ["--rtstruct", str(rs)], "GTV", "120", name)
    r = seedopt("evaluate", str(cfg), "--seeds", str(out / "rtplan.dcm"), "--out", str(out / "e"))
    assert r.returncode in (0, 3), r.stderr
    for keyword in BAD_HEADER:
        assert re.search(rf"seedopt: note: {keyword} .* of rs\.dcm .*in the new RTDOSE", r.stderr)
    plan = pydicom.dcmread(out / "rtplan.dcm")
    assert plan.PatientBirthDate == "" and plan.PatientSex == "" and plan.PatientID == ""
    assert plan.StudyInstanceUID != BAD_HEADER["StudyInstanceUID"]
    assert plan.SpecificCharacterSet == "ISO_IR 192" and str(plan.PatientName) == "山田^太郎"
    assert plan.RTPlanLabel == "left/right breas" and len(plan.RTPlanName) == 64
    assert pydicom.dcmread(out / "rtdose.dcm").StudyInstanceUID == plan.StudyInstanceUID
    assert _dciodvfy_errors(out / "rtplan.dcm") == []
    assert _dciodvfy_errors(_sixteen_bit_copy(out / "rtdose.dcm", tmp_path / "d16.dcm")) == []
    assert _dciodvfy_errors(_sixteen_bit_copy(out / "e" / "rtdose.dcm", tmp_path / "e16.dcm")) == []


def prior_rtdose(path: Path, frame_uid: str) -> Path:
    """An RT Dose of 30 Gy over a box wider than the phantom CT, on ``frame_uid``."""
    from seedopt.case.grid import Grid
    from seedopt.dicom.files import Study, save
    from seedopt.dicom.rtdose import build_rtdose

    grid = Grid.covering((-80.0, -80.0, -60.0), (80.0, 80.0, 60.0), 5.0)
    study = Study("P", "P", "", "", generate_uid(), "1", "", "", "", "", frame_uid)
    save(build_rtdose(np.full(grid.shape, 30.0), grid, study, None), path)
    return path


def init_with_prior(tmp_path: Path, phantom, frame_uid: str) -> tuple[Path, Path]:
    """init-case of the phantom with a 30 Gy / 10 fraction prior course: (config, prior)."""
    ct, rs = phantom
    prior = prior_rtdose(tmp_path / "prior.dcm", frame_uid)
    cfg = tmp_path / "case.yaml"
    args = ["--ct", str(ct), "--rtstruct", str(rs), "--target", "gtv", "--rx", "120"]
    args += ["--out", str(cfg), "--prior-dose", str(prior), "--prior-fractions", "10"]
    r = seedopt("init-case", *args, "--margin-mm", "40")
    assert r.returncode == 0, r.stderr
    return cfg, prior


def test_init_case_writes_the_prior_course_of_a_reirradiation(tmp_path, phantom, uids) -> None:
    from seedopt.pipeline import load_case
    from seedopt.plan_config import load_plan_spec

    cfg, prior = init_with_prior(tmp_path, phantom, uids["frame_uid"])
    spec = load_plan_spec(cfg)
    assert spec.prior is not None and spec.prior.fractions == 10 and spec.prior.recovery == 0
    assert spec.prior.dose.resolve() == prior.resolve()
    assert spec.radiobiology.alpha_beta_gy["Spinal Cord"] == 2
    case, _ = load_case(spec)
    inside = case.masks[case.target] > 0
    np.testing.assert_allclose(case.prior_dose_gy[inside], 30.0, rtol=1e-6)


def test_init_case_refuses_a_prior_course_it_cannot_sum(tmp_path, phantom) -> None:
    ct, rs = phantom
    other = prior_rtdose(tmp_path / "other.dcm", generate_uid())
    base = [
        "init-case",
        "--ct",
        str(ct),
        "--rtstruct",
        str(rs),
        "--target",
        "gtv",
        "--rx",
        "120",
        "--out",
        str(tmp_path / "c.yaml"),
    ]
    r = seedopt(*base, "--prior-dose", str(other), "--prior-fractions", "10")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "not the case's" in r.stderr and not (tmp_path / "c.yaml").exists()
    r = seedopt(*base, "--prior-dose", str(other))
    assert r.returncode == 2 and "--prior-dose and --prior-fractions go together" in r.stderr


def test_a_reirradiation_plan_exports_its_cumulative_eqd2_as_an_effective_rt_dose(
    tmp_path, phantom, uids
) -> None:
    """The EQD2 RT Dose holds, at every voxel, the prior's EQD2 plus the implant's, computed
    here from the exported physical RT Dose and the prior course by the formulas written out
    (alpha/beta 3 Gy: no structure of this case is named in radiobiology but the target and
    cord, which the check skips)."""
    ct, rs = phantom
    prior = prior_rtdose(tmp_path / "prior.dcm", uids["frame_uid"])
    args = ["--ct", str(ct), "--rtstruct", str(rs), "--margin-mm", "40"]
    args += ["--prior-dose", str(prior), "--prior-fractions", "10"]
    cfg, out = _plan_from_dicom(tmp_path, args, "gtv", "120")
    eq = pydicom.dcmread(out / "rtdose_eqd2.dcm")
    assert eq.DoseType == "EFFECTIVE" and "cumulative EQD2" in eq.DoseComment
    assert eq.FrameOfReferenceUID == uids["frame_uid"]
    physical, _ = read_rtdose(out / "rtdose.dcm")
    eqd2, _ = read_rtdose(out / "rtdose_eqd2.dcm")
    from seedopt.pipeline import load_case
    from seedopt.plan_config import load_plan_spec

    case, _ = load_case(load_plan_spec(cfg))
    plain = np.ones(case.grid.shape, bool)
    for name in ("GTV", "Spinal Cord"):
        if name in case.masks:
            plain &= case.masks[name] == 0
    c = np.log(2) / (59.4 * 24) / (np.log(2) / 1.5 + np.log(2) / (59.4 * 24))
    d = physical[plain]
    expected = 30.0 * (3.0 + 3.0) / 5.0 + d * (1 + c * d / 3.0) / (1 + 2 / 3.0)
    np.testing.assert_allclose(eqd2[plain], expected, rtol=1e-4, atol=float(eqd2.max()) / 2**30)
    if shutil.which("dciodvfy"):
        assert (
            _dciodvfy_errors(_sixteen_bit_copy(out / "rtdose_eqd2.dcm", tmp_path / "q.dcm")) == []
        )


def test_a_structure_named_by_roi_number_has_the_bounds_of_the_same_roi_by_name(phantom) -> None:
    """Beyond-grid limits bound a contoured structure by its contours, however the config
    names the ROI."""
    from seedopt.beyond_grid import _shape_bounds
    from seedopt.case.shapes import Contours
    from seedopt.dicom.images import load_images

    ct, rs = phantom
    images = load_images(rs, ct)
    number = images.structure_set.roi("Spinal Cord").number
    by_name = _shape_bounds(Contours(shape="contours", roi="Spinal Cord"), images)
    by_number = _shape_bounds(Contours(shape="contours", roi_number=number), images)
    np.testing.assert_array_equal(by_name[0], by_number[0])
    np.testing.assert_array_equal(by_name[1], by_number[1])
    assert np.isfinite(by_number[0]).all() and by_number[1][1] == pytest.approx(35.0, abs=1.3)
