"""Bad DICOM input is refused, never read in part: cut files (RT Plan, RT Structure Set, CT),
counts a file declares that disagree with what it holds, malformed values, ambiguous ROI
names. Each gives one error naming the file, the attribute and what is wrong (one line
`seedopt: error:` and exit code 2 through the command line)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_series import (
    phantom_rois,
    post_implant_rois,
    sphere_planes,
    write_ct,
    write_rtstruct,
    write_vendor_rtplan,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from test_cli import one_line_error, seedopt
from test_dicom import SAMPLE

from seedopt.backend import select_backend
from seedopt.dicom import (
    load_ct,
    load_rtstruct,
    rasterize,
    read_rtplan_seeds,
    write_dicom_outputs,
)
from seedopt.dicom.init_case import init_case
from seedopt.errors import SeedoptError
from seedopt.pipeline import load_case
from seedopt.plan_config import load_plan_spec
from seedopt.planning import plan_case

Mutation = Callable[[Dataset], None]
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the bad files we write


@pytest.fixture(scope="module")
def exported_plan(tmp_path_factory) -> Path:
    """seedopt's RT Plan of the dicompyler breast sample (init-case without a CT, clinical
    method), written beside its case.yaml."""
    tmp = tmp_path_factory.mktemp("export")
    text, _ = init_case(SAMPLE / "rtss.dcm", "tumor bed", 120.0, tmp / "case.yaml")
    (tmp / "case.yaml").write_text(text)
    plan = plan_case(load_plan_spec(tmp / "case.yaml"), select_backend("cpu")[0], method="clinical")
    return write_dicom_outputs(plan, tmp)[0]


@pytest.fixture
def uids() -> dict[str, str]:
    return {"study_uid": generate_uid(), "frame_uid": generate_uid()}


def _top_level_ends(data: bytes) -> dict[int, int]:
    """Tag -> the byte offset where each top-level element of an explicit VR little endian
    file ends (seedopt writes its RT Plan so)."""
    long_vrs = {b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL"}
    pos, ends = 132, {}
    while pos < len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4 : pos + 6]
        if vr in long_vrs:
            length, header = struct.unpack_from("<I", data, pos + 8)[0], 12
        else:
            length, header = struct.unpack_from("<H", data, pos + 6)[0], 8
        pos += header + length
        ends[(group << 16) | element] = pos
    return ends


# --- cut files ------------------------------------------------------------------------------


def test_a_cut_rt_plan_is_refused_wherever_it_is_cut(exported_plan, tmp_path) -> None:
    """seedopt's RT Plan cut at 150 offsets spread over the file and at every boundary
    between its top-level elements: each is refused, except the cut that drops only the
    trailing ApprovalStatus (a well-formed plan without the optional approval module), which
    reads every seed. Never a part of the seeds."""
    data = exported_plan.read_bytes()
    full = read_rtplan_seeds(exported_plan)
    ends = _top_level_ends(data)
    approval = 0x300E0002
    assert max(ends, key=ends.get) == approval  # the last element, after every seed
    before_approval = ends[max(t for t in ends if t != approval)]
    offsets = sorted({*np.linspace(1, len(data) - 1, 150).astype(int), *ends.values()})
    cut = tmp_path / "cut.dcm"
    for offset in offsets:
        if offset == len(data):
            continue
        cut.write_bytes(data[:offset])
        if offset == before_approval:
            np.testing.assert_array_equal(read_rtplan_seeds(cut).positions_mm, full.positions_mm)
            continue
        with pytest.raises(SeedoptError):
            read_rtplan_seeds(cut)


def test_a_cut_rt_plan_is_one_line_through_evaluate(exported_plan, tmp_path) -> None:
    """Cut inside its application setups, the RT Plan used to give part of its seeds."""
    cfg = exported_plan.parent / "case.yaml"
    data = exported_plan.read_bytes()
    cut = tmp_path / "rtplan_cut.dcm"
    cut.write_bytes(data[: len(data) // 2])
    r = seedopt("evaluate", str(cfg), "--seeds", str(cut), "--out", str(tmp_path / "o"))
    one_line_error(r, r"rtplan_cut\.dcm: the RT Plan file is truncated or damaged: .* needs")
    assert not (tmp_path / "o").exists()


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_damaged_byte_gives_a_plan_or_a_clear_error_never_a_crash(
    exported_plan, tmp_path_factory, data
) -> None:
    raw = bytearray(exported_plan.read_bytes())
    k = data.draw(st.integers(132, len(raw) - 1), label="offset")
    raw[k] = data.draw(st.integers(0, 255), label="byte")
    path = tmp_path_factory.mktemp("byte") / "plan.dcm"
    path.write_bytes(bytes(raw))
    try:
        read_rtplan_seeds(path)
    except SeedoptError:
        pass


def test_a_cut_structure_set_is_refused_wherever_it_is_cut(tmp_path, uids) -> None:
    rs = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids)
    data = rs.read_bytes()
    cut = tmp_path / "cut.dcm"
    for offset in np.linspace(1, len(data) - 1, 60).astype(int):
        cut.write_bytes(data[:offset])
        with pytest.raises(SeedoptError, match=r"cut\.dcm"):
            load_rtstruct(cut)


@pytest.mark.parametrize(
    "syntax",
    [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian],
    ids=lambda uid: uid.name,
)
def test_cuts_are_found_in_every_transfer_syntax(tmp_path, uids, syntax) -> None:
    """The completeness check walks implicit VR, big endian and deflated data sets (the
    last byte of a deflated file can be padding after the complete stream)."""
    ds = pydicom.dcmread(write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids))
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "encoded.dcm"
    pydicom.dcmwrite(
        path, ds, implicit_vr=syntax.is_implicit_VR, little_endian=syntax.is_little_endian,
        enforce_file_format=True,
    )  # fmt: skip
    assert [r.name for r in load_rtstruct(path).rois] == ["GTV", "Spinal Cord"]
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    for offset in np.linspace(1, len(data) - 2, 30).astype(int):
        cut.write_bytes(data[:offset])
        with pytest.raises(SeedoptError, match=r"cut\.dcm"):
            load_rtstruct(cut)


def test_a_stray_sequence_delimiter_is_not_a_cut(tmp_path, uids) -> None:
    """Some systems write a sequence delimiter after a defined-length sequence: nothing is
    lost, so the file is read."""
    data = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids).read_bytes()
    k = data.index(b"\x06\x30\x80\x00")  # RTROIObservationsSequence, the last element
    stray = tmp_path / "stray.dcm"
    stray.write_bytes(data[:k] + b"\xfe\xff\xdd\xe0" + bytes(4) + data[k:])
    assert [r.interpreted_type for r in load_rtstruct(stray).rois] == ["GTV", "ORGAN"]


def test_a_cut_ct_slice_is_refused_not_skipped(tmp_path, uids) -> None:
    """A CT file cut in its pixel data, or at the boundary before it: the series is refused
    (unreadable DICOM files in the CT folder used to be skipped)."""
    slices = write_ct(tmp_path / "ct", **uids)
    data = slices[5].read_bytes()
    pixels_at = data.rindex(b"\xe0\x7f\x10\x00")
    for offset, message in (
        (len(data) - 1, r"truncated or damaged: the value of PixelData"),
        (pixels_at, r"PixelData is missing"),
    ):
        slices[5].write_bytes(data[:offset])
        with pytest.raises(SeedoptError, match=rf"{slices[5].name}: .*{message}"):
            load_ct(tmp_path / "ct")


def test_files_without_the_dicom_preamble_in_a_ct_folder_are_skipped(tmp_path, uids) -> None:
    write_ct(tmp_path / "ct", **uids)
    (tmp_path / "ct" / "README.txt").write_text("scanned 2026-01-01\n")
    assert load_ct(tmp_path / "ct").hu.shape[0] == 20


# --- RT Plan: counts and values that disagree -----------------------------------------------


MARKER = "12345.67"  # a number pydicom writes, patched to text in the file (_save)


def _save(ds: Dataset, path: Path) -> None:
    """Write ``ds``, each ``MARKER`` value replaced by the text "notanumb" (pydicom will not
    write text into a DS value itself)."""
    ds.save_as(path)
    path.write_bytes(path.read_bytes().replace(MARKER.encode(), b"notanumb"))


def _channel(ds: Dataset, k: int = 0) -> Dataset:
    return ds.ApplicationSetupSequence[0].ChannelSequence[k]


def _drop_control_point(ds: Dataset) -> None:
    del _channel(ds).BrachyControlPointSequence[-1]


def _two_source_types(ds: Dataset) -> None:
    other = Dataset()
    other.SourceNumber, other.SourceModelID, other.ReferenceAirKermaRate = 2, "2301", 0.4
    ds.SourceSequence.append(other)
    _channel(ds, 1).ReferencedSourceNumber = 2


def _set(keyword: str, value: object, where: Callable[[Dataset], Dataset]) -> Mutation:
    def mutate(ds: Dataset) -> None:
        setattr(where(ds), keyword, value)

    return mutate


def _cp(k: int) -> Callable[[Dataset], Dataset]:
    return lambda ds: _channel(ds).BrachyControlPointSequence[k]


def _delete(keyword: str, where: Callable[[Dataset], Dataset]) -> Mutation:
    return lambda ds: delattr(where(ds), keyword)


def _group(ds: Dataset) -> Dataset:
    return ds.FractionGroupSequence[0]


CHANNEL = r"ApplicationSetupSequence\[0\]\.ChannelSequence\[0\]\."
POINT = CHANNEL + r"BrachyControlPointSequence"
BAD_PLANS: dict[str, tuple[Mutation, str]] = {
    "a control point dropped": (
        _drop_control_point,
        CHANNEL + r"BrachyControlPointSequence holds \d+ control points but "
        r"NumberOfControlPoints is \d+",
    ),
    "NumberOfControlPoints off": (
        _set("NumberOfControlPoints", 99, _channel),
        CHANNEL + r"BrachyControlPointSequence holds \d+ control points but "
        r"NumberOfControlPoints is 99",
    ),
    "FinalCumulativeTimeWeight off": (
        _set("FinalCumulativeTimeWeight", 7.5, _channel),
        CHANNEL + r"FinalCumulativeTimeWeight is 7\.5 but the last control point's",
    ),
    "control point index out of order": (
        _set("ControlPointIndex", 5, _cp(1)),
        POINT + r"\[1\]\.ControlPointIndex is 5, expected 1",
    ),
    "a position with two values": (
        _set("ControlPoint3DPosition", [1.0, 2.0], _cp(1)),
        CHANNEL
        + r"BrachyControlPointSequence\[1\]\.ControlPoint3DPosition has 2 values, expected 3",
    ),
    "a NaN position": (
        _set("ControlPoint3DPosition", ["1.0", "nan", "2.0"], _cp(2)),
        POINT + r"\[2\]\.ControlPoint3DPosition: value 2 of 3 is nan",
    ),
    "a position missing": (
        _delete("ControlPoint3DPosition", _cp(2)),
        POINT + r"\[2\]\.ControlPoint3DPosition is missing",
    ),
    "a weight missing": (
        _delete("CumulativeTimeWeight", _cp(2)),
        POINT + r"\[2\]\.CumulativeTimeWeight is missing \(other",
    ),
    "a falling weight": (
        _set("CumulativeTimeWeight", -1.0, _cp(2)),
        POINT + r"\[2\]\.CumulativeTimeWeight falls from 0 to -1",
    ),
    "NumberOfBrachyApplicationSetups off": (
        _set("NumberOfBrachyApplicationSetups", 3, _group),
        r"FractionGroupSequence\[0\]\.NumberOfBrachyApplicationSetups is 3 but "
        r"ReferencedBrachyApplicationSetupSequence holds 1",
    ),
    "a fraction group naming a missing setup": (
        _set(
            "ReferencedBrachyApplicationSetupNumber",
            4,
            lambda ds: _group(ds).ReferencedBrachyApplicationSetupSequence[0],
        ),
        r"FractionGroupSequence\[0\]\.ReferencedBrachyApplicationSetupSequence\[0\]\."
        r"ReferencedBrachyApplicationSetupNumber 4 names no application setup",
    ),
    "the structure set reference cut": (
        _delete("ReferencedStructureSetSequence", lambda ds: ds),
        r"RTPlanGeometry PATIENT without a ReferencedStructureSetSequence",
    ),
    "an HDR plan": (
        _set("BrachyTreatmentType", "HDR", lambda ds: ds),
        r"BrachyTreatmentType HDR: seedopt evaluates permanent LDR seed implants",
    ),
    "a temporary technique": (
        _set("BrachyTreatmentTechnique", "INTRACAVITARY", lambda ds: ds),
        r"BrachyTreatmentTechnique INTRACAVITARY",
    ),
    "seeds of two source types": (
        _two_source_types,
        r"the seeds are of 2 source types \(source 1: 6711, 0\.762 U; source 2: 2301, 0\.4 U\)",
    ),
    "a zero strength": (
        _set("ReferenceAirKermaRate", 0.0, lambda ds: ds.SourceSequence[0]),
        r"the seeds' source 1 has strength 0 U \(ReferenceAirKermaRate or SourceStrength\)",
    ),
    "a strength that is text": (
        _set("ReferenceAirKermaRate", MARKER, lambda ds: ds.SourceSequence[0]),
        r"SourceSequence\[0\]\.ReferenceAirKermaRate holds 'notanumb', not numbers",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PLANS))
def test_an_inconsistent_rt_plan_is_refused(exported_plan, tmp_path, case) -> None:
    mutate, message = BAD_PLANS[case]
    ds = pydicom.dcmread(exported_plan)
    mutate(ds)
    _save(ds, tmp_path / "plan.dcm")
    with pytest.raises(SeedoptError, match=r"plan\.dcm: " + message):
        read_rtplan_seeds(tmp_path / "plan.dcm")


def test_channels_that_name_no_source_take_the_one_real_source(tmp_path, uids) -> None:
    """Without ReferencedSourceNumber the seeds are of the plan's one source with a strength;
    the vendor's zero-strength dummy is left aside."""
    rs = write_rtstruct(tmp_path / "rs.dcm", post_implant_rois(), **uids)
    plan = write_vendor_rtplan(tmp_path / "plan.dcm", np.zeros((1, 3)), rs, strength_u=0.41)
    ds = pydicom.dcmread(plan)
    del ds.ApplicationSetupSequence[0].ChannelSequence[0].ReferencedSourceNumber
    ds.save_as(plan)
    seeds = read_rtplan_seeds(plan)
    assert (seeds.strength_u, seeds.model_id) == (0.41, "6711")


