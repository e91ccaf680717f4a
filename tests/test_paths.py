"""Needle paths on the CT: every candidate path keeps the clearance margin from bone and from
air inside the body over its whole length, freehand needles enter through the entry window
within its angle and depth, and the lines dropped are counted by reason.

The clearance is checked independently of seedopt's distance queries: the CT is read back
from its DICOM files with pydicom, and the ball of radius ``margin_mm`` round every point
taken every 0.5 mm from entry to tip is sampled (nearest voxel, on the CT's own grid) on a
0.5 mm lattice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_series import phantom_rois, sphere_planes, write_ct, write_rtstruct
from pydicom.uid import generate_uid
from scipy import ndimage
from test_cli import seedopt

from seedopt.candidates import Candidates, build_candidates, load_approach_spec
from seedopt.case import Case
from seedopt.dicom.init_case import init_case
from seedopt.errors import SeedoptError
from seedopt.pipeline import load_case
from seedopt.plan_config import load_plan_spec

SAMPLE = Path(__file__).parent / "data" / "dicom" / "dicompyler_breast"
BONE_HU, AIR_HU, MARGIN_MM = 300.0, -400.0, 3.0  # the documented defaults
BONE_BLOCK = (8.0, 26.0, -38.0, -30.0, 1000)  # x0, x1, y0, y1 (mm), HU: beside the GTV
AIR_POCKET = (-24.0, -10.0, -34.0, -28.0, -800)  # inside the body, on the GTV's other side


# --- the independent check ------------------------------------------------------------------


def read_ct(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HU and the body (z, y, x), origin and spacing (x, y, z, mm) of a CT folder, read with
    pydicom."""
    slices = sorted(
        (pydicom.dcmread(p) for p in folder.iterdir()),
        key=lambda ds: float(ds.ImagePositionPatient[2]),
    )
    hu = np.stack(
        [ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices]
    )
    z = [float(ds.ImagePositionPatient[2]) for ds in slices]
    row, col = (float(v) for v in slices[0].PixelSpacing)
    origin = np.array([*map(float, slices[0].ImagePositionPatient[:2]), z[0]])
    return hu, body_of(hu), origin, np.array([col, row, z[1] - z[0]])


def body_of(hu: np.ndarray) -> np.ndarray:
    """The patient: the largest region above -300 HU, its holes filled slice by slice."""
    labels, _ = ndimage.label(hu > -300)
    largest = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return np.stack([ndimage.binary_fill_holes(s) for s in largest])


def ball(radius_mm: float, step_mm: float = 0.5) -> np.ndarray:
    """(k, 3) points of a ``step_mm`` lattice within ``radius_mm`` of the origin."""
    r = np.arange(-radius_mm, radius_mm + 1e-9, step_mm)
    pts = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    return pts[np.linalg.norm(pts, axis=1) <= radius_mm + 1e-9]


def offending(
    entry: np.ndarray, tip: np.ndarray, ct: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
) -> tuple[int, int]:
    """(bone, air) samples within ``MARGIN_MM`` of the segment entry-tip (every 0.5 mm)."""
    hu, body, origin, spacing = ct
    n = int(np.ceil(np.linalg.norm(tip - entry) / 0.5)) + 1
    along = entry + np.linspace(0.0, 1.0, n)[:, None] * (tip - entry)
    pts = (along[:, None, :] + ball(MARGIN_MM)[None]).reshape(-1, 3)
    idx = ((pts - origin) / spacing)[:, ::-1].T  # (z, y, x) voxel coordinates
    value = ndimage.map_coordinates(hu, idx, order=0, mode="nearest")
    inside = ndimage.map_coordinates(body.astype(np.uint8), idx, order=0, mode="nearest")
    return int((value > BONE_HU).sum()), int(((value < AIR_HU) & (inside > 0)).sum())


