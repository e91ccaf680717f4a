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


class TemplateOptions(BaseModel):
    """The template's geometry.

    The guide channel's bore is ``needle_diameter_mm + clearance_mm`` wide: 18G (1.27 mm)
    plus 0.2 mm by default, the fit that resin (SLA) prints of 1-2 mm holes need to pass the
    needle without play beyond a tenth of a millimetre on each side.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    thickness_mm: Coordinate_mm = Field(5.0, ge=2.0, le=20.0, description="plate thickness")
    gap_mm: Coordinate_mm = Field(
        0.5, ge=0.1, le=5.0, description="clearance of the plate's underside from the skin"
    )
    margin_mm: Coordinate_mm = Field(
        12.0, ge=5.0, le=60.0, description="plate beyond the convex hull of the needle entries"
    )
    needle_diameter_mm: Coordinate_mm = Field(
        NEEDLE_18G_MM, ge=0.3, le=3.0, description="outer diameter of the needle (18G)"
    )
    clearance_mm: Coordinate_mm = Field(
        0.2, ge=0.0, le=1.0, description="channel diameter beyond the needle's"
    )
    sleeve_mm: Coordinate_mm = Field(
        10.0, ge=0.0, le=50.0, description="guide sleeve above the plate's top, along the needle"
    )
    sleeve_wall_mm: Coordinate_mm = Field(1.2, ge=0.6, le=5.0, description="sleeve wall")
    min_wall_mm: Coordinate_mm = Field(
        0.8, ge=0.3, le=5.0, description="least material between two holes, or a hole and the edge"
    )
    fiducial_diameter_mm: Coordinate_mm = Field(
        3.0, ge=1.0, le=10.0, description="diameter of the three registration holes"
    )
    max_tilt_deg: Real = Field(
        50.0, ge=0.0, le=70.0, description="widest angle of a needle from the plate's normal"
    )
    resolution_mm: Coordinate_mm = Field(
        0.4, ge=0.2, le=1.0, description="voxel of the plate's construction and marching cubes"
    )

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