def test_a_vendor_plan_missing_setups_is_refused_not_read_in_part(tmp_path, uids) -> None:
    """One setup per seed, 15 seeds, the last 8 setups gone (the fraction group still names
    them): refused, where 7 of the 15 seeds used to be evaluated."""
    rs = write_rtstruct(tmp_path / "rs.dcm", post_implant_rois(), **uids)
    seeds = np.column_stack([np.linspace(-10, 10, 15), np.zeros(15), np.zeros(15)])
    plan = write_vendor_rtplan(tmp_path / "plan.dcm", seeds, rs)
    ds = pydicom.dcmread(plan)
    del ds.ApplicationSetupSequence[7:]
    ds.save_as(plan)
    with pytest.raises(SeedoptError, match=r"ReferencedBrachyApplicationSetupNumber 8 names no"):
        read_rtplan_seeds(plan)


# --- RT Structure Set: malformed attributes ----------------------------------------------


def _contour(ds: Dataset) -> Dataset:
    return ds.ROIContourSequence[0].ContourSequence[0]


def _two_items_for_one_roi(ds: Dataset) -> None:
    ds.ROIContourSequence[1].ReferencedROINumber = 1


def _duplicate_number(ds: Dataset) -> None:
    ds.StructureSetROISequence[1].ROINumber = 1


