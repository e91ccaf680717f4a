"""Checks of a built template, measured on the final mesh (not on what it was built from).

* the mesh: closed (watertight), consistently wound, positive volume, one piece (trimesh);
* each channel: its wall faces taken from the mesh (faces parallel to the planned line
  within ``capture`` of the channel's radius), a cylinder fitted to their vertices by least
  squares (SciPy), and the fitted axis compared with the planned needle: the largest
  distance between the two lines over the channel's length, and the angle between them;
* the channels apart: closest approach of the fitted cylinders (axis segments less both
  radii);
* the plate's underside: each of its vertices' distance from the skin surface (trimesh's
  closest point on the marching-cubes skin of the case grid), negative inside the body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.optimize import least_squares

from ..candidates.freehand import segment_distances
from ..errors import SeedoptError
from .skin import SKIN_LEVEL, BodyField
from .template_mesh import Channel, TemplateMesh, sample_frame

AXIS_OFFSET_LIMIT_MM = 0.2
"""Largest distance of a channel's measured axis from its planned needle, mm."""
AXIS_ANGLE_LIMIT_DEG = 0.5
"""Largest angle of a channel's measured axis from its planned needle, degrees."""


@dataclass(frozen=True)
class MeasuredChannel:
    """A channel's axis fitted to its wall in the mesh, against the planned needle.

    Attributes
    ----------
    start_mm, end_mm : (3,) the fitted axis over the wall's extent.
    radius_mm : the fitted radius.
    offset_mm : largest distance between the fitted axis and the planned line over the wall.
    angle_deg : angle between them.
    wall_faces : faces the fit used.
    """

    start_mm: np.ndarray
    end_mm: np.ndarray
    radius_mm: float
    offset_mm: float
    angle_deg: float
    wall_faces: int


def mesh_checks(mesh: trimesh.Trimesh) -> dict[str, bool | float | int]:
    """Whether the mesh is a printable solid, as trimesh finds it."""
    return {
        "watertight": bool(mesh.is_watertight),
        "winding_consistent": bool(mesh.is_winding_consistent),
        "volume_mm3": float(mesh.volume),
        "bodies": int(mesh.body_count),
        "triangles": len(mesh.faces),
    }


def measure_channel(
    mesh: trimesh.Trimesh, channel: Channel, radius_mm: float, capture_mm: float
) -> MeasuredChannel:
    """Fit the channel's wall in ``mesh`` (module docstring).

    Raises
    ------
    SeedoptError
        When the mesh has no wall near the planned channel.
    """
    d = channel.direction
    tri = mesh.triangles  # (F, 3, 3)
    rel = tri - channel.entry_mm
    radial = np.linalg.norm(np.cross(rel, d), axis=2)
    along = -(rel @ d)
    t_lo = -(channel.bore_start_mm - channel.entry_mm) @ d
    t_hi = -(channel.bore_end_mm - channel.entry_mm) @ d
    wall = (
        np.all(np.abs(radial - radius_mm) <= capture_mm, axis=1)
        & np.all((along >= t_lo) & (along <= t_hi), axis=1)
        & (np.abs(mesh.face_normals @ d) < 0.1)
    )
    pts = np.unique(tri[wall].reshape(-1, 3), axis=0)
    if len(pts) < 12:
        raise SeedoptError(
            f"the channel at entry {np.round(channel.entry_mm, 1).tolist()} mm has no wall in "
            "the mesh"
        )
    centre, axis, radius = _fit_cylinder(pts, d, radius_mm)
    t = (pts - centre) @ axis
    ends = centre + np.array([t.min(), t.max()])[:, None] * axis
    offset = np.linalg.norm(np.cross(ends - channel.entry_mm, d), axis=1).max()
    angle = np.degrees(np.arccos(min(1.0, abs(float(axis @ d)))))
    return MeasuredChannel(ends[0], ends[1], radius, float(offset), float(angle), int(wall.sum()))