def assert_paths_clear(needles: list[tuple[np.ndarray, np.ndarray]], ct_folder: Path) -> None:
    ct = read_ct(ct_folder)
    assert needles
    for entry, tip in needles:
        assert offending(np.asarray(entry), np.asarray(tip), ct) == (0, 0), (entry, tip)


# --- the synthetic CT series ----------------------------------------------------------------


CASE_YAML = """name: synthetic
dicom: {{rtstruct: rs.dcm, ct: ct}}
grid: {{min_mm: [-47.5, -47.5, -22.5], max_mm: [47.5, 47.5, 22.5], spacing_mm: [2, 2, 2.5]}}
structures:
  Body: {{shape: ct_body}}
  GTV: {{shape: contours, roi: GTV}}
  Cord: {{shape: contours, roi: Spinal Cord}}
roles: {{target: GTV, body: Body, cord: Cord, nogo: [Cord]}}
source: {{model: "6711", activity_mci: 0.5}}
prescription_gy: 120
approach: {approach}
"""
FAN = "{kind: freehand, reference_direction: [0, 1, 0], max_angle_deg: 30}"


def synthetic(tmp: Path, inserts: tuple, approach: str = FAN) -> Path:
    """The water-cylinder CT (``dicom_series``) with ``inserts``, its GTV (radius 12 mm, 20 mm
    anterior of the axis) and cord, and a plan config; returns the config's path."""
    uids = {"study_uid": generate_uid(), "frame_uid": generate_uid()}
    write_ct(tmp / "ct", inserts=inserts, **uids)
    write_rtstruct(tmp / "rs.dcm", phantom_rois(), **uids)
    cfg = tmp / "case.yaml"
    cfg.write_text(CASE_YAML.format(approach=approach))
    return cfg


def candidates_of(cfg: Path) -> tuple[Case, Candidates]:
    spec = load_plan_spec(cfg)
    case, _ = load_case(spec)
    return case, build_candidates(case, spec.approach)


@pytest.fixture(scope="module")
def bone_and_air(tmp_path_factory) -> Path:
    return synthetic(tmp_path_factory.mktemp("bone_and_air"), (BONE_BLOCK, AIR_POCKET))


def test_every_candidate_path_clears_bone_and_air_by_the_margin(bone_and_air) -> None:
    case, cands = candidates_of(bone_and_air)
    assert case.ct is not None and case.ct.grid.spacing_mm == (2.5, 2.5, 2.5)
    assert_paths_clear([(n.entry_mm, n.tip_mm) for n in cands.needles], bone_and_air.parent / "ct")
    # Both rules dropped lines, and every traced line is counted once.
    assert cands.dropped["near_bone"] > 0 and cands.dropped["near_air"] > 0
    assert cands.lines_traced == cands.n_needles + sum(cands.dropped.values())


def test_the_check_sees_bone_and_air_where_they_are(bone_and_air) -> None:
    """The sampler is not blind: lines through the block and the pocket are caught."""
    ct = read_ct(bone_and_air.parent / "ct")
    through_bone = offending(np.array([17.0, -45.0, 0.0]), np.array([17.0, -20.0, 0.0]), ct)
    through_air = offending(np.array([-17.0, -44.0, 0.0]), np.array([-17.0, -20.0, 0.0]), ct)
    # 2.5 mm from the pocket's edge (x = -10 mm), whose last voxel centre is x = -11.25 mm.
    beside_air = offending(np.array([-7.5, -44.0, 0.0]), np.array([-7.5, -20.0, 0.0]), ct)
    assert through_bone[0] > 0 and through_air[1] > 0 and beside_air[1] > 0
    outside_pocket = offending(np.array([-40.0, -47.0, 0.0]), np.array([-40.0, -46.0, 0.0]), ct)
    assert outside_pocket == (0, 0)  # the air around the patient is not air in the body


