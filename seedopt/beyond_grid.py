"""Structures that extend beyond the dose grid: how much of them lies outside, and an upper
bound of the dose there.

A hard limit is evaluated on the structure's voxels inside the grid: the dose outside is not
computed. seedopt does not assume it is zero; it bounds it. Every seed lies inside the grid,
so a point of the structure outside lies at least ``d_s`` from seed ``s``, where ``d_s`` is
the distance from the seed to the box that holds that outside part (the structure's bounding
box beyond one face of the grid). With ``K(r)``, the highest dose one seed gives anywhere at a
distance >= r (the TG-43 dose of the source taken over every polar angle and every larger
distance), the dose anywhere in that part is at most ``sum_s K(d_s)``; the bound is the
largest over the parts. A goal is met only when the value inside the grid and the bound both
keep the limit. Where the bound does not, the grid is grown over the structure (the dose
computed at its voxels there, ``evaluate_grown``) until the bound beyond the grown grid keeps
the limit; if it never does, the goal is not evaluated (``plan_metrics.limit_goal``; see
docs/planning.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .case import Case, Grid
from .case.config import GridSpec
from .case.shapes import Box, Contours, CTBody, Cylinder, Ellipsoid, Shape
from .optimizer import HardLimit
from .plan_config import PlanSpec
from .sources import Source

if TYPE_CHECKING:
    from .dicom.images import CaseImages

Bounds = tuple[np.ndarray, np.ndarray]
"""(x, y, z) low and high edges, mm (+-inf where a shape has no bound)."""

_R_MM = np.geomspace(0.25, 5000.0, 600)
_THETA = np.radians(np.linspace(0.0, 180.0, 361))


@dataclass(frozen=True)
class OutsidePart:
    """A structure's part outside the dose grid: its volume (cc; ``math.inf`` when the
    shape has no bound) and boxes (lo, hi mm) that together hold it."""

    outside_cc: float
    boxes: tuple[Bounds, ...]


def grid_edges(grid: Grid) -> Bounds:
    """(x, y, z) low and high edges of the grid's voxels (centres +- half a voxel), mm."""
    spacing = np.asarray(grid.spacing_mm)
    lo = np.asarray(grid.origin_mm) - spacing / 2
    return lo, lo + np.asarray(grid.shape[::-1]) * spacing


def _shape_bounds(shape: Shape, images: CaseImages | None) -> Bounds:
    inf = np.full(3, np.inf)
    if isinstance(shape, Ellipsoid):
        c, r = np.asarray(shape.center_mm), np.asarray(shape.radii_mm)
        return c - r, c + r
    if isinstance(shape, Box):
        return np.asarray(shape.min_mm, float), np.asarray(shape.max_mm, float)
    if isinstance(shape, Cylinder):
        a = "xyz".index(shape.axis)
        half = np.empty(3)
        half[[k for k in range(3) if k != a]] = shape.radii_mm
        half[a] = shape.half_length_mm if shape.half_length_mm is not None else np.inf
        c = np.asarray(shape.center_mm)
        return c - half, c + half
    if images is not None and isinstance(shape, Contours):
        pts = images.structure_set.roi(shape.selector).points_mm()
        if len(pts):
            slab = np.array([0.0, 0.0, images.slice_thickness_mm / 2])
            return pts.min(axis=0) - slab, pts.max(axis=0) + slab
    if images is not None and images.ct is not None and isinstance(shape, CTBody):
        return images.ct.bounds_mm()
    return -inf, inf  # not known: anywhere


def structure_bounds(spec: PlanSpec, case: Case, images: CaseImages | None, name: str) -> Bounds:
    """A box holding structure ``name`` of the case (``within`` applied; the derived skin in
    the body's box, the target grown by its margin)."""
    if name in spec.structures:
        shape = spec.structures[name]
        lo, hi = _shape_bounds(shape, images)
        if shape.within is not None:
            wlo, whi = structure_bounds(spec, case, images, shape.within)
            lo, hi = np.maximum(lo, wlo), np.minimum(hi, whi)
        return lo, hi
    if name == case.skin:
        return structure_bounds(spec, case, images, case.body)
    if name == case.target:
        lo, hi = structure_bounds(spec, case, images, spec.roles.target)
        return lo - spec.target_margin_mm, hi + spec.target_margin_mm
    return np.full(3, -np.inf), np.full(3, np.inf)


