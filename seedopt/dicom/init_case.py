"""``seedopt init-case``: a complete, commented plan config from a structure set (and CT).

Roles are guessed from ROI names and RT ROI Interpreted Types; organs recognised by name get
seedopt's starting limits (``ORGAN_RULES``: not a protocol; set your institution's); the needle
approach is the template direction with the shortest paths from the skin to the target that
keep clear of the nogo organs, or (``--approach freehand``) an entry window on the skin nearest
the target (``entry_window``); the dose grid covers the target plus a margin and the skin the
needles enter through.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..candidates.config import CTKeepout
from ..candidates.seeds import mask_at
from ..case.grid import Grid
from ..case.structures import expand
from ..errors import SeedoptError
from ..notes import note
from .ct import CTSeries, load_ct
from .entry_window import ChosenWindow, choose_window
from .images import CaseImages, case_images
from .rtstruct import ROI, StructureSet, load_rtstruct

BODY_NAMES = re.compile(r"^(body|external|outline|ext|patient|skin_?outline)$", re.I)
SKIN_NAMES = re.compile(r"skin", re.I)
DIRECTIONS = {
    "anterior (+y)": (0.0, 1.0, 0.0),
    "posterior (-y)": (0.0, -1.0, 0.0),
    "patient's right (+x)": (1.0, 0.0, 0.0),
    "patient's left (-x)": (-1.0, 0.0, 0.0),
    "anterior right": (0.7071, 0.7071, 0.0),
    "anterior left": (-0.7071, 0.7071, 0.0),
    "posterior right": (0.7071, -0.7071, 0.0),
    "posterior left": (-0.7071, -0.7071, 0.0),
}
"""Needle directions considered (into the patient, LPS): from the front, the back, the sides
and the four axial diagonals. The label says where the template stands."""


@dataclass(frozen=True)
class OrganRule:
    """A recognised organ: name pattern, the limited metric, its limit (Gy, or a fraction of
    the prescription when ``of_rx``), and whether needles must avoid it."""

    pattern: str
    metric: str
    limit: float
    of_rx: bool
    nogo: bool
    cord: bool = False


ORGAN_RULES = (
    OrganRule(r"spinal|cord|myel", "D0.1cc", 45.0, False, True, cord=True),
    OrganRule(r"brain\s*stem|brainstem", "D0.1cc", 45.0, False, True),
    OrganRule(r"plexus", "D0.1cc", 60.0, False, True),
    OrganRule(r"heart|aorta|vessel|carotid|jugular|vena|artery", "D2cc", 1.0, True, True),
    OrganRule(r"lung|trachea|bronch|(o)?esophag", "D2cc", 1.0, True, True),
    OrganRule(r"bowel|colon|sigmoid|duoden|stomach", "D2cc", 1.0, True, True),
    OrganRule(
        r"rectum|bladder|urethra|kidney|liver|parotid|mandible|larynx", "D2cc", 1.0, True, False
    ),
)
"""seedopt's starting limits for organs it recognises by name (case-insensitive search):
cord and brainstem D0.1cc <= 45 Gy (the project default for the cord), brachial plexus
D0.1cc <= 60 Gy, other organs D2cc <= the prescription. Not a protocol."""

APPROACHES = ("template", "freehand")
"""The needle approaches init-case writes."""
GRID_BODY = "Dose grid (no body)"
SKIN_D2CC_GY = 70.0
MAX_DEPTH_MM = 200.0
NOGO_CLEARANCE_MM = 5.0


@dataclass(frozen=True)
class Decision:
    """What init-case did with one structure, for the listing."""

    name: str
    interpreted_type: str
    planes: int
    action: str


def _rule(name: str) -> OrganRule | None:
    return next((r for r in ORGAN_RULES if re.search(r.pattern, name, re.I)), None)


def _fmt(values: np.ndarray | list[float]) -> str:
    return "[" + ", ".join(f"{float(v):.1f}" for v in values) + "]"


def _roi_box(roi: ROI, thickness: float) -> tuple[np.ndarray, np.ndarray]:
    pts = roi.points_mm()
    half = np.array([0.0, 0.0, thickness / 2])
    return pts.min(axis=0) - half, pts.max(axis=0) + half


def _paths_to_skin(
    body: np.ndarray, nogo: np.ndarray, grid: Grid, target_pts: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per target point: depth below the skin along -d (mm; inf if it never leaves the body)
    and whether the way out passes through ``nogo``."""
    step = min(grid.spacing_mm) / 2
    t = np.arange(0.0, MAX_DEPTH_MM * 1.5, step)
    pts = target_pts[:, None, :] - t[None, :, None] * d
    flat = pts.reshape(-1, 3)
    shape = pts.shape[:2]
    in_body = mask_at(body, grid, flat).reshape(shape)
    outside = ~in_body
    leaves = outside.any(axis=1)
    first_out = np.argmax(outside, axis=1)
    depth = np.where(leaves, first_out * step, np.inf)
    in_nogo = mask_at(nogo, grid, flat).reshape(shape)
    before_exit = np.arange(shape[1])[None, :] < first_out[:, None]
    crosses = (in_nogo & before_exit).any(axis=1)
    return depth, crosses


