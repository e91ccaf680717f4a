"""The entry window of freehand needles on the case's skin: where it lies and its axis.

The skin is the body mask's surface: body voxels with a face neighbour outside the body
(where the grid cuts the body there is no skin). The window's axis, unless the config gives
it, is the inward normal of the plane fitted (least squares, by SVD) to the skin voxel
centres within the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..case import Case
from ..errors import SeedoptError
from .config import EntryWindow
from .seeds import mask_at

MIN_SKIN_POINTS = 6
"""Fewest skin voxels a window must hold to fit its normal."""


@dataclass(frozen=True)
class WindowGeometry:
    """An entry window resolved on a case: ``center_mm`` (3,), ``radius_mm`` and the unit
    ``inward`` axis (3,)."""

    center_mm: np.ndarray
    radius_mm: float
    inward: np.ndarray

    def contains(self, entries_mm: np.ndarray) -> np.ndarray:
        """(n,) whether each (n, 3) skin entry (mm) lies within the window."""
        gap = np.asarray(entries_mm, float).reshape(-1, 3) - self.center_mm
        return np.linalg.norm(gap, axis=1) <= self.radius_mm + 1e-9


def skin_points(case: Case) -> np.ndarray:
    """(n, 3) centres of the body's surface voxels, mm (none where the grid cuts the body)."""
    body = case.masks[case.body]
    return case.grid.points_mm(body & ~ndimage.binary_erosion(body, border_value=1))


def resolve_window(
    case: Case, window: EntryWindow, key: str = "approach.entry_window"
) -> WindowGeometry:
    """The window on ``case``'s skin, its axis fitted when the config leaves it out.

    Raises
    ------
    SeedoptError
        When ``center_mm`` lies farther than ``radius_mm`` from the skin, or the window holds
        too little skin to fit its normal.
    """
    centre = np.asarray(window.center_mm, float)
    skin = skin_points(case)
    near = skin[np.linalg.norm(skin - centre, axis=1) <= window.radius_mm]
    if not len(near):
        raise SeedoptError(
            f"{key}.center_mm: no skin within radius_mm={window.radius_mm:g} of "
            f"{list(window.center_mm)}; the window must lie on the body surface"
        )
    if window.normal is not None:
        return WindowGeometry(centre, window.radius_mm, np.asarray(window.normal, float))
    if len(near) < MIN_SKIN_POINTS:
        raise SeedoptError(
            f"{key}.radius_mm: {len(near)} skin voxels within {window.radius_mm:g} mm are too "
            "few to fit the window's normal; widen the window or give entry_window.normal"
        )
    mean = near.mean(axis=0)
    normal = np.linalg.svd(near - mean, full_matrices=False)[2][-1]
    # Inward is the side where the body lies a few voxels from the fitted plane.
    reach = 2.0 * max(case.grid.spacing_mm)
    probes = mean + reach * np.stack([normal, -normal])
    inside = mask_at(case.masks[case.body], case.grid, probes)
    if not inside[0] and inside[1]:
        normal = -normal
    elif inside[0] == inside[1]:  # a thin or folded surface: the body's centroid decides
        if normal @ (case.grid.points_mm(case.masks[case.body]).mean(axis=0) - mean) < 0:
            normal = -normal
    return WindowGeometry(centre, window.radius_mm, normal / np.linalg.norm(normal))
