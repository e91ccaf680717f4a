"""Coplanar template: parallel needles through the holes of a square lattice.

Lines are traced through the case by sampling them every quarter voxel; ``trace_lines`` is
shared with the freehand approach, which traces one bundle of parallel lines per direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..case import Case
from ..errors import SeedoptError
from .base import Candidates, Needle
from .config import SeedSettings, TemplateSpec
from .drops import Drop, count, describe
from .keepouts import KeepOut, path_keepouts
from .seeds import expanded_target, mask_at, place_seeds
from .window import WindowGeometry


def plane_basis(direction: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane normal to ``direction``.

    The first is patient x projected onto the plane (y when the direction runs along x); the
    second is perpendicular to both and points superior (posterior when it cannot).
    """
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    axis = np.eye(3)[0] if abs(d[0]) < 0.9 else np.eye(3)[1]
    u = axis - (axis @ d) * d
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    if v[2] < -1e-9 or (abs(v[2]) <= 1e-9 and v[1] < 0):
        v = -v
    return u, v


@dataclass(frozen=True)
class Traces:
    """Parallel lines traced through a case, one row per line (positions in mm).

    Attributes
    ----------
    entry_mm : (n, 3) first point in the body going along the direction (the skin entry).
    tip_mm : (n, 3) last point in the (expanded) target.
    target_in_mm : (n, 3) first point in the (expanded) target.
    status : (n,) ``Drop.OK`` or why the line gives no needle (the first ``Drop`` rule it
        breaks); positions of lines that miss the target are NaN.
    """

    entry_mm: np.ndarray
    tip_mm: np.ndarray
    target_in_mm: np.ndarray
    status: np.ndarray


def trace_lines(
    case: Case,
    origins_mm: np.ndarray,
    direction: np.ndarray,
    spec: SeedSettings,
    target: np.ndarray,
    keepouts: list[KeepOut],
    window: WindowGeometry | None = None,
) -> Traces:
    """Trace lines ``origins_mm + t * direction`` (t >= 0, mm) through ``case``.

    A line gives a needle when it meets ``target``, enters the body through its surface (not
    where the grid cuts the body) and inside ``window`` (when given), reaches the target's
    far side within ``spec.max_depth_mm`` of the entry, and keeps each keep-out's clearance
    over its whole path from the skin entry to the tip (``keepouts``, in order).
    """
    grid = case.grid
    d = np.asarray(direction, float)
    origins = np.asarray(origins_mm, float).reshape(-1, 3)
    step = min(grid.spacing_mm) / 4.0
    lo = np.asarray(grid.origin_mm) - np.asarray(grid.spacing_mm) / 2.0
    hi = lo + np.asarray(grid.shape[::-1]) * np.asarray(grid.spacing_mm)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_lo, t_hi = (lo - origins) / d, (hi - origins) / d
    t_in = np.nanmax(np.where(d != 0, np.minimum(t_lo, t_hi), -np.inf), axis=1)
    t_out = np.nanmin(np.where(d != 0, np.maximum(t_lo, t_hi), np.inf), axis=1)
    t0 = max(0.0, float(t_in.min()) - step)
    t = t0 + step * np.arange(max(1, int(np.ceil((t_out.max() - t0) / step)) + 2))
    pts = origins[:, None, :] + t[None, :, None] * d  # (lines, samples, 3)
    flat = pts.reshape(-1, 3)
    shape = pts.shape[:2]
    in_body = mask_at(case.masks[case.body], grid, flat).reshape(shape)
    in_target = mask_at(target, grid, flat).reshape(shape)
    on_grid = grid.contains_index(grid.mm_to_index(flat)).reshape(shape)

    status = np.full(len(origins), Drop.OK)
    hits = in_target.any(axis=1)
    status[~hits] = Drop.MISSES
    first_body = np.argmax(in_body, axis=1)
    first_target = np.argmax(in_target, axis=1)
    last_target = shape[1] - 1 - np.argmax(in_target[:, ::-1], axis=1)
    rows = np.arange(len(origins))
    cut = (first_body == 0) | ~on_grid[rows, np.maximum(first_body - 1, 0)]
    status[hits & cut] = Drop.CUT_ENTRY
    if window is not None:
        outside = ~window.contains(pts[rows, first_body])
        status[(status == Drop.OK) & outside] = Drop.OUTSIDE_WINDOW
    depth = (last_target - first_body) * step
    status[(status == Drop.OK) & (depth > spec.max_depth_mm)] = Drop.TOO_DEEP
    along = np.arange(shape[1])[None, :]
    path = (along >= first_body[:, None]) & (along <= last_target[:, None])
    for keepout in keepouts:
        # Sample distances >= clearance + step/2 keep the whole segment >= clearance away.
        clearance = keepout.clearance_mm + step / 2.0
        on_path = path & (status == Drop.OK)[:, None]
        near = np.zeros(shape, dtype=bool)
        near[on_path] = keepout.distance(pts[on_path], clearance) < clearance
        status[near.any(axis=1)] = keepout.reason

    def at(index: np.ndarray) -> np.ndarray:
        out = pts[rows, index]
        out[~hits] = np.nan
        return out

    return Traces(at(first_body), at(last_target), at(first_target), status)


