"""The entry window ``init-case --approach freehand`` writes: the skin nearest the target
whose straight path to the target keeps clear of the nogo organs and, with a CT, of bone and
air inside the body.

The window's centre is that skin point; its normal is the unit vector from it to the
target's centroid, which for the skin point nearest the centroid is the skin's inward normal
(the nearest point of a smooth surface lies along its normal), and stays the direction of a
clear path where a nearer point was passed over; its radius covers the target's width
across the normal plus ``WINDOW_MARGIN_MM``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..candidates.config import CTKeepout
from ..candidates.seeds import mask_at
from ..case.ct_volume import CTVolume
from ..case.grid import Grid
from ..errors import SeedoptError

WINDOW_MARGIN_MM = 10.0
"""How far the window reaches beyond the target's width, mm."""
MAX_TRIED = 2000
"""Skin points tried, nearest first."""


@dataclass(frozen=True)
class ChosenWindow:
    """``center_mm`` (3,) on the skin, unit ``normal`` (3,) into the patient, ``radius_mm``,
    and ``depth_mm``, the distance from the centre to the target's centroid."""

    center_mm: np.ndarray
    normal: np.ndarray
    radius_mm: float
    depth_mm: float


def _blocked(
    starts: np.ndarray, end: np.ndarray, grid: Grid, near_nogo: np.ndarray, ct: CTVolume | None
) -> np.ndarray:
    """(n,) whether the segment from each start (n, 3) to ``end`` (mm) meets ``near_nogo``
    (on ``grid``) or a CT voxel of bone or air in the body (the default thresholds; no margin:
    the plan's path rules apply it)."""
    rule = CTKeepout()
    spacing = min(grid.spacing_mm) if ct is None else min(*grid.spacing_mm, *ct.grid.spacing_mm)
    length = np.linalg.norm(end - starts, axis=1)
    t = np.linspace(0.0, 1.0, int(np.ceil(length.max() / (spacing / 2))) + 1)
    pts = (starts[:, None, :] + t[None, :, None] * (end - starts)[:, None, :]).reshape(-1, 3)
    hit = mask_at(near_nogo, grid, pts)
    if ct is not None:
        bad = ct.bone(rule.bone_above_hu) | ct.air_in_body(rule.air_below_hu)
        hit |= mask_at(bad, ct.grid, pts)
    return np.asarray(hit.reshape(len(starts), len(t)).any(axis=1))


def choose_window(
    body: np.ndarray,
    target: np.ndarray,
    near_nogo: np.ndarray,
    grid: Grid,
    ct: CTVolume | None,
    ct_bounds_mm: tuple[np.ndarray, np.ndarray] | None = None,
) -> ChosenWindow:
    """The window on ``body``'s skin (masks on ``grid``; ``near_nogo`` already grown by the
    clearance); see the module docstring. Where the body meets the CT's edges
    (``ct_bounds_mm``, low and high x, y, z) there is no skin, only the end of the scan.

    Raises
    ------
    SeedoptError
        When none of the ``MAX_TRIED`` skin points nearest the target's centroid has a clear
        straight path to it.
    """
    skin = grid.points_mm(body & ~ndimage.binary_erosion(body, border_value=1))
    if ct_bounds_mm is not None:
        edge = np.asarray(grid.spacing_mm)
        lo, hi = ct_bounds_mm
        skin = skin[np.all((skin > lo + edge) & (skin < hi - edge), axis=1)]
    if not len(skin):
        raise SeedoptError(
            "--approach freehand: the body has no skin on the grid (no body contour or CT)"
        )
    target_pts = grid.points_mm(target)
    centroid = target_pts.mean(axis=0)
    order = np.argsort(np.linalg.norm(skin - centroid, axis=1), kind="stable")[:MAX_TRIED]
    blocked = _blocked(skin[order], centroid, grid, near_nogo, ct)
    if blocked.all():
        raise SeedoptError(
            "--approach freehand: no straight path from the skin to the target keeps clear of "
            "the nogo organs, bone and air; use --approach template or set approach by hand"
        )
    centre = skin[order[int(np.argmin(blocked))]]
    axis = centroid - centre
    depth = float(np.linalg.norm(axis))
    normal = axis / depth
    across = (target_pts - centroid) - np.outer((target_pts - centroid) @ normal, normal)
    radius = float(np.linalg.norm(across, axis=1).max()) + WINDOW_MARGIN_MM
    return ChosenWindow(centre, normal, radius, depth)