def test_planned_needles_clear_the_ct_and_the_drops_are_reported(bone_and_air, tmp_path) -> None:
    out = tmp_path / "plan"
    r = seedopt("plan", str(bone_and_air), "--out", str(out), "--method", "clinical", "--no-cache")
    assert r.returncode in (0, 3), r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    needles = json.loads((out / "plan.json").read_text())["needles"]
    assert_paths_clear([(n["entry_mm"], n["tip_mm"]) for n in needles], bone_and_air.parent / "ct")
    drops = metrics["candidate_drops"]
    _, cands = candidates_of(bone_and_air)
    assert drops == dict(cands.dropped)
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("seedopt: note: candidates"))
    assert f"{drops['near_bone']} pass within 3 mm of bone (> 300 HU)" in line
    assert f"{drops['near_air']} pass within 3 mm of air in the body (< -400 HU)" in line


def test_when_the_only_straight_path_crosses_bone_every_line_is_dropped_for_it(tmp_path) -> None:
    """A template from the front, a bone plate between the skin and the whole GTV: each line
    that reaches the GTV (as many as give needles without the plate) is dropped as near bone."""
    template = "{kind: template, plane_point_mm: [0, -60, 0], direction: [0, 1, 0]}"
    _, free = candidates_of(synthetic(tmp_path / "free", (), template))
    reaching = free.n_needles + free.dropped["no_seed_position"]
    assert reaching > 10 and sum(free.dropped.values()) == free.dropped["misses_target"]
    plate = (-30.0, 30.0, -40.0, -36.0, 1200)  # 6 mm wider than the GTV on each side
    with pytest.raises(SeedoptError) as err:
        candidates_of(synthetic(tmp_path / "plate", (plate,), template))
    assert f"{reaching} pass within 3 mm of bone (> 300 HU)" in str(err.value)
    assert "miss the target" in str(err.value) and "air" not in str(err.value)


def test_a_wider_margin_keeps_needles_farther_from_bone(tmp_path) -> None:
    wide = FAN[:-1] + ", ct_keepout: {margin_mm: 6}}"
    cfg = synthetic(tmp_path, (BONE_BLOCK,), wide)
    _, cands = candidates_of(cfg)
    bone = read_ct(cfg.parent / "ct")
    bone_pts = np.argwhere(bone[0] > BONE_HU)[:, ::-1] * bone[3] + bone[2]  # voxel centres
    for n in cands.needles:  # every bone voxel (a 2.5 mm box) stays 6 mm from the path
        t = np.clip((bone_pts - n.entry_mm) @ n.direction, 0.0, n.depth_mm)
        gap = np.linalg.norm(bone_pts - (n.entry_mm + t[:, None] * n.direction), axis=1)
        assert gap.min() >= 6.0 + np.sqrt(3) * 2.5 / 2 - 1e-6


# --- the entry window -----------------------------------------------------------------------


def test_freehand_needles_enter_through_the_window_within_its_angle_and_depth(tmp_path) -> None:
    """A window on the cylinder's front (skin at y = -45 mm); its fitted normal is the radius
    inwards, +y; every needle enters within 15 mm of the centre, within 25 degrees of +y and no
    deeper than 32 mm (the GTV's far side lies 37 mm below the skin)."""
    window = (
        "{kind: freehand, entry_window: {center_mm: [0, -45, 0], radius_mm: 15}, "
        "max_angle_deg: 25, max_depth_mm: 32}"
    )
    cfg = synthetic(tmp_path, (BONE_BLOCK, AIR_POCKET), window)
    case, cands = candidates_of(cfg)
    from seedopt.candidates.window import resolve_window

    spec = load_plan_spec(cfg).approach
    axis = resolve_window(case, spec.entry_window).inward
    assert np.degrees(np.arccos(axis @ [0.0, 1.0, 0.0])) < 3.0
    for n in cands.needles:
        assert np.linalg.norm(n.entry_mm - [0.0, -45.0, 0.0]) <= 15.0 + 1e-6
        assert np.degrees(np.arccos(np.clip(n.direction @ axis, -1, 1))) <= 25.0 + 1e-6
        assert n.depth_mm <= 32.0 + 1e-6
    assert cands.dropped["outside_entry_window"] > 0 and cands.dropped["too_deep"] > 0
    assert_paths_clear([(n.entry_mm, n.tip_mm) for n in cands.needles], cfg.parent / "ct")