CONTOUR = r"ROI 1 'GTV' ContourSequence\[0\]\."
BAD_STRUCTURE_SETS: dict[str, tuple[Mutation, str]] = {
    "ReferencedROINumber missing": (
        _delete("ReferencedROINumber", lambda ds: ds.ROIContourSequence[0]),
        r"ROIContourSequence\[0\]\.ReferencedROINumber is missing",
    ),
    "ContourData missing": (_delete("ContourData", _contour), CONTOUR + "ContourData is missing"),
    "ContourData not a multiple of 3": (
        lambda ds: setattr(_contour(ds), "ContourData", list(_contour(ds).ContourData)[:-1]),
        CONTOUR + r"ContourData has \d+ values, not a multiple of 3",
    ),
    "a NaN contour point": (
        lambda ds: setattr(
            _contour(ds), "ContourData", ["nan", *list(_contour(ds).ContourData)[1:]]
        ),
        CONTOUR + r"ContourData: value 1 of \d+ is nan \(not finite\)",
    ),
    "a point fewer than declared": (
        lambda ds: setattr(_contour(ds), "ContourData", list(_contour(ds).ContourData)[:-3]),
        CONTOUR + r"ContourData holds \d+ points but NumberOfContourPoints is \d+",
    ),
    "text for a coordinate": (
        lambda ds: setattr(_contour(ds), "ContourData", [MARKER, *_contour(ds).ContourData[1:]]),
        CONTOUR + r"ContourData holds 'notanumb\\.*', not numbers",
    ),
    "two ROIs with one number": (_duplicate_number, r"ROI number 1 is used twice"),
    "two contour items for one ROI": (
        _two_items_for_one_roi,
        r"ROIContourSequence holds two items for ROI number 1",
    ),
    "a contour item for no ROI": (
        _set("ReferencedROINumber", 99, lambda ds: ds.ROIContourSequence[0]),
        r"ROIContourSequence\[0\]\.ReferencedROINumber 99 names no ROI",
    ),
    "no ROIContourSequence": (
        _delete("ROIContourSequence", lambda ds: ds),
        r"ROIContourSequence is missing \(2 ROIs declared",
    ),
}


