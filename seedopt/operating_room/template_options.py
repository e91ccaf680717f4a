"""The parameters of a patient-specific needle template, validated (mm and degrees).

Out-of-range values are refused in one line naming the key (``template.gap_mm: ...``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config_types import Coordinate_mm, Real
from ..errors import SeedoptError

NEEDLE_18G_MM = 1.27
"""Outer diameter of an 18-gauge needle, mm (ISO 9626: 1.245-1.270 mm)."""


def _between(default: float, lo: float, hi: float, what: str) -> Any:
    """A field of ``default`` within [lo, hi], described as ``what``."""
    return Field(default, ge=lo, le=hi, description=what)


class TemplateOptions(BaseModel):
    """The template's geometry.

    The guide channel's bore is ``needle_diameter_mm + clearance_mm`` wide: 18G (1.27 mm)
    plus 0.2 mm by default, the fit that resin (SLA) prints of 1-2 mm holes need to pass the
    needle without play beyond a tenth of a millimetre on each side.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    thickness_mm: Coordinate_mm = _between(5.0, 2.0, 20.0, "plate thickness")
    gap_mm: Coordinate_mm = _between(0.5, 0.1, 5.0, "clearance of the underside from the skin")
    margin_mm: Coordinate_mm = _between(12.0, 5.0, 60.0, "plate beyond the entries' convex hull")
    needle_diameter_mm: Coordinate_mm = _between(NEEDLE_18G_MM, 0.3, 3.0, "needle's outer diameter")
    clearance_mm: Coordinate_mm = _between(0.2, 0.0, 1.0, "channel diameter beyond the needle's")
    sleeve_mm: Coordinate_mm = _between(10.0, 0.0, 50.0, "guide sleeve above the plate's top")
    sleeve_wall_mm: Coordinate_mm = _between(1.2, 0.6, 5.0, "sleeve wall")
    min_wall_mm: Coordinate_mm = _between(0.8, 0.3, 5.0, "least material between two holes")
    fiducial_diameter_mm: Coordinate_mm = _between(3.0, 1.0, 10.0, "registration holes' diameter")
    max_tilt_deg: Real = _between(
        50.0, 0.0, 70.0, "widest angle of a needle from the plate's normal"
    )
    resolution_mm: Coordinate_mm = _between(0.4, 0.2, 1.0, "voxel of the plate's construction")

    @property
    def channel_radius_mm(self) -> float:
        """Radius of a guide channel's bore, mm."""
        return (self.needle_diameter_mm + self.clearance_mm) / 2.0


def template_options(values: dict[str, Any]) -> TemplateOptions:
    """Validated options from ``values`` (keys as the fields; absent keys take defaults).

    Raises
    ------
    SeedoptError
        One line, ``template.<key>: <what is wrong>``.
    """
    try:
        return TemplateOptions.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise SeedoptError(f"template.{key}: {msg.removeprefix('Value error, ')}") from None