def test_a_window_off_the_skin_is_refused(tmp_path) -> None:
    window = "{kind: freehand, entry_window: {center_mm: [0, -75, 0], radius_mm: 10}}"
    with pytest.raises(SeedoptError, match=r"approach.entry_window.center_mm: no skin within"):
        candidates_of(synthetic(tmp_path, (), window))


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, key",
    [
        ({"ct_keepout": {"bone_above_hu": 50}}, "ct_keepout.bone_above_hu"),
        ({"ct_keepout": {"air_below_hu": -50}}, "ct_keepout.air_below_hu"),
        ({"ct_keepout": {"margin_mm": 25}}, "ct_keepout.margin_mm"),
        ({"ct_keepout": {"margin_mm": -1}}, "ct_keepout.margin_mm"),
        ({"ct_keepout": {"bone_hu": 300}}, "ct_keepout.bone_hu"),
        ({"entry_window": {"center_mm": [0, 0, 0], "radius_mm": 0}}, "entry_window.radius_mm"),
        ({"entry_window": {"center_mm": [0, 0, 0]}}, "entry_window.radius_mm"),
        ({"entry_window": {"center_mm": [0, 0, 0], "radius_mm": 5}}, "reference_direction"),
    ],
)
def test_path_rule_keys_out_of_range_are_refused_naming_the_key(section, key) -> None:
    data = {"kind": "freehand", "reference_direction": [0, 1, 0], **section}
    with pytest.raises(SeedoptError, match=rf"^approach\.{key}: "):
        load_approach_spec(data)


def test_ct_keepout_without_a_ct_is_refused(tmp_path) -> None:
    cfg = tmp_path / "phantom.yaml"
    cfg.write_text(
        "name: p\ngrid: {min_mm: [-30, -30, -30], max_mm: [30, 30, 30]}\nstructures:\n"
        "  B: {shape: ellipsoid, center_mm: [0, 0, 0], radii_mm: [28, 28, 28]}\n"
        "  G: {shape: ellipsoid, center_mm: [0, 0, 0], radii_mm: [8, 8, 8]}\n"
        "roles: {target: G, body: B}\nsource: {model: '6711', activity_mci: 0.5}\n"
        "prescription_gy: 120\napproach: {kind: template, plane_point_mm: [0, -40, 0], "
        "direction: [0, 1, 0], ct_keepout: {margin_mm: 2}}\n"
    )
    with pytest.raises(
        SeedoptError, match=r"phantom.yaml: approach\.ct_keepout: the case has no CT"
    ):
        load_plan_spec(cfg)


def test_a_case_file_keeps_its_ct(bone_and_air, tmp_path) -> None:
    case, _ = load_case(load_plan_spec(bone_and_air))
    case.save_h5(tmp_path / "case.h5")
    back = Case.load_h5(tmp_path / "case.h5")
    assert back.ct is not None and back.ct.grid == case.ct.grid
    np.testing.assert_array_equal(back.ct.hu, case.ct.hu)
    np.testing.assert_array_equal(back.ct.body, case.ct.body)


# --- the DICOM sample -----------------------------------------------------------------------


