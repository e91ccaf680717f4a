"""The case section of a YAML config, validated into frozen objects.

Unknown keys and bad values are errors that name the key (``structures.GTV.radii_mm``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..config_types import Length_mm, NonNegativeLength_mm, Point_mm
from ..errors import SeedoptError
from ..safe_yaml import read_yaml_file
from ..validation import closest, format_validation_error
from .shapes import Contours, CTBody, ShapeSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Spacing_mm = Annotated[Length_mm, Field(ge=0.01)]
"""A voxel size: 0.01 mm or more."""


class GridSpec(_Strict):
    spacing_mm: Spacing_mm | tuple[Spacing_mm, Spacing_mm, Spacing_mm] = Field(
        2.0, description="voxel size (default 2 mm; 1 mm available), or x, y, z sizes"
    )
    min_mm: Point_mm = Field(description="x, y, z of the first voxel centre, mm")
    max_mm: Point_mm = Field(description="x, y, z the voxel centres reach, mm")

    @model_validator(mode="after")
    def _ordered(self) -> GridSpec:
        if any(hi <= lo for lo, hi in zip(self.min_mm, self.max_mm, strict=True)):
            raise ValueError("max_mm must exceed min_mm on every axis")
        return self


class SkinSpec(_Strict):
    """The skin: a named structure, or derived as the outer shell of the body."""

    structure: str | None = None
    derive_thickness_mm: Length_mm = 3.0


class RolesSpec(_Strict):
    target: str = Field(description="the GTV (or CTV) structure's name")
    body: str
    skin: SkinSpec = SkinSpec()
    cord: str | None = Field(None, description="spinal cord, if the site has one")
    oars: list[str] = Field(default_factory=list, description="other organs at risk")
    nogo: list[str] = Field(default_factory=list, description="structures needles must avoid")


class DicomSpec(_Strict):
    """DICOM images of a case; relative paths are relative to the config file's folder."""

    rtstruct: Path = Field(description="the RT Structure Set file")
    ct: Path | None = Field(None, description="the folder of CT slices (None: water, no CT)")
    slice_thickness_mm: Length_mm | None = Field(
        None, description="slab each contour stands for (default: the CT's slice spacing)"
    )

    @field_validator("rtstruct", "ct")
    @classmethod
    def _relative_to_config(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        return Path(base) / v if v is not None and base is not None and not v.is_absolute() else v


def fold_name(name: Any, known: Any) -> Any:
    """``name`` spelled as in ``known`` when it matches one case-insensitively (else as is)."""
    if not isinstance(name, str) or name in known:
        return name
    folded = {str(k).casefold(): k for k in known}
    return folded.get(name.casefold(), name)


class CaseSpec(_Strict):
    name: str
    description: str = ""
    grid: GridSpec
    structures: dict[str, ShapeSpec]
    roles: RolesSpec
    target_margin_mm: NonNegativeLength_mm = Field(0.0, description="GTV -> CTV/PTV expansion, mm")
    dicom: DicomSpec | None = Field(None, description="DICOM images the structures come from")

    @model_validator(mode="before")
    @classmethod
    def _fold_role_names(cls, data: Any) -> Any:
        """Roles name structures case-insensitively."""
        if not (isinstance(data, dict) and isinstance(data.get("structures"), dict)):
            return data
        roles, known = data.get("roles"), data["structures"]
        if not isinstance(roles, dict):
            return data
        roles = dict(roles)
        for key in ("target", "body", "cord"):
            if key in roles:
                roles[key] = fold_name(roles[key], known)
        for key in ("oars", "nogo"):
            if isinstance(roles.get(key), list):
                roles[key] = [fold_name(n, known) for n in roles[key]]
        if isinstance(roles.get("skin"), dict) and "structure" in roles["skin"]:
            roles["skin"] = {
                **roles["skin"],
                "structure": fold_name(roles["skin"]["structure"], known),
            }
        return {**data, "roles": roles}

    @model_validator(mode="after")
    def _names_exist(self) -> CaseSpec:
        for name, s in self.structures.items():
            if isinstance(s, (Contours, CTBody)) and self.dicom is None:
                raise ValueError(f"structures.{name}: a {s.shape} structure needs a dicom section")
            if isinstance(s, CTBody) and self.dicom is not None and self.dicom.ct is None:
                raise ValueError(f"structures.{name}: ct_body needs dicom.ct")
        known = set(self.structures)
        r = self.roles
        named = {
            "roles.target": [r.target],
            "roles.body": [r.body],
            "roles.oars": r.oars,
            "roles.nogo": r.nogo,
            "roles.cord": [r.cord] if r.cord else [],
            "roles.skin.structure": [r.skin.structure] if r.skin.structure else [],
        }
        for name, s in self.structures.items():
            named[f"structures.{name}.minus"] = s.minus
            named[f"structures.{name}.within"] = [s.within] if s.within else []
        for key, names in named.items():
            for n in names:
                if n not in known:
                    hint = _closest(n, known)
                    raise ValueError(f"{key}: no structure named {n!r}{hint}")
        return self


def _closest(name: str, known: set[str]) -> str:
    return closest(name, known, "structures")


def read_yaml(path: Path, what: str = "config") -> dict[str, Any]:
    """A YAML file's top-level mapping, or a one-line error (``safe_yaml``: UTF-8, no repeated
    keys, no alias bombs)."""
    data = read_yaml_file(path, what)
    if not isinstance(data, dict):
        raise SeedoptError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def load_case_spec(data: dict[str, Any] | str | Path, source: str | None = None) -> CaseSpec:
    """Validate a case config given as a dict or a YAML file's path (plan keys are ignored)."""
    if isinstance(data, (str, Path)):
        source = source or str(data)
        data = read_yaml(Path(data))
    source = source or "case config"
    fields = set(CaseSpec.model_fields)
    plan_keys = {
        "source",
        "prescription_gy",
        "prescription_quantity",
        "prior",
        "radiobiology",
        "approach",
        "goals",
        "optimizer",
        "dose",
    }
    case_part = {k: v for k, v in data.items() if k in fields or k not in plan_keys}
    context = {"base_dir": Path(source).parent} if Path(source).exists() else None
    try:
        return CaseSpec.model_validate(case_part, context=context)
    except ValidationError as exc:
        raise SeedoptError(format_validation_error(exc, source, CaseSpec)) from None
