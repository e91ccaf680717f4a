"""plan.json's needles read back for the operating room, validated: each needle's entry and
tip (mm), its template hole (column, row) or none, and its seeds (mm)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ..config_types import Point_mm
from ..errors import SeedoptError


class PlannedNeedle(BaseModel):
    """One needle of plan.json (patient coordinates, mm)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    entry_mm: Point_mm
    tip_mm: Point_mm
    template_hole: tuple[int, int] | None = None
    seeds_mm: list[Point_mm] = []

    @property
    def entry(self) -> np.ndarray:
        return np.array(self.entry_mm)

    @property
    def tip(self) -> np.ndarray:
        return np.array(self.tip_mm)

    @property
    def seeds(self) -> np.ndarray:
        """(s, 3) seed centres, mm."""
        return np.array(self.seeds_mm, float).reshape(-1, 3)


_NEEDLES: TypeAdapter[list[PlannedNeedle]] = TypeAdapter(list[PlannedNeedle])


def planned_needles(doc: dict[str, Any]) -> list[PlannedNeedle]:
    """The needles of a plan.json document; a bad entry is refused in one line naming it
    (``plan.json: needles.3.tip_mm: ...``)."""
    try:
        return _NEEDLES.validate_python(doc["needles"])
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SeedoptError(f"plan.json: needles.{where}: {err['msg']}") from None
