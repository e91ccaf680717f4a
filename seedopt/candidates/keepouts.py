"""What a needle path keeps clear of from skin entry to tip: the nogo structures (on the dose
grid) and, for cases with a CT, bone and air inside the body (on the CT's own voxels).

A CT voxel is a box: a path clears bone by ``margin_mm`` when no point within ``margin_mm``
of the path falls in a bone voxel. The check asks that every bone voxel centre lie at least
``margin_mm`` plus half a CT voxel's diagonal from the path, which is sufficient (a point in
a voxel is within half the diagonal of its centre) and errs on the safe side by at most that
half diagonal (1.7 mm for 1 x 1 x 3 mm voxels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..case import Case
from ..errors import SeedoptError
from .config import CT_KEEPOUT_NEEDS_CT, SeedSettings
from .drops import Drop
from .seeds import MaskDistance


@dataclass(frozen=True)
class KeepOut:
    """A region paths keep ``clearance_mm`` from (centre distances), and the drop reason of
    a path that comes closer."""

    distance: MaskDistance
    clearance_mm: float
    reason: Drop


def nogo_keepout(case: Case, spec: SeedSettings) -> KeepOut | None:
    """The union of the case's nogo structures, ``nogo_margin_mm`` away (None: it has none)."""
    if not case.nogo:
        return None
    union = np.logical_or.reduce([case.masks[n] for n in case.nogo])
    return KeepOut(MaskDistance(union, case.grid), spec.nogo_margin_mm, Drop.NEAR_NOGO)


def ct_keepouts(case: Case, spec: SeedSettings) -> list[KeepOut]:
    """Bone and air inside the body on the case's CT, ``ct_keepout.margin_mm`` away from any
    of their voxels (none without a CT).

    Raises
    ------
    SeedoptError
        When the config sets ``ct_keepout`` but the case has no CT to read it from.
    """
    ct = case.ct
    if ct is None:
        if "ct_keepout" in spec.model_fields_set:
            raise SeedoptError(f"approach.{CT_KEEPOUT_NEEDS_CT}")
        return []
    rule = spec.ct_keepout
    clearance = rule.margin_mm + ct.half_diagonal_mm
    return [
        KeepOut(MaskDistance(ct.bone(rule.bone_above_hu), ct.grid), clearance, Drop.NEAR_BONE),
        KeepOut(MaskDistance(ct.air_in_body(rule.air_below_hu), ct.grid), clearance, Drop.NEAR_AIR),
    ]


def path_keepouts(case: Case, spec: SeedSettings) -> list[KeepOut]:
    """Every region the paths of ``case`` keep clear of, in the order the drops count them."""
    nogo = nogo_keepout(case, spec)
    return ([nogo] if nogo is not None else []) + ct_keepouts(case, spec)