def choose_approach(
    body: np.ndarray, target: np.ndarray, nogo: np.ndarray, grid: Grid
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """The template direction whose needle paths from the skin to the target cross the fewest
    nogo voxels (within ``NOGO_CLEARANCE_MM``), then are shortest on average.

    Returns the direction's label, the unit direction, the skin exit points (n, 3) of the
    target points' paths and the target points, mm.
    """
    pts = grid.points_mm(target)
    if len(pts) > 2000:
        pts = pts[np.random.default_rng(0).choice(len(pts), 2000, replace=False)]
    near_nogo = expand(nogo, NOGO_CLEARANCE_MM, grid) if nogo.any() else nogo
    best: tuple[float, float] | None = None
    chosen = None
    for label, direction in DIRECTIONS.items():
        d = np.asarray(direction) / np.linalg.norm(direction)
        depth, crosses = _paths_to_skin(body, near_nogo, grid, pts, d)
        ok = np.isfinite(depth) & (depth <= MAX_DEPTH_MM)
        if not ok.any():
            continue
        score = (float(np.mean(crosses | ~ok)), float(np.mean(depth[ok])))
        if best is None or score < best:
            best, chosen = score, (label, d, pts[ok] - depth[ok, None] * d, pts[ok])
    if chosen is None:
        raise SeedoptError(
            f"no needle direction reaches the target within {MAX_DEPTH_MM:g} mm of the skin"
        )
    return chosen


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to the config's folder when it lies below it, else absolute."""
    rel = os.path.relpath(Path(path).resolve(), base.resolve())
    return str(Path(path).resolve()) if rel.startswith("..") else rel


def _by_number(ss: StructureSet, roi: ROI) -> bool:
    """Whether the config must name ``roi`` by its number: its name is shared or empty."""
    return ss.shares_name(roi) or not roi.name.strip()


def _structure_key(ss: StructureSet, roi: ROI) -> str:
    """The config's name for ``roi``: its ROI name, with its number where names repeat."""
    if not roi.name.strip():
        return f"ROI {roi.number}"
    return f"{roi.name} (ROI {roi.number})" if ss.shares_name(roi) else roi.name


def _structure_line(ss: StructureSet, roi: ROI) -> str:
    key = json.dumps(_structure_key(ss, roi))
    if _by_number(ss, roi):
        return f"  {key}: {{shape: contours, roi_number: {roi.number}}}"
    return f"  {key}: {{shape: contours, roi: {json.dumps(roi.name)}}}"


def _usable_ct(ct: Path | None) -> CTSeries | None:
    """The CT, or None (with a note) when it holds a single slice: one slice gives neither
    the body nor the geometry of the structures."""
    if ct is None:
        return None
    series = load_ct(Path(ct))
    if series.hu.shape[0] == 1:
        note(
            f"--ct {ct} holds one CT slice: it is not used (the grid comes from the "
            "structures; TG-43 assumes water)"
        )
        return None
    return series


def init_case(
    rtstruct: Path,
    target: str,
    prescription_gy: float,
    out: Path,
    ct: Path | None = None,
    spacing_mm: float = 2.0,
    margin_mm: float = 20.0,
    name: str | None = None,
    prior_dose: Path | None = None,
    prior_fractions: int | None = None,
    approach: str = "template",
) -> tuple[str, list[Decision]]:
    """The YAML text of a plan config for ``target`` (a ROI name, or ``#N`` for ROI number N)
    at ``prescription_gy`` and what was done with every structure of the structure set (see
    the module docstring). Without a body contour and a CT of more than one slice, the body is
    the dose grid and skin metrics are unavailable (a note says so). ``prior_dose`` (an RT
    Dose of an earlier course on the structure set's frame of reference, checked here) and
    ``prior_fractions`` write the config's ``prior`` and ``radiobiology`` sections.
    ``approach`` "freehand" writes freehand needles through an entry window on the skin
    (``entry_window.choose_window``) instead of the coplanar template."""
    if approach not in APPROACHES:
        raise SeedoptError(f"--approach must be one of {', '.join(APPROACHES)}, got {approach!r}")
    if (prior_dose is None) != (prior_fractions is None):
        raise SeedoptError("--prior-dose and --prior-fractions go together: give both or neither")
    if prior_fractions is not None and prior_fractions < 1:
        raise SeedoptError(f"--prior-fractions must be a whole number >= 1, got {prior_fractions}")
    series = _usable_ct(ct)
    ct = ct if series is not None else None
    images: CaseImages = case_images(load_rtstruct(Path(rtstruct)), series)
    ss = images.structure_set
    target_roi = ss.roi(target, "--target")
    if not target_roi.planes:
        raise SeedoptError(f"--target: structure {target_roi.name!r} has no contours")
    thickness = images.slice_thickness_mm
    with_contours = [r for r in ss.rois if r.planes]
    body_roi = next(
        (r for r in with_contours if r.interpreted_type.upper() == "EXTERNAL"), None
    ) or next((r for r in with_contours if BODY_NAMES.match(r.name.strip())), None)
    no_body = body_roi is None and images.ct is None
    if no_body:
        empty = [r.name for r in ss.rois if not r.planes and _is_body(r)]
        why = f"{', '.join(map(repr, empty))} has no contours" if empty else "no body contour"
        has_skin = any(SKIN_NAMES.search(r.name) for r in with_contours)
        note(
            f"{ss.path.name}: {why} and no CT: the body is the dose grid (water)"
            + ("" if has_skin else "; skin metrics are unavailable")
            + "; target and organ metrics are computed"
        )

    # A coarse look at the whole patient to choose the approach.
    boxes = [_roi_box(r, thickness) for r in with_contours]
    lo = np.min([b[0] for b in boxes], axis=0) - 10
    hi = np.max([b[1] for b in boxes], axis=0) + 10
    if images.ct is not None:
        ct_lo, ct_hi = images.ct.bounds_mm()
        lo, hi = np.minimum(lo, ct_lo), np.maximum(hi, ct_hi)
    coarse = Grid.covering(tuple(lo), tuple(hi), max(4.0, spacing_mm))  # type: ignore[arg-type]
    if body_roi is not None:
        body_coarse = images.roi_mask(f"#{body_roi.number}", coarse)
    elif no_body:
        body_coarse = np.ones(coarse.shape, dtype=bool)  # needles enter at the box's faces
    else:
        body_coarse = images.body_mask(coarse, -300.0)
    target_coarse = images.roi_mask(f"#{target_roi.number}", coarse)
    if not target_coarse.any():
        target_coarse = np.zeros_like(target_coarse)
        idx = coarse.mm_to_index(target_roi.points_mm().mean(axis=0)[None])
        target_coarse[tuple(idx[0])] = True
    roles: dict[int, OrganRule] = {}
    for r in with_contours:
        rule = _rule(r.name)
        if rule is not None and r is not target_roi and r is not body_roi:
            roles[r.number] = rule
    nogo_coarse = np.zeros(coarse.shape, dtype=bool)
    for number, rule in roles.items():
        if rule.nogo:
            nogo_coarse |= images.roi_mask(f"#{number}", coarse)
    label, d, exits, tpts = choose_approach(body_coarse, target_coarse, nogo_coarse, coarse)
    window = None
    if approach == "freehand":
        if no_body:
            raise SeedoptError(
                "--approach freehand needs a body (a body contour or a CT) to place the "
                "entry window on its skin"
            )
        near_nogo = (
            expand(nogo_coarse, NOGO_CLEARANCE_MM, coarse) if nogo_coarse.any() else nogo_coarse
        )
        fov = images.ct.bounds_mm() if images.ct is not None else None
        window = choose_window(
            body_coarse, target_coarse, near_nogo, coarse, images.ct_volume(coarse), fov
        )

    t_lo, t_hi = _roi_box(target_roi, thickness)
    g_lo, g_hi = t_lo - margin_mm, t_hi + margin_mm
    if not no_body:  # and the skin the needles enter through
        g_lo = np.minimum(g_lo, exits.min(axis=0) - 10)
        g_hi = np.maximum(g_hi, exits.max(axis=0) + 10)
    if window is not None:  # and the window's skin
        g_lo = np.minimum(g_lo, window.center_mm - window.radius_mm - 10)
        g_hi = np.maximum(g_hi, window.center_mm + window.radius_mm + 10)
    g_lo, g_hi = np.floor(g_lo), np.ceil(g_hi)
    # Grid planes on the contour planes (the CT slices): one contour, one dose plane.
    z_ref = min(target_roi.planes)
    g_lo[2] = z_ref + thickness * np.floor((g_lo[2] - z_ref) / thickness)
    g_hi[2] = z_ref + thickness * np.ceil((g_hi[2] - z_ref) / thickness)
    step = (spacing_mm, spacing_mm, thickness)
    grid = Grid.covering(tuple(g_lo), tuple(g_hi), step)  # type: ignore[arg-type]

    centre = tpts.mean(axis=0)
    plane_along = float((exits @ d).min()) - 15.0
    plane_point = centre + (plane_along - float(centre @ d)) * d
    across = tpts - np.outer(tpts @ d, d)
    width = float(np.max(np.ptp(across, axis=0))) + 20.0
    size = 5.0 * np.ceil(width / 5.0)

    decisions: list[Decision] = []
    structures: list[str] = []
    oars: list[str] = []
    nogo: list[str] = []
    limits: list[str] = []
    cord = None
    skin_structure = None
    for r in ss.rois:
        planes = len(r.planes)
        if not planes:
            decisions.append(Decision(r.name, r.interpreted_type, 0, "left out: no contours"))
            continue
        r_lo, r_hi = _roi_box(r, thickness)
        g_edge = np.asarray(grid.spacing_mm) / 2
        if (
            np.any(r_hi < g_lo - g_edge)
            or np.any(r_lo > g_hi + g_edge)
            or not (images.roi_mask(f"#{r.number}", grid).any())
        ):
            decisions.append(
                Decision(r.name, r.interpreted_type, planes, "left out: outside the dose grid")
            )
            continue
        key = json.dumps(_structure_key(ss, r))
        structures.append(_structure_line(ss, r))
        if r is target_roi:
            action = f"target, prescription {prescription_gy:g} Gy to D90"
        elif r is body_roi:
            action = "body"
        elif SKIN_NAMES.search(r.name) and skin_structure is None:
            skin_structure = key
            limits.append(f"    - {{structure: {key}, metric: D2cc, max_gy: {SKIN_D2CC_GY:g}}}")
            action = f"skin, D2cc <= {SKIN_D2CC_GY:g} Gy"
        elif r.number in roles:
            rule = roles[r.number]
            gy = rule.limit * prescription_gy if rule.of_rx else rule.limit
            limits.append(f"    - {{structure: {key}, metric: {rule.metric}, max_gy: {gy:g}}}")
            oars.append(key)
            action = f"organ at risk, {rule.metric} <= {gy:g} Gy"
            if rule.cord and cord is None:
                cord = key
                action = "spinal cord, " + action
            if rule.nogo:
                nogo.append(key)
                action += ", needles avoid it"
        else:
            action = "kept for metrics (no role recognised)"
        if _by_number(ss, r):
            why = "not unique" if r.name.strip() else "empty"
            action += f" (by ROI number {r.number}: its name is {why})"
        decisions.append(Decision(r.name, r.interpreted_type, planes, action))
    if body_roi is not None:
        body_key = json.dumps(_structure_key(ss, body_roi))
    elif no_body:
        body_key = json.dumps(GRID_BODY)
        half = np.asarray(step) / 2
        structures.append(
            f"  {body_key}: {{shape: box, min_mm: {_fmt(g_lo - half)}, max_mm: "
            f"{_fmt(g_hi + half)}}}   # no body contour: the body is the dose grid"
        )
        decisions.append(Decision(GRID_BODY, "", 0, "body: the dose grid (no body contour, no CT)"))
    else:
        body_key = '"Body (CT)"'
        structures.append(f"  {body_key}: {{shape: ct_body, threshold_hu: -300}}")
        decisions.append(Decision("Body (CT)", "", 0, "body derived from the CT (> -300 HU)"))
    if skin_structure is None and not no_body:  # no_body: no skin derived from the grid
        limits.append(f"    - {{structure: Skin, metric: D2cc, max_gy: {SKIN_D2CC_GY:g}}}")

    out = Path(out)
    base = out.parent
    name = name or re.sub(r"\W+", "_", target_roi.name).strip("_").lower() or "case"
    ct_line = (
        f"  ct: {json.dumps(_rel(ct, base))}\n"
        if ct
        else "  ct: null  # no CT: TG-43 assumes water\n"
    )
    if skin_structure:
        skin_line = f"  skin: {{structure: {skin_structure}}}"
    elif no_body:
        skin_line = (
            f"  skin: {{structure: {body_key}}}   # no body contour: skin metrics unavailable"
        )
    else:
        skin_line = "  skin: {derive_thickness_mm: 3}   # the outer 3 mm of the body"
    hard = "\n" + "\n".join(limits) if limits else " []"
    approach_text = (
        _template_text(label, d, plane_point, size) if window is None else _freehand_text(window)
    )
    if images.ct is not None:
        keepout = CTKeepout()
        approach_text += (
            f"  ct_keepout: {{bone_above_hu: {keepout.bone_above_hu:g}, air_below_hu: "
            f"{keepout.air_below_hu:g}, margin_mm: {keepout.margin_mm:g}}}   # paths avoid bone "
            "and air on the CT\n"
        )
    sources = ss.path.name + (f" and the CT in {ct}" if ct else "")
    grid_comment = (
        f"the target's box plus {margin_mm:g} mm (no body: needles are not planned to a skin)"
        if no_body
        else f"the target's box plus {margin_mm:g} mm, and the skin the needles enter through"
    )
    text = f"""# Written by `seedopt init-case` from {sources}.
# Patient coordinates (DICOM LPS, mm) on frame of reference {ss.frame_of_reference_uid}.
# Limits below are seedopt's starting values, not a protocol: set your institution's.
name: {name}
description: {json.dumps(f"{target_roi.name} from {ss.path.name}")}
dicom:
  rtstruct: {json.dumps(_rel(rtstruct, base))}
{ct_line}  slice_thickness_mm: {thickness:g}   # each contour stands for z +- half of this
# Dose grid: {grid_comment};
# x, y, z spacing, its planes on the contour planes.
grid:
  spacing_mm: [{spacing_mm:g}, {spacing_mm:g}, {thickness:g}]
  min_mm: [{", ".join(f"{v:.2f}" for v in g_lo)}]
  max_mm: [{", ".join(f"{v:.2f}" for v in g_hi)}]
structures:
{chr(10).join(structures)}
roles:
  target: {json.dumps(_structure_key(ss, target_roi))}
  body: {body_key}
{skin_line}
  cord: {cord if cord else "null"}
  oars: [{", ".join(oars)}]
  nogo: [{", ".join(nogo)}]   # needles keep nogo_margin_mm from these
source: {{model: "6711", activity_mci: 0.6}}
prescription_gy: {prescription_gy:g}   # to the target's D90
{approach_text}goals:
  hard:{hard}
"""
    if prior_dose is not None:
        from .prior_dose import read_prior_dose

        read_prior_dose(prior_dose, ss.frame_of_reference_uid)  # refuse what cannot be summed
        ab = {"default": 3, _structure_key(ss, target_roi): 10}
        if cord:
            ab[cord] = 2
        example = f"{{structure: {cord or 'SpinalCord'}, metric: D0.1cc, max_gy: 50, "
        text += f"""# Re-irradiation (docs/radiobiology.md): the earlier course, summed with the
# implant as EQD2 voxel by voxel for each limit with quantity: eqd2_cumulative, e.g.
#   - {example}quantity: eqd2_cumulative}}
prior:
  dose: {json.dumps(_rel(prior_dose, base))}
  fractions: {prior_fractions}
  recovery: 0.0   # fraction of the prior EQD2 regarded as recovered
radiobiology:   # alpha/beta (Gy) and repair half-time (h); default for the others
  alpha_beta_gy: {{{", ".join(f"{k}: {v}" for k, v in ab.items())}}}
  repair_half_time_h: {{default: 1.5}}
"""
    return text, decisions


def _template_text(label: str, d: np.ndarray, plane_point: np.ndarray, size: float) -> str:
    """The config's approach section for a coplanar template from the ``label`` side."""
    return f"""# Needles from the {label}: of the directions tried, the shortest paths from the skin
# to the target that keep {NOGO_CLEARANCE_MM:g} mm from the nogo organs.
approach:
  kind: template
  plane_point_mm: {_fmt(plane_point)}
  direction: [{", ".join(f"{v:.4f}" for v in d)}]
  hole_pitch_mm: 5
  size_mm: {size:g}
  max_depth_mm: {MAX_DEPTH_MM:g}
"""


def _freehand_text(window: ChosenWindow) -> str:
    """The config's approach section for freehand needles through ``window``."""
    return f"""# Freehand needles through an entry window: the skin point nearest the target whose
# straight path to it keeps {NOGO_CLEARANCE_MM:g} mm from the nogo organs (and, with a CT, misses
# bone and air), {window.depth_mm:.0f} mm from the target's centroid; the normal points from it
# to the centroid (the skin's inward normal there); entries lie within radius_mm of it.
approach:
  kind: freehand
  entry_window:
    center_mm: {_fmt(window.center_mm)}
    radius_mm: {np.ceil(window.radius_mm):.0f}
    normal: [{", ".join(f"{v:.4f}" for v in window.normal)}]
  max_angle_deg: 20   # needles within this of the window's normal
  max_depth_mm: {MAX_DEPTH_MM:g}
"""


def _is_body(roi: ROI) -> bool:
    return roi.interpreted_type.upper() == "EXTERNAL" or bool(BODY_NAMES.match(roi.name.strip()))


def format_decisions(decisions: list[Decision]) -> str:
    """The listing init-case prints: every structure found and what was done with it."""
    lines = [f"{'structure':24} {'type':10} {'planes':>6}  what init-case did"]
    for dec in decisions:
        lines.append(f"{dec.name:24} {dec.interpreted_type:10} {dec.planes:>6}  {dec.action}")
    return "\n".join(lines)
