"""The benchmark cohort: 22 synthetic cases modelled on the published CT-guided I-125 series.

Sites (LPS patient coordinates, mm: x to the patient's left, y posterior, z superior; every
body is an elliptic cylinder along z):

* ``chest_wall`` / ``abdominal_wall``: a flattened metastasis ``depth_mm`` under the anterior
  skin on the midline, the lung or the bowel 6 mm behind it; needles from the front.
* ``vertebral``: a paraspinal / vertebral-body metastasis whose nearest edge lies ``depth_mm``
  from the spinal cord's surface; aorta and vertebral body as in the built-in case; needles
  from the back.
* ``head_neck``: a recurrence below the mandible, ``depth_mm`` under the lateral skin (depths
  are measured at the target's centre line).
* ``cervical_node``: a node beside the trachea (6 mm away), the carotid 4 mm behind it,
  ``depth_mm`` unused (its depth follows from the neck); needles from the front.
* ``trunk_sarcoma``: a large sarcoma ``depth_mm`` under the lateral trunk wall, the bowel 6 mm
  medial to it.
* ``extremity_sarcoma``: a sarcoma elongated along the thigh, ``depth_mm`` under the lateral
  skin, the femur medial to it.

Volumes span 2-600 cc (14 of 22 between 20 and 60 cc), prescriptions 100-160 Gy, seed
activities 0.4-0.8 mCi, both approaches. Three cases are unreachable by design
(``reachable=False``): a vertebral target 2 mm from the cord and a chest-wall target 1 mm
under the skin at high prescriptions, where the default limits (cord D0.1cc <= 45 Gy, skin
D2cc <= 70 Gy) cannot hold with D90 >= Rx, and a head-and-neck recurrence 2 mm under skin
already irradiated (skin D2cc <= 40 Gy). The benchmark report says so if any method meets
every goal of such a case after all. The target is an ellipsoid of the asked volume (the
voxelised volume differs by a few per cent); the grid is 1 mm below 5 cc, 2 mm up to 150 cc
and 3 mm above, and candidate seeds sit every 5 mm along a needle (every 10 mm above 150 cc,
as in large implants).

    python benchmarks/cohort.py --write DIR     # every case as a seedopt plan config
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

Approach = Literal["template", "freehand"]
MARGIN_MM = 24.0
"""Grid margin around the target, mm (where the organ metrics that matter lie)."""


@dataclass(frozen=True)
class CohortCase:
    """One case of the cohort (sizes in mm, volumes in cc)."""

    name: str
    site: str
    volume_cc: float
    prescription_gy: float
    activity_mci: float
    approach: Approach
    depth_mm: float
    reachable: bool = True
    spacing_mm: float | None = None  # default by volume (module docstring)
    skin_d2cc_gy: float | None = None  # a lower skin limit (re-irradiation); None: the default

    def config(self) -> dict[str, Any]:
        """The case as a seedopt plan config (a mapping ``PlanSpec`` validates)."""
        return SITES[self.site](self)

    @property
    def grid_spacing_mm(self) -> float:
        if self.spacing_mm is not None:
            return self.spacing_mm
        return 1.0 if self.volume_cc < 5 else 2.0 if self.volume_cc <= 150 else 3.0


def ellipsoid_radii(volume_cc: float, aspect: tuple[float, float, float]) -> np.ndarray:
    """Radii (mm) of an ellipsoid of ``volume_cc`` with the axis ratios ``aspect``."""
    k = (volume_cc * 1000.0 / (4.0 / 3.0 * math.pi * math.prod(aspect))) ** (1.0 / 3.0)
    return k * np.asarray(aspect, dtype=float)


def _r(v: Any) -> list[float]:
    return [round(float(c), 1) for c in v]


def _grid(lo: Any, hi: Any, spacing: float) -> dict[str, Any]:
    lo = np.floor(np.asarray(lo, float) / spacing) * spacing
    hi = np.ceil(np.asarray(hi, float) / spacing) * spacing
    return {"spacing_mm": spacing, "min_mm": _r(lo), "max_mm": _r(hi)}


def _approach(
    c: CohortCase, point_mm: Any, direction: tuple[int, int, int], width_mm: float
) -> dict[str, Any]:
    """A coplanar template through ``point_mm`` (outside the body), or freehand needles
    within 20 degrees of ``direction``; seeds every 5 mm (10 mm above 150 cc)."""
    pitch = 10.0 if c.volume_cc > 150 else 5.0
    if c.approach == "template":
        size = 5.0 * math.ceil((width_mm + 20.0) / 5.0)
        return {
            "kind": "template",
            "plane_point_mm": _r(point_mm),
            "direction": list(direction),
            "hole_pitch_mm": 5,
            "size_mm": size,
            "seed_pitch_mm": pitch,
        }
    return {
        "kind": "freehand",
        "reference_direction": list(direction),
        "max_angle_deg": 20,
        "seed_pitch_mm": pitch,
    }


def _plan(
    c: CohortCase,
    description: str,
    grid: dict[str, Any],
    structures: dict[str, Any],
    roles: dict[str, Any],
    approach: dict[str, Any],
) -> dict[str, Any]:
    config = {
        "name": c.name,
        "description": description,
        "grid": grid,
        "structures": structures,
        "roles": {"target": "GTV", "body": "BODY", "skin": {"derive_thickness_mm": 3}, **roles},
        "source": {"model": "6711", "activity_mci": c.activity_mci},
        "prescription_gy": c.prescription_gy,
        "approach": approach,
    }
    if c.skin_d2cc_gy is not None:  # the default limits with the skin's lowered
        hard = [{"structure": "Skin", "metric": "D2cc", "max_gy": c.skin_d2cc_gy}]
        if "cord" in roles:
            hard.insert(0, {"structure": roles["cord"], "metric": "D0.1cc", "max_gy": 45.0})
        config["goals"] = {"hard": hard}
    return config


def _cyl(center: Any, radii: Any, **extra: Any) -> dict[str, Any]:
    return {
        "shape": "cylinder",
        "center_mm": _r(center),
        "radii_mm": _r(radii),
        "axis": "z",
        **extra,
    }


def _ell(center: Any, radii: Any, **extra: Any) -> dict[str, Any]:
    return {"shape": "ellipsoid", "center_mm": _r(center), "radii_mm": _r(radii), **extra}


def _surface(body: tuple[float, float], y_mm: float) -> float:
    """x (mm) of the lateral skin of the elliptic body cylinder ``body`` (x, y radii) at y."""
    return body[0] * math.sqrt(1.0 - (y_mm / body[1]) ** 2)


def _wall(c: CohortCase, organ: str, body: tuple[float, float]) -> dict[str, Any]:
    """A flattened metastasis under the anterior skin (on the midline, where the skin is
    flattest) with ``organ`` behind it."""
    rx, ry, rz = ellipsoid_radii(c.volume_cc, (1.0, 0.55, 0.9))
    x_mm, skin_y = 0.0, -body[1]
    cy = skin_y + c.depth_mm + ry
    back = cy + ry
    oy = 35.0
    structures = {
        "BODY": _cyl([0, 0, 0], body),
        "GTV": _ell([x_mm, cy, 0], [rx, ry, rz]),
        organ: _ell([x_mm, back + 6 + oy, 0], [rx + 30, oy, rz + 40], within="BODY"),
    }
    grid = _grid(
        [x_mm - rx - MARGIN_MM, skin_y - 4, -rz - MARGIN_MM],
        [x_mm + rx + MARGIN_MM, back + MARGIN_MM, rz + MARGIN_MM],
        c.grid_spacing_mm,
    )
    return _plan(
        c,
        f"{c.volume_cc:g} cc metastasis {c.depth_mm:g} mm under the skin, {organ.lower()} behind",
        grid,
        structures,
        {"oars": [organ], "nogo": [organ]},
        _approach(c, [x_mm, skin_y - 20, 0], (0, 1, 0), 2 * max(rx, rz)),
    )


def chest_wall(c: CohortCase) -> dict[str, Any]:
    return _wall(c, "Lung", (160.0, 110.0))


def abdominal_wall(c: CohortCase) -> dict[str, Any]:
    return _wall(c, "Bowel", (150.0, 115.0))


def _clear_of_point(
    radii: np.ndarray, start: np.ndarray, away: np.ndarray, point: np.ndarray, gap_mm: float
) -> np.ndarray:
    """Centre (x, y) on the ray ``start + t away`` where the ellipse of ``radii`` (x, y) lies
    ``gap_mm`` from ``point`` at its nearest (bisection on t)."""
    phi = np.linspace(0.0, 2.0 * math.pi, 1441)
    rim = np.stack([radii[0] * np.cos(phi), radii[1] * np.sin(phi)], axis=1)

    def gap(t: float) -> float:
        return float(np.min(np.linalg.norm(rim + start + t * away - point, axis=1)))

    lo, hi = 0.0, 200.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if gap(mid) < gap_mm else (lo, mid)
    return start + hi * away


def vertebral(c: CohortCase) -> dict[str, Any]:
    rx, ry, rz = ellipsoid_radii(c.volume_cc, (20.0, 17.0, 24.0))
    cord = np.array([0.0, 70.0])
    away = np.array([24.0, -26.0]) / math.hypot(24.0, -26.0)
    cx, cy = _clear_of_point(np.array([rx, ry]), cord, away, cord, 5.0 + c.depth_mm)
    structures = {
        "BODY": _cyl([0, 0, 0], [170, 120]),
        "VertebralBody": _cyl([0, 38, 0], [22, 17]),
        "GTV": _ell([cx, cy, 0], [rx, ry, rz], minus=["SpinalCanal", "SpinalCord"]),
        "SpinalCord": _cyl([0, 70, 0], [5, 5]),
        "SpinalCanal": _cyl([0, 70, 0], [9, 9], minus=["SpinalCord"]),
        "Aorta": _cyl([-26, 16, 0], [11, 11]),
    }
    grid = _grid(
        [min(cx - rx, -12.0) - MARGIN_MM, cy - ry - MARGIN_MM, -rz - MARGIN_MM],
        [cx + rx + MARGIN_MM, 124.0, rz + MARGIN_MM],
        c.grid_spacing_mm,
    )
    return _plan(
        c,
        f"{c.volume_cc:g} cc vertebral metastasis {c.depth_mm:g} mm from the spinal cord",
        grid,
        structures,
        {"cord": "SpinalCord", "oars": ["Aorta"], "nogo": ["SpinalCord", "SpinalCanal", "Aorta"]},
        _approach(c, [cx, 135, 0], (0, -1, 0), 2 * max(rx, rz)),
    )


def head_neck(c: CohortCase) -> dict[str, Any]:
    rx, ry, rz = ellipsoid_radii(c.volume_cc, (15.0, 14.0, 16.0))
    body = (70.0, 80.0)
    cy = -10.0
    skin_x = _surface(body, cy)
    cx, cz = skin_x - c.depth_mm - rx, -8.0 - 4.0 - rz
    structures = {
        "BODY": _cyl([0, 0, 0], body),
        "Mandible": {
            "shape": "box",
            "min_mm": [44, -62, -8],
            "max_mm": [60, -18, 20],
            "within": "BODY",
        },
        "GTV": _ell([cx, cy, cz], [rx, ry, rz]),
        "SpinalCord": _cyl([0, 35, 0], [5, 5]),
    }
    grid = _grid(  # the cord (its limit) inside
        [min(cx - rx - MARGIN_MM, -8.0), cy - ry - MARGIN_MM, cz - rz - MARGIN_MM],
        [skin_x + 4, max(cy + ry + MARGIN_MM, 43.0), cz + rz + MARGIN_MM],
        c.grid_spacing_mm,
    )
    return _plan(
        c,
        f"{c.volume_cc:g} cc head-and-neck recurrence below the mandible, "
        f"{c.depth_mm:g} mm under the skin",
        grid,
        structures,
        {"cord": "SpinalCord", "oars": ["Mandible"], "nogo": ["Mandible", "SpinalCord"]},
        _approach(c, [skin_x + 15, cy, cz], (-1, 0, 0), 2 * max(ry, rz)),
    )


def cervical_node(c: CohortCase) -> dict[str, Any]:
    rx, ry, rz = ellipsoid_radii(c.volume_cc, (12.0, 10.0, 14.0))
    body = (80.0, 65.0)
    cx, cy = -(10.0 + 6.0 + rx), -30.0
    structures = {
        "BODY": _cyl([0, 0, 0], body),
        "Trachea": _cyl([0, -25, 0], [10, 10]),
        "Esophagus": _cyl([-6, -7, 0], [7, 7]),
        "Carotid": _cyl([cx, cy + ry + 8, 0], [4, 4]),
        "GTV": _ell([cx, cy, 0], [rx, ry, rz]),
        "SpinalCord": _cyl([0, 20, 0], [5, 5]),
    }
    grid = _grid(  # the cord (its limit) inside
        [cx - rx - MARGIN_MM, -body[1] - 4, -rz - MARGIN_MM],
        [max(cx + rx + MARGIN_MM, 8.0), max(cy + ry + MARGIN_MM, 28.0), rz + MARGIN_MM],
        c.grid_spacing_mm,
    )
    return _plan(
        c,
        f"{c.volume_cc:g} cc cervical node beside the trachea, carotid behind it",
        grid,
        structures,
        {
            "cord": "SpinalCord",
            "oars": ["Trachea", "Esophagus"],
            "nogo": ["Trachea", "Esophagus", "Carotid", "SpinalCord"],
        },
        _approach(c, [cx, -body[1] - 15, 0], (0, 1, 0), 2 * max(rx, rz)),
    )


def _lateral_sarcoma(
    c: CohortCase,
    what: str,
    body: tuple[float, float],
    radii: np.ndarray,
    cy: float,
    organ: tuple[str, dict[str, Any]],
    grid_covers_x_mm: float | None = None,
) -> dict[str, Any]:
    """A sarcoma centred at y = ``cy`` mm, ``depth_mm`` under the lateral skin, ``organ``
    medial to it (the grid reaching x = ``grid_covers_x_mm`` too); needles from the side."""
    rx, ry, rz = radii
    skin_x = _surface(body, cy)
    cx = skin_x - c.depth_mm - rx
    name, shape = organ
    structures = {
        "BODY": _cyl([0, 0, 0], body),
        "GTV": _ell([cx, cy, 0], [rx, ry, rz]),
        name: shape,
    }
    grid = _grid(
        [
            min(cx - rx, math.inf if grid_covers_x_mm is None else grid_covers_x_mm) - MARGIN_MM,
            cy - ry - MARGIN_MM,
            -rz - MARGIN_MM,
        ],
        [skin_x + 4, cy + ry + MARGIN_MM, rz + MARGIN_MM],
        c.grid_spacing_mm,
    )
    return _plan(
        c,
        f"{c.volume_cc:g} cc {what} {c.depth_mm:g} mm under the skin, {name.lower()} medial",
        grid,
        structures,
        {"oars": [name], "nogo": [name]},
        _approach(c, [skin_x + 15, cy, 0], (-1, 0, 0), 2 * max(ry, rz)),
    )


def trunk_sarcoma(c: CohortCase) -> dict[str, Any]:
    radii = ellipsoid_radii(c.volume_cc, (45.0, 38.0, 42.0))
    rx, _, rz = radii
    medial = _surface((170.0, 120.0), 20.0) - c.depth_mm - 2 * rx  # the target's medial edge
    bowel = _ell([medial - 6 - 22, 30, 0], [22, 30, rz + 5], minus=["GTV"], within="BODY")
    return _lateral_sarcoma(c, "trunk-wall sarcoma", (170.0, 120.0), radii, 20.0, ("Bowel", bowel))


def extremity_sarcoma(c: CohortCase) -> dict[str, Any]:
    radii = ellipsoid_radii(c.volume_cc, (1.0, 0.8, 1.6))
    femur = _cyl([-15, 10, 0], [15, 15])
    return _lateral_sarcoma(c, "thigh sarcoma", (100.0, 100.0), radii, 0.0, ("Femur", femur), 0.0)


SITES: dict[str, Callable[[CohortCase], dict[str, Any]]] = {
    f.__name__: f
    for f in (
        chest_wall,
        abdominal_wall,
        vertebral,
        head_neck,
        cervical_node,
        trunk_sarcoma,
        extremity_sarcoma,
    )
}

_C = CohortCase
COHORT: tuple[CohortCase, ...] = (
    _C("chest_wall_08", "chest_wall", 8, 120, 0.5, "template", 5),
    _C("chest_wall_25", "chest_wall", 25, 140, 0.6, "freehand", 6),
    _C("chest_wall_45", "chest_wall", 45, 120, 0.7, "template", 8),
    _C("chest_wall_skin_160", "chest_wall", 35, 160, 0.8, "template", 1, reachable=False),
    _C("abdominal_wall_30", "abdominal_wall", 30, 140, 0.6, "template", 8),
    _C("abdominal_wall_120", "abdominal_wall", 120, 140, 0.8, "template", 10),
    _C("vertebral_12", "vertebral", 12, 110, 0.6, "template", 8),
    _C("vertebral_33", "vertebral", 33, 130, 0.7, "template", 12),
    _C("vertebral_55", "vertebral", 55, 120, 0.7, "freehand", 10),
    _C("vertebral_cord_140", "vertebral", 30, 140, 0.7, "template", 2, reachable=False),
    _C("head_neck_02", "head_neck", 2, 120, 0.4, "freehand", 8),
    _C("head_neck_20", "head_neck", 20, 120, 0.6, "freehand", 10),
    _C("head_neck_30", "head_neck", 30, 130, 0.6, "template", 12),
    _C(
        "head_neck_reirradiated",
        "head_neck",
        40,
        160,
        0.7,
        "freehand",
        2,
        reachable=False,
        skin_d2cc_gy=40.0,
    ),
    _C("cervical_node_05", "cervical_node", 5, 110, 0.5, "freehand", 0),
    _C("cervical_node_22", "cervical_node", 22, 120, 0.5, "freehand", 0),
    _C("cervical_node_40", "cervical_node", 40, 100, 0.6, "template", 0),
    _C("trunk_sarcoma_60", "trunk_sarcoma", 60, 140, 0.8, "template", 20),
    _C("trunk_sarcoma_250", "trunk_sarcoma", 250, 140, 0.8, "template", 30),
    _C("trunk_sarcoma_600", "trunk_sarcoma", 600, 150, 0.8, "template", 30),
    _C("extremity_sarcoma_35", "extremity_sarcoma", 35, 140, 0.7, "freehand", 12),
    _C("extremity_sarcoma_150", "extremity_sarcoma", 150, 160, 0.8, "template", 20),
)
"""The cohort of ``make bench`` / ``make bench-full``."""

TINY: tuple[CohortCase, ...] = (
    _C("tiny_chest_wall", "chest_wall", 3, 120, 0.5, "template", 5, spacing_mm=2.5),
    _C("tiny_vertebral", "vertebral", 3, 110, 0.6, "freehand", 8, spacing_mm=2.5),
)
"""Two small, coarse cases that test the harness (not part of the cohort)."""

BY_NAME = {c.name: c for c in (*COHORT, *TINY)}


def select(names: str) -> list[CohortCase]:
    """Cases by comma-separated names; ``all``: the cohort, ``tiny``: the harness test pair."""
    if names == "all":
        return list(COHORT)
    if names == "tiny":
        return list(TINY)
    unknown = [n for n in names.split(",") if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in names.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--write", type=Path, required=True, help="folder for the YAML configs")
    ap.add_argument("--cases", default="all")
    args = ap.parse_args()
    args.write.mkdir(parents=True, exist_ok=True)
    for c in select(args.cases):
        path = args.write / f"{c.name}.yaml"
        path.write_text(yaml.safe_dump(c.config(), sort_keys=False))
        print(path)


if __name__ == "__main__":
    main()
