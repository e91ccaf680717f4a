"""DICOM RT in and out: CT and RT Structure Set import (``ct``, ``rtstruct``, ``images``),
case configs from DICOM (``init_case``), RT Plan and RT Dose export and import (``rtplan``,
``rtdose``). Every file is read through ``files.read_dataset``: checked complete
(``integrity``), every value decoded, numbers checked by name. See docs/dicom.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .ct import CTSeries, load_ct
from .images import CaseImages, load_images
from .rtdose import read_rtdose, write_rtdose
from .rtplan import ImplantSeeds, read_rtplan_seeds, write_rtplan
from .rtstruct import StructureSet, load_rtstruct, rasterize

if TYPE_CHECKING:
    from ..planning import Plan

__all__ = [
    "CTSeries",
    "CaseImages",
    "ImplantSeeds",
    "StructureSet",
    "load_ct",
    "load_images",
    "load_rtstruct",
    "rasterize",
    "read_rtdose",
    "read_rtplan_seeds",
    "write_dicom_outputs",
    "write_rtdose",
    "write_rtplan",
]


def write_dicom_outputs(plan: Plan, out: Path) -> list[Path]:
    """rtplan.dcm and rtdose.dcm of a plan whose case came from DICOM, on the structure set's
    frame of reference and study; the RT Dose references the RT Plan, which references the
    structure set."""
    from ..case.shapes import Contours

    d = plan.spec.dicom
    if d is None:
        raise ValueError("the plan's case has no dicom section")
    if plan.images is None:
        raise ValueError("the plan's case came from DICOM but carries no images")
    ss = plan.images.structure_set
    target = plan.spec.structures[plan.spec.roles.target]
    number = ss.roi(target.selector).number if isinstance(target, Contours) else None
    rtplan = write_rtplan(plan, ss, out / "rtplan.dcm", number)
    write_rtdose(plan.dose_gy, plan.case.grid, ss.study, rtplan, out / "rtdose.dcm")
    written = [out / "rtplan.dcm", out / "rtdose.dcm"]
    if plan.spec.prior is not None:
        from ..notes import note
        from ..reirradiation import cumulative_eqd2_volume
        from .files import save
        from .rtdose import build_rtdose

        eqd2 = cumulative_eqd2_volume(plan.spec, plan.case, plan.source, plan.dose_gy)
        if eqd2 is None:
            note(
                "rtdose_eqd2.dcm not written: the prior dose does not cover the whole dose "
                "grid, so the cumulative EQD2 is not known at every voxel"
            )
        else:
            comment = "cumulative EQD2 (prior + implant), Gy; docs/radiobiology"
            save(
                build_rtdose(eqd2, plan.case.grid, ss.study, rtplan, effective=comment),
                out / "rtdose_eqd2.dcm",
            )
            written.append(out / "rtdose_eqd2.dcm")
    return written
