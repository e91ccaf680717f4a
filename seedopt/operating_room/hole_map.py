"""The hole map of a coplanar-template plan: each used hole by its column letter and row
number, the needle's depth and the depth of each seed along it.

Columns run along the template's first in-plane axis (``plane_basis``: patient x projected
onto the plane) and are lettered A, B, ..., Z, AA, ...; rows run along the second axis (toward
superior) and are numbered from 1. Depths are measured along the needle from the template's
face (the plane through ``approach.plane_point_mm``), in mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..candidates.config import TemplateSpec
from ..candidates.seeds import expanded_target
from ..candidates.template import hole_centres, plane_basis
from ..case import Case
from ..errors import SeedoptError
from .planned_needles import PlannedNeedle

HOLE_TOLERANCE_MM = 0.05
"""Largest distance of a needle's line from its hole's centre (plan.json rounds to 1 um)."""
PARALLEL_TOLERANCE_DEG = 0.05
"""Largest angle of a needle from the template's direction."""


def column_letters(column: int) -> str:
    """The letters of a 0-based column: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    k = column + 1
    while k:
        k, r = divmod(k - 1, 26)
        letters = chr(ord("A") + r) + letters
    return letters


def hole_label(column: int, row: int) -> str:
    """A hole's label as printed on the template: column letters, then the row from 1
    (``C4``: column 2, row 3 of plan.json's ``template_hole``)."""
    return f"{column_letters(column)}{row + 1}"


@dataclass(frozen=True)
class HoleEntry:
    """One used hole: its label, the needle's depth and its seeds' depths (mm)."""

    needle: int
    column: int
    row: int
    centre_mm: np.ndarray
    skin_depth_mm: float
    needle_depth_mm: float
    seed_depths_mm: list[float]

    @property
    def label(self) -> str:
        """Column letters then row number, as printed on the template: ``C4``."""
        return hole_label(self.column, self.row)


def hole_map(case: Case, spec: TemplateSpec, needles: list[PlannedNeedle]) -> list[HoleEntry]:
    """The used holes of the plan's ``needles``, by row then column.

    Raises
    ------
    SeedoptError
        No needles; a needle without a hole, not parallel to the template's direction, or not
        through its hole's centre (the plan is not of this template).
    """
    if not needles:
        raise SeedoptError("the plan has no needles: there is no hole map to write")
    target = expanded_target(case, spec.target_margin_mm)
    centres, cols, rows = hole_centres(case.grid.points_mm(target).mean(axis=0), spec)
    lattice = {(int(c), int(r)): k for k, (c, r) in enumerate(zip(cols, rows, strict=True))}
    d = np.asarray(spec.direction, float)
    out = []
    for k, n in enumerate(needles, start=1):
        key = n.template_hole
        if key not in lattice:
            raise SeedoptError(f"needle {k}: template_hole {key} is not a hole of the template")
        centre = centres[lattice[key]]
        entry, tip = n.entry, n.tip
        if not np.linalg.norm(tip - entry) > 0:
            raise SeedoptError(f"needle {k}: its entry and tip coincide")
        axis = (tip - entry) / np.linalg.norm(tip - entry)
        angle = np.degrees(np.arccos(np.clip(axis @ d, -1.0, 1.0)))
        off = np.linalg.norm(np.cross(entry - centre, d))
        if angle > PARALLEL_TOLERANCE_DEG or off > HOLE_TOLERANCE_MM:
            raise SeedoptError(
                f"needle {k} runs {off:.2f} mm from hole {list(key)}'s centre at {angle:.2f} deg "
                "to the template's direction: the plan is not of this case's template"
            )
        seeds = n.seeds
        out.append(
            HoleEntry(
                k,
                key[0],
                key[1],
                centre,
                float((entry - centre) @ d),
                float((tip - centre) @ d),
                sorted(float(x) for x in (seeds - centre) @ d),
            )
        )
    return sorted(out, key=lambda h: (h.row, h.column))


def hole_map_rows(holes: list[HoleEntry]) -> list[dict[str, Any]]:
    """hole_map.csv's rows: label, column, row, needle, depths (mm), seed count, seed depths
    (``;``-separated, mm)."""
    return [
        {
            "hole": h.label,
            "column": column_letters(h.column),
            "row": h.row + 1,
            "needle": h.needle,
            "skin_depth_mm": round(h.skin_depth_mm, 1),
            "needle_depth_mm": round(h.needle_depth_mm, 1),
            "seeds": len(h.seed_depths_mm),
            "seed_depths_mm": ";".join(f"{x:.1f}" for x in h.seed_depths_mm),
        }
        for h in holes
    ]


def hole_map_document(spec: TemplateSpec, holes: list[HoleEntry]) -> dict[str, Any]:
    """hole_map.json: the template's geometry and every used hole."""
    u, v = plane_basis(spec.direction)
    n = int(np.floor(spec.size_mm / spec.hole_pitch_mm + 1e-9)) + 1
    return {
        "template": {
            "plane_point_mm": list(spec.plane_point_mm),
            "direction": list(spec.direction),
            "hole_pitch_mm": spec.hole_pitch_mm,
            "columns": [column_letters(c) for c in range(n)],
            "rows": list(range(1, n + 1)),
            "column_axis": u.tolist(),
            "row_axis": v.tolist(),
            "depths": "mm along the needle from the template's face",
        },
        "holes": [
            {
                "hole": h.label,
                "column": column_letters(h.column),
                "row": h.row + 1,
                "needle": h.needle,
                "centre_mm": np.round(h.centre_mm, 3).tolist(),
                "skin_depth_mm": round(h.skin_depth_mm, 2),
                "needle_depth_mm": round(h.needle_depth_mm, 2),
                "seed_depths_mm": [round(x, 2) for x in h.seed_depths_mm],
            }
            for h in holes
        ],
    }