def _fit_cylinder(
    pts: np.ndarray, guess_axis: np.ndarray, guess_radius: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares cylinder through ``pts``: a point of its axis, the axis (unit), the
    radius. Starts from the points' centroid and principal direction."""
    c0 = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - c0, full_matrices=False)
    a0 = vt[0] if vt[0] @ guess_axis >= 0 else -vt[0]
    e1 = np.cross(a0, [1.0, 0.0, 0.0] if abs(a0[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(a0, e1)

    def axis_of(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = a0 + p[2] * e1 + p[3] * e2
        return c0 + p[0] * e1 + p[1] * e2, a / np.linalg.norm(a)

    def residual(p: np.ndarray) -> np.ndarray:
        c, a = axis_of(p)
        return np.linalg.norm(np.cross(pts - c, a), axis=1) - p[4]

    fit = least_squares(residual, [0.0, 0.0, 0.0, 0.0, guess_radius], x_scale=1e-2)
    c, a = axis_of(fit.x)
    return c, a, float(fit.x[4])


def channels_clearance_mm(measured: list[MeasuredChannel]) -> float:
    """Closest approach (mm) of any two fitted channel cylinders; inf for one channel."""
    least = np.inf
    for i in range(len(measured) - 1):
        rest = measured[i + 1 :]
        gap = segment_distances(
            measured[i].start_mm,
            measured[i].end_mm,
            np.array([m.start_mm for m in rest]),
            np.array([m.end_mm for m in rest]),
        )
        radii = measured[i].radius_mm + np.array([m.radius_mm for m in rest])
        least = min(least, float((gap - radii).min()))
    return least


def underside_distances_mm(template: TemplateMesh, field: BodyField) -> np.ndarray:
    """(m,) distance (mm) of each underside vertex from the skin, negative inside the body.

    The underside: faces turned toward the patient (normal within 72 deg of the plate's
    normal), not on a channel's or registration hole's wall, and inside the window by two
    construction voxels (the rim, where marching cubes bevels the plate's edge, is left out).
    """
    mesh, o, frame = template.mesh, template.options, template.frame
    centres = mesh.triangles_center
    down = mesh.face_normals @ frame.n > 0.3
    rim = o.margin_mm - 2.0 * frame.h
    down &= sample_frame(frame, template.window_mm, centres) <= rim
    keep = o.min_wall_mm / 2.0
    for c in template.channels:
        radial = np.linalg.norm(np.cross(centres - c.entry_mm, c.direction), axis=1)
        down &= radial > o.channel_radius_mm + keep
    for p in template.fiducials_mm:
        radial = np.linalg.norm(np.cross(centres - p, template.frame.n), axis=1)
        down &= radial > o.fiducial_diameter_mm / 2.0 + keep
    verts = mesh.vertices[np.unique(mesh.faces[down])]
    _, dist, _ = trimesh.proximity.closest_point(template.skin, verts)
    inside = field.at(verts) > SKIN_LEVEL
    return np.where(inside, -dist, dist)


def check_template(template: TemplateMesh, field: BodyField) -> dict:
    """Every check above on ``template``, as the JSON-ready record template.json keeps.

    Raises
    ------
    SeedoptError
        When a check fails (the message names each failure): a template that is not a
        closed solid, a channel off its needle, two channels that meet, an underside that
        touches the skin or lies beyond the gap, is never handed out.
    """
    o = template.options
    mesh = mesh_checks(template.mesh)
    measured = [
        measure_channel(template.mesh, c, o.channel_radius_mm, o.min_wall_mm / 2.0)
        for c in template.channels
    ]
    clearance = channels_clearance_mm(measured)
    gaps = underside_distances_mm(template, field)
    failures = []
    if not (mesh["watertight"] and mesh["winding_consistent"] and mesh["volume_mm3"] > 0):
        failures.append("the mesh is not a closed, consistently wound solid of positive volume")
    if mesh["bodies"] != 1:
        failures.append(f"the mesh falls into {mesh['bodies']} pieces")
    for k, m in enumerate(measured, start=1):
        if m.offset_mm > AXIS_OFFSET_LIMIT_MM or m.angle_deg > AXIS_ANGLE_LIMIT_DEG:
            failures.append(
                f"channel {k} lies {m.offset_mm:.3f} mm and {m.angle_deg:.3f} deg off its "
                f"needle (limits {AXIS_OFFSET_LIMIT_MM} mm, {AXIS_ANGLE_LIMIT_DEG} deg)"
            )
    if clearance <= 0:
        failures.append(f"two channels meet (closest approach {clearance:.3f} mm)")
    if not len(gaps) or gaps.min() <= 0 or gaps.max() > o.gap_mm:
        lo, hi = (gaps.min(), gaps.max()) if len(gaps) else (np.nan, np.nan)
        failures.append(
            f"the underside lies {lo:.3f} to {hi:.3f} mm from the skin, not within "
            f"(0, gap_mm] = (0, {o.gap_mm:g}] mm"
        )
    if failures:
        raise SeedoptError("the template fails its checks: " + "; ".join(failures))
    return {
        "mesh": mesh,
        "channels": [
            {
                "needle": k,
                "planned_entry_mm": c.entry_mm.tolist(),
                "planned_direction": c.direction.tolist(),
                "measured_axis_mm": [m.start_mm.tolist(), m.end_mm.tolist()],
                "measured_radius_mm": m.radius_mm,
                "axis_offset_mm": m.offset_mm,
                "axis_angle_deg": m.angle_deg,
                "wall_faces": m.wall_faces,
            }
            for k, (c, m) in enumerate(zip(template.channels, measured, strict=True), start=1)
        ],
        "channels_closest_approach_mm": None if np.isinf(clearance) else clearance,
        "underside_to_skin_mm": {
            "min": float(gaps.min()),
            "max": float(gaps.max()),
            "mean": float(gaps.mean()),
            "vertices": len(gaps),
        },
        "limits": {
            "axis_offset_mm": AXIS_OFFSET_LIMIT_MM,
            "axis_angle_deg": AXIS_ANGLE_LIMIT_DEG,
            "underside_to_skin_max_mm": o.gap_mm,
        },
    }