def hole_centres(
    centre_mm: np.ndarray, spec: TemplateSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The holes of the template centred on the projection of ``centre_mm`` (the target's
    centroid): (m, 3) centres on the template plane (mm), and each hole's column and row."""
    d = np.asarray(spec.direction, float)
    p0 = np.asarray(spec.plane_point_mm, float)
    n = int(np.floor(spec.size_mm / spec.hole_pitch_mm + 1e-9)) + 1
    offsets = (np.arange(n) - (n - 1) / 2.0) * spec.hole_pitch_mm
    u, v = plane_basis(d)
    cols, rows = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    hub = centre_mm - ((centre_mm - p0) @ d) * d
    return hub + offsets[cols, None] * u + offsets[rows, None] * v, cols, rows


def template_candidates(case: Case, spec: TemplateSpec) -> Candidates:
    """Needles through the holes of a coplanar template, and candidate seeds along them.

    Holes lie on a square lattice (``hole_pitch_mm``, ``size_mm`` wide) in the plane through
    ``plane_point_mm`` normal to ``direction``, centred on the projection of the target's
    centroid; columns run along :func:`plane_basis`'s first vector, rows along its second.
    Each hole whose line meets the target gives a needle from the skin entry to the target's
    far side, unless it is deeper than ``max_depth_mm`` or comes closer than its clearance to
    a keep-out (``keepouts.path_keepouts``: nogo structures, bone and air on the CT).

    Raises
    ------
    SeedoptError
        When the plane point lies in the body, the target lies behind the template, or no
        hole gives a needle (the message counts why).
    """
    grid = case.grid
    d = np.asarray(spec.direction, float)
    p0 = np.asarray(spec.plane_point_mm, float)
    if mask_at(case.masks[case.body], grid, p0[None])[0]:
        raise SeedoptError(
            f"approach.plane_point_mm: {list(spec.plane_point_mm)} lies inside the body; "
            "the template plane must be outside the patient"
        )
    target = expanded_target(case, spec.target_margin_mm)
    centre = grid.points_mm(target).mean(axis=0)
    if (centre - p0) @ d <= 0:
        raise SeedoptError(
            "approach.direction: the target lies behind the template plane; direction must "
            "point from plane_point_mm into the patient"
        )
    origins, cols, rows = hole_centres(centre, spec)
    traces = trace_lines(case, origins, d, spec, target, path_keepouts(case, spec))
    ok = np.flatnonzero(traces.status == Drop.OK)
    if not len(ok):
        raise SeedoptError(unusable_lines_message(traces.status, spec))
    needles = [
        Needle(traces.entry_mm[i], traces.tip_mm[i], (int(cols[i]), int(rows[i]))) for i in ok
    ]
    return place_seeds(case, needles, spec, "template", count(traces.status))


def unusable_lines_message(status: np.ndarray, spec: SeedSettings) -> str:
    """The error when no traced line is usable, counting the reasons (``Drop`` codes)."""
    why = describe(count(status), spec)
    return f"approach: none of the {len(status)} needle lines is usable ({why})"
