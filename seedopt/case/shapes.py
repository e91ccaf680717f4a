"""Geometric primitives that build phantom structures on a grid (all sizes in mm)."""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config_types import Length_mm, NonNegativeCount, Point_mm, Real
from ..errors import SeedoptError
from .ct_volume import CTVolume
from .grid import Grid

Vec3 = Point_mm
Axis = Literal["x", "y", "z"]
_AXIS = {"x": 0, "y": 1, "z": 2}


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    minus: list[str] = Field(default_factory=list, description="structures cut out of this one")
    within: str | None = Field(default=None, description="structure this one is clipped to")


class Ellipsoid(_Shape):
    shape: Literal["ellipsoid"]
    center_mm: Vec3
    radii_mm: tuple[Length_mm, Length_mm, Length_mm]

    def mask(self, grid: Grid) -> np.ndarray:
        x, y, z = grid.coordinates_mm()
        (cx, cy, cz), (rx, ry, rz) = self.center_mm, self.radii_mm
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0


class Cylinder(_Shape):
    """An elliptic cylinder along a grid axis; ``radii_mm`` in the other two axes' order."""

    shape: Literal["cylinder"]
    center_mm: Vec3
    radii_mm: tuple[Length_mm, Length_mm]
    axis: Axis = "z"
    half_length_mm: Length_mm | None = None

    def mask(self, grid: Grid) -> np.ndarray:
        coords = grid.coordinates_mm()
        a = _AXIS[self.axis]
        across = [k for k in range(3) if k != a]
        inside = (
            sum(
                ((coords[k] - self.center_mm[k]) / r) ** 2
                for k, r in zip(across, self.radii_mm, strict=True)
            )
            <= 1.0
        )
        if self.half_length_mm is not None:
            inside = inside & (np.abs(coords[a] - self.center_mm[a]) <= self.half_length_mm)
        return np.broadcast_to(inside, grid.shape)


class Box(_Shape):
    shape: Literal["box"]
    min_mm: Vec3
    max_mm: Vec3

    def mask(self, grid: Grid) -> np.ndarray:
        x, y, z = grid.coordinates_mm()
        (x0, y0, z0), (x1, y1, z1) = self.min_mm, self.max_mm
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1)


class ImageSource(Protocol):
    """Where image-based structures come from (``seedopt.dicom.images.CaseImages``)."""

    def roi_mask(self, selector: str, grid: Grid, key: str = ...) -> np.ndarray: ...

    def body_mask(self, grid: Grid, threshold_hu: float, key: str = ...) -> np.ndarray: ...

    def ct_volume(self, grid: Grid) -> CTVolume | None: ...


class Contours(_Shape):
    """A structure of the case's RT Structure Set (``dicom.rtstruct``), rasterized; the ROI is
    named by ``roi`` or, where two ROIs share a name, by ``roi_number``."""

    shape: Literal["contours"]
    roi: str | None = Field(None, description="ROI name in the structure set (case-insensitive)")
    roi_number: NonNegativeCount | None = Field(None, description="ROI Number in the structure set")

    @model_validator(mode="after")
    def _one_reference(self) -> Contours:
        if (self.roi is None) == (self.roi_number is None):
            raise ValueError("name the ROI once: by roi (its name) or by roi_number")
        return self

    @property
    def selector(self) -> str:
        """The ROI as ``ImageSource.roi_mask`` selects it: its name, or ``#N``."""
        return f"#{self.roi_number}" if self.roi_number is not None else str(self.roi)

    @property
    def selector_key(self) -> str:
        return "roi_number" if self.roi_number is not None else "roi"


class CTBody(_Shape):
    """The body derived from the case's CT: HU threshold, largest component, holes filled."""

    shape: Literal["ct_body"]
    threshold_hu: Real = Field(-300.0, description="voxels above this are body, HU")


Shape = Ellipsoid | Cylinder | Box | Contours | CTBody
ShapeSpec = Annotated[Shape, Field(discriminator="shape")]


def build_masks(
    shapes: dict[str, Shape], grid: Grid, images: ImageSource | None = None
) -> dict[str, np.ndarray]:
    """Masks of every shape, with ``minus`` and ``within`` applied (in the order given).

    Image-based shapes (``contours``, ``ct_body``) read ``images``.
    """
    raw = {}
    for name, s in shapes.items():
        if isinstance(s, (Contours, CTBody)):
            if images is None:
                raise SeedoptError(f"structures.{name}: a {s.shape} structure needs dicom images")
            m = (
                images.roi_mask(s.selector, grid, key=f"structures.{name}.{s.selector_key}")
                if isinstance(s, Contours)
                else images.body_mask(grid, s.threshold_hu, key=f"structures.{name}")
            )
        else:
            m = s.mask(grid)
        raw[name] = np.ascontiguousarray(m, dtype=bool)
    out: dict[str, np.ndarray] = {}
    for name, s in shapes.items():
        m = raw[name].copy()
        for other in s.minus:
            m &= ~raw[other]
        if s.within is not None:
            m &= raw[s.within]
        out[name] = m
    return out