def _outside_boxes(bounds: Bounds, edges: Bounds) -> tuple[Bounds, ...]:
    """``bounds`` beyond each face of the grid box ``edges`` (empty when inside)."""
    lo, hi = bounds
    glo, ghi = edges
    boxes = []
    for a in range(3):
        if lo[a] < glo[a]:
            b_hi = hi.copy()
            b_hi[a] = min(hi[a], glo[a])
            boxes.append((lo.copy(), b_hi))
        if hi[a] > ghi[a]:
            b_lo = lo.copy()
            b_lo[a] = max(lo[a], ghi[a])
            boxes.append((b_lo, hi.copy()))
    return tuple(boxes)


def _extended_grid_spec(grid: Grid, bounds: Bounds, pad: int = 1) -> GridSpec:
    """The case's grid (same spacing and voxel centres) grown to cover ``bounds`` and ``pad``
    voxels more."""
    s = np.asarray(grid.spacing_mm)
    origin = np.asarray(grid.origin_mm)
    top = origin + (np.asarray(grid.shape[::-1]) - 1) * s
    lo = origin - (np.ceil(np.maximum(0.0, origin - bounds[0]) / s) + pad) * s
    hi = top + (np.ceil(np.maximum(0.0, bounds[1] - top) / s) + pad) * s
    return GridSpec(
        spacing_mm=tuple(s.tolist()), min_mm=tuple(lo.tolist()), max_mm=tuple(hi.tolist())
    )


def _on_grid(spec: PlanSpec, grid: GridSpec, name: str) -> PlanSpec:
    """``spec`` on ``grid`` with only the structures the case needs to build ``name`` (and
    the target, body and skin its roles require), each with what it cuts or clips by."""
    roles = spec.roles
    keep: set[str] = set()
    todo = [
        name,
        roles.target,
        roles.body,
        *([roles.skin.structure] if roles.skin.structure else []),
    ]
    while todo:
        k = todo.pop()
        if k in spec.structures and k not in keep:
            keep.add(k)
            todo += [*spec.structures[k].minus, *filter(None, [spec.structures[k].within])]
    structures = {k: v for k, v in spec.structures.items() if k in keep}
    return spec.model_copy(update={"grid": grid, "structures": structures})


def outside_parts(
    spec: PlanSpec, case: Case, images: CaseImages | None, names: list[str]
) -> dict[str, OutsidePart | None]:
    """The part of each structure of ``names`` that lies outside the case's grid (None: it
    lies inside). A bounded structure is rasterized once more on the grid grown over its box
    (same spacing and voxel centres) to count its voxels outside."""
    edges = grid_edges(case.grid)
    parts: dict[str, OutsidePart | None] = {}
    for name in dict.fromkeys(names):
        bounds = structure_bounds(spec, case, images, name)
        boxes = _outside_boxes(bounds, edges)
        outside = math.inf if boxes else 0.0
        if boxes and np.all(np.isfinite(bounds)):
            grown = _on_grid(spec, _extended_grid_spec(case.grid, bounds), name)
            whole = Case.from_spec(grown, images).masks[name]
            outside = (int(whole.sum()) - int(case.masks[name].sum())) * case.grid.voxel_cc
        parts[name] = OutsidePart(outside, boxes) if outside > 0 else None
    return parts


@functools.lru_cache(maxsize=16)
def _envelope_gy_per_u(model_id: str, half_life_d: float, formalism: str) -> np.ndarray:
    """``K(r)`` on ``_R_MM`` for a 1 U seed: the highest permanent-implant dose (Gy) at any
    polar angle and any distance >= r (a pure function of its arguments, so cached)."""
    from .dose import dose_at_points
    from .sources import get_model

    source = Source(get_model(model_id), 1.0, half_life_d)
    r, t = np.meshgrid(_R_MM, _THETA, indexing="ij")
    points = np.column_stack([(r * np.sin(t)).ravel(), np.zeros(r.size), (r * np.cos(t)).ravel()])
    dose = dose_at_points(
        points, np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0]]), source, formalism=formalism
    ).reshape(r.shape)
    return np.maximum.accumulate(dose.max(axis=1)[::-1])[::-1]