@pytest.mark.parametrize("case", list(BAD_STRUCTURE_SETS))
def test_a_malformed_structure_set_is_refused(tmp_path, uids, case) -> None:
    mutate, message = BAD_STRUCTURE_SETS[case]
    rs = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids)
    ds = pydicom.dcmread(rs)
    mutate(ds)
    _save(ds, rs)
    with pytest.raises(SeedoptError, match=r"rs\.dcm: " + message):
        load_rtstruct(rs)


def test_a_malformed_structure_set_is_one_line_through_init_case(tmp_path, uids) -> None:
    mutate, message = BAD_STRUCTURE_SETS["a NaN contour point"]
    rs = write_rtstruct(tmp_path / "rs.dcm", phantom_rois(), **uids)
    ds = pydicom.dcmread(rs)
    mutate(ds)
    ds.save_as(rs)
    r = seedopt(
        "init-case", "--rtstruct", str(rs), "--target", "GTV", "--rx", "100", "--out",
        str(tmp_path / "c.yaml"),
    )  # fmt: skip
    one_line_error(r, r"rs\.dcm: " + message)
    assert not (tmp_path / "c.yaml").exists()


# --- CT: malformed slices -------------------------------------------------------------------


def _jpeg2000(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    ds.PixelData = encapsulate([b"\xff\x4f" + bytes(98)])


BAD_SLICES: dict[str, tuple[Mutation, str]] = {
    "pixel data cut short": (
        lambda ds: setattr(ds, "PixelData", ds.PixelData[:-100]),
        r"PixelData cannot be decoded \(transfer syntax Explicit VR Little Endian\): The number "
        r"of bytes of pixel data is less than expected",
    ),
    "a transfer syntax that cannot be decoded": (
        _jpeg2000,
        r"PixelData cannot be decoded \(transfer syntax JPEG 2000 .*convert the series",
    ),
    "zero pixel spacing": (
        _set("PixelSpacing", [0.0, 2.5], lambda ds: ds),
        r"PixelSpacing \[0\.0, 2\.5\] mm must be positive",
    ),
    "a NaN position": (
        _set("ImagePositionPatient", ["0", "0", "nan"], lambda ds: ds),
        r"ImagePositionPatient: value 3 of 3 is nan",
    ),
    "no orientation": (
        _delete("ImageOrientationPatient", lambda ds: ds),
        r"ImageOrientationPatient is missing",
    ),
    "no pixel data": (_delete("PixelData", lambda ds: ds), r"PixelData is missing"),
}


@pytest.mark.parametrize("case", list(BAD_SLICES))
def test_a_malformed_ct_slice_is_refused(tmp_path, uids, case) -> None:
    mutate, message = BAD_SLICES[case]
    slices = write_ct(tmp_path / "ct", **uids)
    ds = pydicom.dcmread(slices[3])
    mutate(ds)
    ds.save_as(slices[3])
    with pytest.raises(SeedoptError, match=rf"{slices[3].name}: " + message):
        load_ct(tmp_path / "ct")


def test_a_single_slice_needs_its_thickness(tmp_path, uids) -> None:
    slices = write_ct(tmp_path / "ct", **uids)
    for path in slices[1:]:
        path.unlink()
    ds = pydicom.dcmread(slices[0])
    ds.SliceThickness = 0
    ds.save_as(slices[0])
    with pytest.raises(SeedoptError, match=r"SliceThickness 0 mm must be positive"):
        load_ct(tmp_path / "ct")


# --- ROIs that share a name -----------------------------------------------------------------


@pytest.fixture
def twin_gtvs(tmp_path, uids) -> Path:
    """Two ROIs named GTV: number 1 the tumour, number 3 a disjoint organ 30 mm behind it (the
    later one used to replace the earlier silently)."""
    zs = np.arange(-20, 20.1, 2.5)
    rois = {
        "GTV": ("GTV", sphere_planes((0.0, -20.0, 0.0), 12.0, zs)),
        "BODY": ("EXTERNAL", sphere_planes((0.0, 0.0, 0.0), 45.0, zs)),
    }
    rs = write_rtstruct(tmp_path / "rs.dcm", rois, **uids)
    ds = pydicom.dcmread(rs)
    twin = Dataset()
    twin.ROINumber, twin.ROIName = 3, "GTV"
    twin.ReferencedFrameOfReferenceUID = uids["frame_uid"]
    ds.StructureSetROISequence.append(twin)
    contour = pydicom.dcmread(rs).ROIContourSequence[0]
    contour.ReferencedROINumber = 3
    for item in contour.ContourSequence:
        pts = np.asarray(item.ContourData, dtype=float).reshape(-1, 3) + [0.0, 30.0, 0.0]
        item.ContourData = [f"{v:.4f}" for v in pts.ravel()]
    ds.ROIContourSequence.append(contour)
    observation = Dataset()
    observation.ObservationNumber, observation.ReferencedROINumber = 3, 3
    observation.RTROIInterpretedType = "ORGAN"
    ds.RTROIObservationsSequence.append(observation)
    ds.save_as(rs)
    return rs


def test_a_shared_roi_name_is_refused_with_the_numbers(twin_gtvs) -> None:
    ss = load_rtstruct(twin_gtvs)
    with pytest.raises(SeedoptError, match=r"2 ROIs of rs\.dcm are named 'GTV' \(#1 'GTV', #3"):
        ss.roi("GTV")
    assert ss.roi("#3").interpreted_type == "ORGAN" and ss.roi("#1").interpreted_type == "GTV"
    with pytest.raises(SeedoptError, match=r"no ROI number 7 in rs\.dcm \(ROIs: 1 'GTV', 2 'BOD"):
        ss.roi("#7")


def test_init_case_selects_a_shared_name_by_number(twin_gtvs, tmp_path) -> None:
    def init(target: str):
        return seedopt(
            "init-case", "--rtstruct", str(twin_gtvs), "--target", target, "--rx", "100",
            "--out", str(tmp_path / "c.yaml"),
        )  # fmt: skip

    one_line_error(init("gtv"), r"--target: 2 ROIs of rs\.dcm are named 'gtv' \(#1 'GTV', #3")
    r = init("#1")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "c.yaml").read_text()
    assert '"GTV (ROI 1)": {shape: contours, roi_number: 1}' in text
    assert 'target: "GTV (ROI 1)"' in text
    spec = load_plan_spec(tmp_path / "c.yaml")
    case, _ = load_case(spec)
    ss = load_rtstruct(twin_gtvs)
    tumour = rasterize(ss.roi("#1"), case.grid, 2.5) >= 0.5
    np.testing.assert_array_equal(case.masks["GTV (ROI 1)"], tumour)
    assert not (case.masks["GTV (ROI 1)"] & case.masks["GTV (ROI 3)"]).any()


@pytest.mark.parametrize(
    "reference, message",
    [
        ({"roi": "GTV", "roi_number": 1}, "name the ROI once"),
        ({}, "roi_number"),
        ({"roi_number": -1}, "greater than or equal to 0"),
    ],
)
def test_a_contour_structure_names_its_roi_once(reference, message) -> None:
    from pydantic import ValidationError

    from seedopt.case.shapes import Contours

    with pytest.raises(ValidationError, match=message):
        Contours(shape="contours", **reference)