def extruded_sample(tmp: Path, slices: int = 15) -> tuple[Path, float]:
    """The sample's one CT slice (neck and shoulders: mandible, vertebra, airway, arms)
    repeated on ``slices`` planes 3 mm apart round its own z; returns the folder and the z."""
    z0 = float(pydicom.dcmread(SAMPLE / "ct.0.dcm").ImagePositionPatient[2])
    series = generate_uid()
    folder = tmp / "ct"
    folder.mkdir()
    for k in range(slices):
        ds = pydicom.dcmread(SAMPLE / "ct.0.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series
        ds.ImagePositionPatient[2] = z0 + 3.0 * (k - slices // 2)
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"ct{k}.dcm")
    return folder, z0


def sample_neck_case(tmp: Path) -> Path:
    """A plan config on the extruded sample: a GTV (radius 7 mm) in the neck between the
    airway, the vertebra and the mandible, freehand needles fanned from the patient's right."""
    folder, z0 = extruded_sample(tmp)
    ds = pydicom.dcmread(next(folder.iterdir()))
    uids = {"study_uid": ds.StudyInstanceUID, "frame_uid": ds.FrameOfReferenceUID}
    gtv = sphere_planes((-12.0, -340.0, z0), 7.0, z0 + 3.0 * np.arange(-2, 3))
    write_rtstruct(tmp / "rs.dcm", {"GTV": ("GTV", gtv)}, **uids)
    cfg = tmp / "sample.yaml"
    cfg.write_text(
        f"name: sample_neck\ndicom: {{rtstruct: rs.dcm, ct: ct}}\n"
        f"grid: {{min_mm: [-70, -400, {z0 - 18}], max_mm: [50, -280, {z0 + 18}], "
        "spacing_mm: [2, 2, 3]}\n"
        "structures:\n  Body: {shape: ct_body}\n  GTV: {shape: contours, roi: GTV}\n"
        "roles: {target: GTV, body: Body}\nsource: {model: '6711', activity_mci: 0.5}\n"
        "prescription_gy: 120\n"
        "approach: {kind: freehand, reference_direction: [1, 0, 0], max_angle_deg: 45, "
        "angle_step_deg: 15}\n"
    )
    return cfg


def test_on_the_dicom_sample_every_candidate_path_clears_bone_and_air(tmp_path) -> None:
    """On the sample's neck, paths near bone or the airway are dropped, the others clear them
    by the margin."""
    cfg = sample_neck_case(tmp_path)
    case, cands = candidates_of(cfg)
    assert case.ct is not None and case.ct.grid.spacing_mm[0] == pytest.approx(1.074219)
    assert_paths_clear([(n.entry_mm, n.tip_mm) for n in cands.needles], tmp_path / "ct")
    assert cands.dropped["near_bone"] > 0 and cands.dropped["near_air"] > 0


# --- init-case ------------------------------------------------------------------------------


def test_init_case_writes_a_window_on_the_skin_nearest_the_target(bone_and_air, tmp_path) -> None:
    """The GTV's centroid (0, -20, 0) is 25 mm below the cylinder's front (0, -45, 0), and the
    straight path between them runs clear between the bone block and the air pocket."""
    folder = bone_and_air.parent
    out = tmp_path / "case.yaml"
    text, _ = init_case(folder / "rs.dcm", "GTV", 120.0, out, folder / "ct", approach="freehand")
    out.write_text(text)
    spec = load_plan_spec(out)
    window = spec.approach.entry_window
    assert window is not None and "ct_keepout" in spec.approach.model_fields_set
    assert np.linalg.norm(np.subtract(window.center_mm, [0.0, -45.0, 0.0])) < 5.0
    assert np.degrees(np.arccos(np.dot(window.normal, [0.0, 1.0, 0.0]))) < 10.0
    assert window.radius_mm >= 12.0  # covers the GTV's width
    case, cands = candidates_of(out)
    for n in cands.needles:
        assert np.linalg.norm(n.entry_mm - window.center_mm) <= window.radius_mm + 1e-6
        assert np.degrees(np.arccos(np.clip(n.direction @ window.normal, -1, 1))) <= 20 + 1e-6
    assert_paths_clear([(n.entry_mm, n.tip_mm) for n in cands.needles], folder / "ct")