def _box_distance_mm(points: np.ndarray, box: Bounds) -> np.ndarray:
    lo, hi = box
    gap = np.maximum(np.maximum(lo - points, points - hi), 0.0)  # per axis; 0 inside
    return np.sqrt(np.sum(gap**2, axis=1))


def dose_outside_bound_gy(
    part: OutsidePart, seeds_mm: np.ndarray, source: Source, formalism: str
) -> float:
    """An upper bound of the permanent-implant dose (Gy) anywhere in ``part`` from seeds of
    ``source`` at ``seeds_mm`` (module docstring); ``math.inf`` if a seed lies in it."""
    if len(seeds_mm) == 0:
        return 0.0
    k = _envelope_gy_per_u(source.model.model_id, source.half_life_d, formalism)
    worst = 0.0
    for box in part.boxes:
        d = _box_distance_mm(np.asarray(seeds_mm, float), box)
        i = np.searchsorted(_R_MM, d, side="right") - 1  # the largest tabulated r <= d
        if np.any(i < 0):
            return math.inf
        worst = max(worst, float(k[i].sum()))
    return worst * source.air_kerma_strength_u


GROW_STEPS_MM = (25.0, 50.0, 100.0, 200.0)
"""How far ``evaluate_grown`` grows the grid over a structure, step by step (mm)."""


@dataclass(frozen=True)
class GrownValue:
    """A limited metric evaluated on the grid grown ``grown_mm`` over the structure: its
    value there (Gy), the volume the grown grid holds (cc) and the dose bound beyond it."""

    value_gy: float
    grown_mm: float
    inside_cc: float
    dose_outside_max_gy: float


def _grown_grid_spec(grid: Grid, bounds: Bounds, grow_mm: float) -> GridSpec:
    """The grid grown by up to ``grow_mm`` on each side, no farther than ``bounds``."""
    lo, hi = grid_edges(grid)
    want = (np.maximum(lo - grow_mm, bounds[0]), np.minimum(hi + grow_mm, bounds[1]))
    return _extended_grid_spec(grid, (np.minimum(want[0], lo), np.maximum(want[1], hi)), pad=0)


def evaluate_grown(
    spec: PlanSpec,
    case: Case,
    images: CaseImages | None,
    limit: HardLimit,
    seeds_mm: np.ndarray,
    seed_axes: np.ndarray,
    source: Source,
) -> GrownValue:
    """``limit``'s metric over the structure on the case's grid grown step by step
    (``GROW_STEPS_MM``) until the dose bound beyond the grown grid keeps the limit, or the
    metric there already exceeds it (the last step's value otherwise). The dose is computed
    at the structure's voxels only."""
    from .dose import dose_at_points
    from .metrics import Structure

    bounds = structure_bounds(spec, case, images, limit.structure)
    for grow_mm in GROW_STEPS_MM:
        grown = _on_grid(spec, _grown_grid_spec(case.grid, bounds, grow_mm), limit.structure)
        g = Case.from_spec(grown, images)
        mask = g.masks[limit.structure]
        dose = dose_at_points(
            g.grid.points_mm(mask), seeds_mm, seed_axes, source, formalism=spec.dose.formalism
        )
        s = Structure(np.sort(dose)[::-1], np.full(dose.size, g.grid.voxel_cc))
        named = {"Dmax": s.max_gy(), "Dmean": s.mean_gy()}
        value = (
            named[limit.metric]
            if limit.metric in named
            else s.dose_at_volume_cc(float(limit.metric[1:-2]))
        )
        boxes = _outside_boxes(bounds, grid_edges(g.grid))
        bound = (
            dose_outside_bound_gy(
                OutsidePart(math.inf, boxes), seeds_mm, source, spec.dose.formalism
            )
            if boxes
            else 0.0
        )
        if value > limit.max_gy or bound <= limit.max_gy:
            break
    return GrownValue(value, grow_mm, s.total_cc, bound)
