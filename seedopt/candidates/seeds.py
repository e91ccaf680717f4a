"""Candidate seed positions along needles, and the structure lookups they are checked with.

A point is inside a structure when its nearest voxel is; the distance from a point to a
structure is the distance to the structure's nearest voxel centre (as in ``case.expand``).
Distances are exact at the query point, not read off the voxel the point falls in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..case import Case, Grid, expand
from ..errors import SeedoptError
from .base import Candidates, Needle
from .config import SeedSettings
from .drops import KEYS, Drop

NO_SEED_KEY = KEYS[Drop.NO_SEED]


def mask_at(mask: np.ndarray, grid: Grid, points_mm: np.ndarray) -> np.ndarray:
    """(n,) whether each of the (n, 3) points (x, y, z, mm) falls in a voxel of ``mask``.

    Points off the grid are outside every mask.
    """
    idx = grid.mm_to_index(np.asarray(points_mm, dtype=float).reshape(-1, 3))
    inside = grid.contains_index(idx)
    out = np.zeros(len(idx), dtype=bool)
    z, y, x = idx[inside].T
    out[inside] = mask[z, y, x]
    return out


class MaskDistance:
    """Distance from points to a structure (its nearest voxel centre), mm; zero inside it."""

    def __init__(self, mask: np.ndarray, grid: Grid) -> None:
        self._mask = mask
        self._grid = grid
        # Only voxels with a face neighbour outside the mask can be nearest to an outside point.
        edge = mask & ~ndimage.binary_erosion(mask, border_value=1)
        self._tree = cKDTree(grid.points_mm(edge)) if edge.any() else None

    def __call__(self, points_mm: np.ndarray, upper_mm: float = np.inf) -> np.ndarray:
        """(n,) distances of the (n, 3) points, mm; those beyond ``upper_mm`` come back inf."""
        pts = np.asarray(points_mm, dtype=float).reshape(-1, 3)
        if self._tree is None:
            return np.full(len(pts), np.inf)
        dist, _ = self._tree.query(pts, distance_upper_bound=upper_mm)
        dist[mask_at(self._mask, self._grid, pts)] = 0.0
        return dist


def expanded_target(case: Case, margin_mm: float) -> np.ndarray:
    """The target grown by ``margin_mm`` and clipped to the body, a (z, y, x) mask."""
    return expand(case.masks[case.target], margin_mm, case.grid) & case.masks[case.body]


@dataclass(frozen=True)
class SeedRegion:
    """Where a candidate seed centre may lie: inside the (expanded) target, at least
    ``skin_keepout_mm`` from outside the body and ``cord_keepout_mm`` from the cord."""

    grid: Grid
    target: np.ndarray
    outside_body: MaskDistance
    cord: MaskDistance | None
    skin_keepout_mm: float
    cord_keepout_mm: float

    @classmethod
    def of(cls, case: Case, spec: SeedSettings) -> SeedRegion:
        cord = MaskDistance(case.masks[case.cord], case.grid) if case.cord else None
        return cls(
            case.grid,
            expanded_target(case, spec.target_margin_mm),
            MaskDistance(~case.masks[case.body], case.grid),
            cord,
            spec.skin_keepout_mm,
            spec.cord_keepout_mm,
        )

    def contains(self, points_mm: np.ndarray) -> np.ndarray:
        """(n,) whether each of the (n, 3) points (mm) is an allowed seed centre."""
        ok = mask_at(self.target, self.grid, points_mm)
        ok[ok] = self.outside_body(points_mm[ok], self.skin_keepout_mm) >= self.skin_keepout_mm
        if self.cord is not None:
            ok[ok] = self.cord(points_mm[ok], self.cord_keepout_mm) >= self.cord_keepout_mm
        return ok


def seeds_along(needle: Needle, pitch_mm: float, region: SeedRegion) -> np.ndarray:
    """(k, 3) allowed seed centres on ``needle``, mm: the tip, then every ``pitch_mm`` back
    towards the entry, keeping those ``region`` allows (tip first)."""
    steps = np.arange(int(np.floor(needle.depth_mm / pitch_mm + 1e-9)) + 1)
    pts = np.asarray(needle.tip_mm, float) - (steps * pitch_mm)[:, None] * needle.direction
    return pts[region.contains(pts)]


def assemble(
    needles: Sequence[Needle],
    seeds: Sequence[np.ndarray],
    spec: SeedSettings,
    approach: str,
    dropped: Mapping[str, int],
) -> Candidates:
    """Candidates from needles and their seed centres; needles without a seed are dropped
    (counted as ``no_seed_position`` on top of the earlier ``dropped`` counts).

    Raises
    ------
    SeedoptError
        When no needle has a seed, naming the settings that rule the positions out.
    """
    kept = [(n, s) for n, s in zip(needles, seeds, strict=True) if len(s)]
    if not kept:
        raise SeedoptError(
            f"approach: no candidate seed position on any of {len(needles)} needles lies in the "
            f"target (target_margin_mm={spec.target_margin_mm:g}) at least "
            f"skin_keepout_mm={spec.skin_keepout_mm:g} from the skin and "
            f"cord_keepout_mm={spec.cord_keepout_mm:g} from the cord"
        )
    return Candidates(
        needles=[n for n, _ in kept],
        seeds_mm=np.concatenate([s for _, s in kept]),
        seed_needle=np.concatenate([np.full(len(s), i) for i, (_, s) in enumerate(kept)]),
        seed_pitch_mm=spec.seed_pitch_mm,
        approach=approach,
        dropped=MappingProxyType(
            {**dropped, NO_SEED_KEY: dropped.get(NO_SEED_KEY, 0) + len(needles) - len(kept)}
        ),
    )


def place_seeds(
    case: Case,
    needles: Sequence[Needle],
    spec: SeedSettings,
    approach: str,
    dropped: Mapping[str, int],
) -> Candidates:
    """Candidate seeds every ``spec.seed_pitch_mm`` along each needle, from its tip back
    (``dropped``: the lines dropped before, by reason)."""
    region = SeedRegion.of(case, spec)
    seeds = [seeds_along(n, spec.seed_pitch_mm, region) for n in needles]
    return assemble(needles, seeds, spec, approach, dropped)
