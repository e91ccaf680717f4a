"""The approach section of a case config (template or freehand), validated into frozen objects.

Unknown keys and bad values are errors that name the key (``approach.hole_pitch_mm``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..case.ct_volume import MAX_MARGIN_MM
from ..case.shapes import Vec3
from ..config_types import Count, Length_mm, NonNegativeLength_mm, PositiveReal, Real
from ..errors import SeedoptError
from ..validation import NESTED, nested_error


def _unit(v: Vec3) -> Vec3:
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError("must be a non-zero vector")
    return tuple(float(c) / norm for c in v)  # type: ignore[return-value]


CT_KEEPOUT_NEEDS_CT = "ct_keepout: the case has no CT (dicom.ct) to find bone and air in"


class CTKeepout(BaseModel):
    """Bone and air inside the body that needle paths keep clear of, read off the case's CT.

    The defaults sit between the Hounsfield numbers of the tissues a needle may cross and
    those it must not: soft tissue +20 to +80 HU, blood +45 to +65, fat -50 to -120 HU;
    cancellous bone about +300, cortical bone +700 to +3000; aerated lung -500 to -910, air
    -1000 (Buzug, *Computed Tomography*, Springer 2008, p. 475; Prokop, *Spiral and
    Multislice CT of the Body*, Thieme 2003). Bone is above 300 HU, so cortical and most
    cancellous bone count and no soft tissue does (iodinated contrast above 300 HU counts as
    bone: needles avoid enhanced vessels too); air is below -400 HU inside the CT-derived body
    (lung, airways, enclosed gas), well below fat and above aerated lung.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bone_above_hu: Real = Field(
        default=300.0, ge=150.0, le=3000.0, description="voxels above this are bone, HU"
    )
    air_below_hu: Real = Field(
        default=-400.0, ge=-1000.0, le=-150.0, description="body voxels below this are air, HU"
    )
    margin_mm: NonNegativeLength_mm = Field(
        default=3.0,
        le=MAX_MARGIN_MM,
        description="least distance of a needle path from a bone or air voxel, mm",
    )


class EntryWindow(BaseModel):
    """A region of the skin freehand needles enter through: the body surface within
    ``radius_mm`` of ``center_mm``; needles fan out within ``max_angle_deg`` of ``normal``
    (into the patient; default: the skin's inward normal there, fitted to the surface)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    center_mm: Vec3 = Field(description="a point on the skin, mm")
    radius_mm: Length_mm = Field(description="entries lie within this of center_mm, mm")
    normal: Vec3 | None = Field(None, description="the window's axis, into the patient")

    @field_validator("normal")
    @classmethod
    def _normalised(cls, v: Vec3 | None) -> Vec3 | None:
        return None if v is None else _unit(v)


class SeedSettings(BaseModel):
    """Where candidate seeds may lie along a needle, and where needles may not go (mm)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    seed_pitch_mm: Length_mm = Field(5.0, description="spacing of seed positions, mm")
    target_margin_mm: NonNegativeLength_mm = Field(
        0.0, description="seeds lie inside the target expanded by this, mm"
    )
    skin_keepout_mm: NonNegativeLength_mm = Field(
        5.0, description="least distance of a seed centre from outside the body, mm"
    )
    cord_keepout_mm: NonNegativeLength_mm = Field(
        10.0, description="least distance of a seed centre from the cord, mm"
    )
    nogo_margin_mm: NonNegativeLength_mm = Field(
        3.0, description="least distance of a needle path from every nogo structure, mm"
    )
    max_depth_mm: Length_mm = Field(200.0, description="longest insertion, skin entry to tip, mm")
    ct_keepout: CTKeepout = Field(
        CTKeepout(), description="bone and air the paths avoid (cases with a CT)"
    )


class TemplateSpec(SeedSettings):
    """A coplanar template: parallel needles through holes on a square lattice."""

    kind: Literal["template"]
    plane_point_mm: Vec3 = Field(description="a point of the template plane, outside the body")
    direction: Vec3 = Field(description="needle direction, into the patient (normalised)")
    hole_pitch_mm: Length_mm = Field(5.0, description="hole spacing, mm")
    size_mm: Length_mm = Field(100.0, description="width of the square hole lattice, mm")

    @field_validator("direction")
    @classmethod
    def _normalised(cls, v: Vec3) -> Vec3:
        return _unit(v)

    @field_validator("size_mm")
    @classmethod
    def _holds_a_hole(cls, v: float, info: ValidationInfo) -> float:
        pitch = info.data.get("hole_pitch_mm")
        if pitch is not None and v < pitch:
            raise ValueError(f"must be at least hole_pitch_mm ({pitch:g})")
        return v


class FreehandSpec(SeedSettings):
    """Freehand needles: skin entries over the target and a fan of directions."""

    kind: Literal["freehand"]
    reference_direction: Vec3 | None = Field(
        None, description="central needle direction, into the patient (or entry_window)"
    )
    entry_window: EntryWindow | None = Field(
        None, description="the skin region needles enter through (or reference_direction)"
    )
    max_angle_deg: Real = Field(20.0, ge=0.0, lt=90.0, description="widest tilt, degrees")
    entry_spacing_mm: Length_mm = Field(5.0, description="spacing of skin entries, mm")
    angle_step_deg: PositiveReal = Field(10.0, description="step of the direction fan, degrees")
    min_needle_distance_mm: NonNegativeLength_mm = Field(
        5.0, description="least distance between two needles inside the target, mm"
    )
    max_needles_considered: Count = Field(400, description="most needles kept")

    @field_validator("reference_direction")
    @classmethod
    def _normalised(cls, v: Vec3 | None) -> Vec3 | None:
        return None if v is None else _unit(v)

    @model_validator(mode="after")
    def _one_axis(self) -> FreehandSpec:
        if (self.reference_direction is None) == (self.entry_window is None):
            raise nested_error(
                "reference_direction",
                "give reference_direction or entry_window (whose normal the needles fan "
                "around), one of them",
            )
        return self


ApproachSpec = Annotated[TemplateSpec | FreehandSpec, Field(discriminator="kind")]

_ADAPTER: TypeAdapter[TemplateSpec | FreehandSpec] = TypeAdapter(ApproachSpec)


def load_approach_spec(
    data: dict[str, Any], source: str = "approach"
) -> TemplateSpec | FreehandSpec:
    """Validate an approach section given as a mapping; errors name the bad key.

    Raises
    ------
    SeedoptError
        One line, ``approach.<key>: <what is wrong>``.
    """
    if not isinstance(data, dict):
        raise SeedoptError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        if err["type"].startswith("union_tag"):
            key, msg = "kind", "must be 'template' or 'freehand'"
        else:
            key = ".".join(str(p) for p in loc[1:])  # loc[0] is the kind's tag
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        if err["type"] == NESTED:
            key, msg = err["ctx"]["key"], err["ctx"]["message"]
        raise SeedoptError(f"{source}.{key}: {msg}") from None
