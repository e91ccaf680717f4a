"""What a re-irradiation plan adds to a case: the prior course's dose on the case grid, its
EQD2 per voxel, the implant's EQD2 model of every structure with an EQD2 limit, and the
physical prescription the optimizer aims at (docs/radiobiology.md).

The prior dose is read from its RT Dose (``dicom.prior_dose``) and resampled trilinearly at
every voxel centre of the case grid (``Case.prior_dose_gy``; NaN beyond the RT Dose). A
structure with a cumulative limit must lie wholly inside it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from .errors import SeedoptError
from .optimizer.base import HardLimit
from .radiobiology import ImplantEqd2, eqd2_fractionated

if TYPE_CHECKING:
    from .case import Case
    from .dicom.images import CaseImages
    from .plan_config import PlanSpec
    from .sources import Source


def phantom_frame_uid(case_name: str) -> str:
    """The frame of reference of a phantom case (one UID per case name): what an RT Dose
    written for the phantom, such as the built-in prior courses, carries."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["seedopt phantom frame", case_name]))


def with_prior_dose(spec: PlanSpec, case: Case, images: CaseImages | None) -> Case:
    """``case`` with the prior course's physical dose (Gy) at every voxel centre, when
    ``spec`` names one."""
    if spec.prior is None:
        return case
    from .dicom.prior_dose import read_prior_dose

    frame = images.study.frame_of_reference_uid if images is not None else None
    prior = read_prior_dose(spec.prior.dose, frame or phantom_frame_uid(case.name))
    g = case.grid
    lo = np.asarray(g.origin_mm) - 0.5 * np.asarray(g.spacing_mm)
    hi = lo + np.asarray(g.shape[::-1]) * np.asarray(g.spacing_mm)
    z, y, x = np.meshgrid(prior.z_mm, prior.y_mm, prior.x_mm, indexing="ij")
    inside = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])
    beyond = prior.gy[~inside]
    return dataclasses.replace(
        case,
        prior_dose_gy=prior.at(g.points_mm()).reshape(g.shape),
        prior_beyond_max_gy=float(np.nanmax(beyond)) if beyond.size else 0.0,
    )


def prior_eqd2_at(spec: PlanSpec, case: Case, structure: str) -> np.ndarray:
    """The prior course's EQD2 (Gy, recovery applied) at ``structure``'s voxels (mask order,
    the rows of its dose matrix), refusing a structure the prior dose does not cover."""
    assert spec.prior is not None and case.prior_dose_gy is not None
    mask = case.masks[structure] > 0
    d = case.prior_dose_gy[mask]
    outside = np.isnan(d)
    if outside.any():
        raise SeedoptError(
            f"{spec.prior.dose}: the prior dose does not cover {structure}: {outside.sum()} of "
            f"its {d.size} voxels ({100 * outside.mean():.1f} %) lie outside the RT Dose grid; "
            "a cumulative limit needs the prior dose over the whole structure"
        )
    ab = spec.radiobiology.build().alpha_beta(structure)
    return eqd2_fractionated(d, spec.prior.fractions, ab) * (1.0 - spec.prior.recovery)


def implant_model(spec: PlanSpec, structure: str, source: Source) -> ImplantEqd2:
    """The implant's EQD2 model of ``structure`` for the plan's source."""
    return spec.radiobiology.build().implant(structure, source.half_life_d)


def physical_prescription_gy(spec: PlanSpec, case: Case, source: Source) -> float:
    """The target D90 the optimizer aims at: the prescription, or the implant dose whose EQD2
    (alpha/beta of the target's GTV role, the target) is the prescription."""
    if spec.prescription_quantity == "physical":
        return float(spec.prescription_gy)
    return implant_model(spec, case.target, source).dose_for_eqd2(spec.prescription_gy)


def problem_eqd2(
    spec: PlanSpec, case: Case, source: Source, limits: list[HardLimit]
) -> tuple[dict[str, ImplantEqd2], dict[str, np.ndarray]]:
    """The problem's EQD2 models and prior EQD2 rows (``PlanProblem.implant_eqd2``,
    ``prior_eqd2``; host arrays) for ``limits``."""
    implant = {
        lim.structure: implant_model(spec, lim.structure, source)
        for lim in limits
        if lim.quantity != "physical"
    }
    prior = {
        lim.structure: prior_eqd2_at(spec, case, lim.structure)
        for lim in limits
        if lim.quantity == "eqd2_cumulative"
    }
    return implant, prior


def limited_volume(
    spec: PlanSpec, case: Case, source: Source, lim: HardLimit, dose_gy: np.ndarray
) -> np.ndarray:
    """The grid volume ``lim`` constrains from the implant dose ``dose_gy`` (Gy, grid shape):
    the dose itself, its EQD2, or the prior's EQD2 plus its EQD2, at ``lim``'s structure's
    voxels (0 elsewhere)."""
    if lim.quantity == "physical":
        return dose_gy
    mask = case.masks[lim.structure] > 0
    out = np.zeros(case.grid.shape, dtype=np.float64)
    out[mask] = implant_model(spec, lim.structure, source).eqd2(dose_gy[mask])
    if lim.quantity == "eqd2_cumulative":
        out[mask] += prior_eqd2_at(spec, case, lim.structure)
    return out


def outside_eqd2_bound_gy(
    spec: PlanSpec, case: Case, source: Source, lim: HardLimit, implant_bound_gy: float
) -> float:
    """A bound on ``lim``'s EQD2 beyond the case grid: the implant's EQD2 at its physical dose
    bound there, plus (cumulative) the EQD2 of the prior RT Dose's highest dose beyond the
    case grid, the prior taken as 0 beyond its own grid (a planning system's dose grid holds
    all its dose)."""
    bound = implant_model(spec, lim.structure, source).eqd2(implant_bound_gy)
    if lim.quantity == "eqd2_cumulative":
        assert spec.prior is not None and case.prior_beyond_max_gy is not None
        ab = spec.radiobiology.build().alpha_beta(lim.structure)
        top = case.prior_beyond_max_gy  # found when the prior was read (with_prior_dose)
        bound += float(eqd2_fractionated(top, spec.prior.fractions, ab)) * (
            1.0 - spec.prior.recovery
        )
    return float(bound)


def cumulative_eqd2_volume(
    spec: PlanSpec, case: Case, source: Source, dose_gy: np.ndarray
) -> np.ndarray | None:
    """The cumulative EQD2 (Gy) at every voxel of the grid: the prior's and the implant's,
    each voxel with the parameters of the last structure named in ``radiobiology`` that holds
    it (the defaults elsewhere). None when there is no prior or it does not cover the grid."""
    if spec.prior is None or case.prior_dose_gy is None or np.isnan(case.prior_dose_gy).any():
        return None
    bio = spec.radiobiology.build()
    owner = np.full(case.grid.shape, "default", dtype=object)
    for name in spec.radiobiology.alpha_beta_gy:
        if name != "default" and name in case.masks:
            owner[case.masks[name] > 0] = name
    out = np.empty(case.grid.shape, dtype=np.float64)
    for name in {str(v) for v in np.unique(owner)}:
        at = owner == name
        prior = eqd2_fractionated(
            case.prior_dose_gy[at], spec.prior.fractions, bio.alpha_beta(name)
        )
        implant = bio.implant(name, source.half_life_d).eqd2(dose_gy[at])
        out[at] = prior * (1.0 - spec.prior.recovery) + implant
    return out


def field_dose_gy(points_mm: np.ndarray, lo_mm, hi_mm, dose_gy: float, penumbra_mm: float):
    """An idealised external-beam dose (Gy) at ``points_mm`` ((n, 3) x, y, z): ``dose_gy``
    inside the box [lo, hi] (mm), falling off across each face as an error function of width
    ``penumbra_mm`` (the 50 % isodose on the face). For the built-in prior courses."""
    from scipy.special import erf

    p = np.asarray(points_mm, dtype=np.float64)
    s = penumbra_mm / np.sqrt(2.0)
    inside = np.ones(len(p))
    for axis in range(3):
        lo, hi = float(lo_mm[axis]), float(hi_mm[axis])
        inside *= 0.25 * (1 + erf((p[:, axis] - lo) / s)) * (1 + erf((hi - p[:, axis]) / s))
    return dose_gy * inside
