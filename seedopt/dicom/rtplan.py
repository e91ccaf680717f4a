"""RT Plan for permanent LDR seed implants: export of a seedopt plan, and the seeds of any
brachytherapy RT Plan (seedopt's, or a commercial system's with one setup or channel per seed).

Layout written: one application setup; one channel per needle, its control points from the
needle tip outwards: one at the tip (weight 0), two per seed at the seed's centre with the
cumulative time weight rising by one between them, one at the skin entry (so a needle with n
seeds has 2n + 2 control points and final weight n). Seeds lie along the channel (tip to entry).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from ..errors import SeedoptError
from ..notes import note
from .files import (
    RT_PLAN_STORAGE,
    Study,
    conformant,
    integer,
    new_dataset,
    number,
    numbers,
    plain_text,
    read_dataset,
    require_modality,
    save,
    sequence,
)

if TYPE_CHECKING:
    from ..planning import Plan
    from .rtstruct import StructureSet

SAME_POSITION_MM = 1e-3


@dataclass(frozen=True)
class ImplantSeeds:
    """Seeds of an implant.

    Attributes
    ----------
    positions_mm : (n, 3) seed centres, x, y, z, mm.
    axes : (n, 3) unit long axes (+z where the file does not tell).
    channel : (n,) which needle (channel) each seed is on, numbered from 0.
    strength_u : air-kerma strength per seed at the reference date, U (None: not given).
    model_id : the source model's ID as written (None: not given).
    axis_known : (n,) whether the file gives the direction of each seed's channel (its
        distinct positions); None: every axis is known.
    """

    positions_mm: np.ndarray
    axes: np.ndarray
    channel: np.ndarray
    strength_u: float | None = None
    model_id: str | None = None
    axis_known: np.ndarray | None = None

    @property
    def n_needles(self) -> int:
        return len(np.unique(self.channel))


def _seq(*items: Dataset) -> Sequence:
    return Sequence(list(items))


def _source_item(plan: Plan, date: str, time: str) -> Dataset:
    src = plan.source
    item = Dataset()
    item.SourceNumber = 1
    item.SourceType = "CYLINDER"
    words = src.model.description.split()
    item.SourceManufacturer = plain_text(words[0], 64) if words else ""
    item.SourceModelID = src.model.model_id
    item.SourceDescription = plain_text(src.model.description, 64)
    item.ActiveSourceDiameter = 0.8
    item.ActiveSourceLength = round(src.model.active_length_cm * 10.0, 3)
    item.SourceIsotopeName = "I-125"
    item.SourceIsotopeHalfLife = round(src.half_life_d, 3)
    item.SourceStrengthUnits = "AIR_KERMA_RATE"
    item.ReferenceAirKermaRate = round(src.air_kerma_strength_u, 6)  # uGy h^-1 at 1 m = U
    item.SourceStrength = item.ReferenceAirKermaRate  # in SourceStrengthUnits: U
    item.SourceStrengthReferenceDate = date
    item.SourceStrengthReferenceTime = time
    return item


def _control_point(
    index: int, from_tip_mm: float, position_mm: np.ndarray, weight: float
) -> Dataset:
    cp = Dataset()
    cp.ControlPointIndex = index
    cp.ControlPointRelativePosition = round(float(from_tip_mm), 3)
    cp.ControlPoint3DPosition = [f"{float(v):.6f}" for v in position_mm]  # DS: 16 characters
    cp.CumulativeTimeWeight = float(weight)
    return cp


def _channel_item(
    channel_number: int,
    seeds_mm: np.ndarray,
    tip_mm: np.ndarray,
    entry_mm: np.ndarray,
    mean_life_s: float,
) -> Dataset:
    """One needle: a control point at the tip, two per seed (tip outwards), one at the entry."""
    from_tip = np.linalg.norm(seeds_mm - tip_mm, axis=1)
    order = np.argsort(from_tip, kind="stable")
    length = float(np.linalg.norm(entry_mm - tip_mm))
    ch = Dataset()
    ch.ChannelNumber = channel_number
    ch.ChannelLength = round(length, 2)
    ch.ChannelTotalTime = round(mean_life_s, 1)
    ch.SourceMovementType = "FIXED"
    ch.ReferencedSourceNumber = 1
    ch.NumberOfControlPoints = 2 * len(order) + 2
    ch.SourceApplicatorNumber = channel_number
    ch.SourceApplicatorID = f"needle {channel_number}"
    ch.SourceApplicatorType = "RIGID"
    ch.SourceApplicatorLength = ch.ChannelLength
    ch.ReferencedROINumber = None  # type 2C: no applicator structure
    ch.TransferTubeNumber = None  # type 2: no transfer tube (permanent seeds)
    ch.FinalCumulativeTimeWeight = float(len(order))
    points = [_control_point(0, 0.0, tip_mm, 0)]
    for k, s in enumerate(order):
        for j in (0, 1):
            points.append(_control_point(len(points), from_tip[s], seeds_mm[s], k + j))
    points.append(_control_point(len(points), length, entry_mm, len(order)))
    ch.BrachyControlPointSequence = Sequence(points)
    return ch


def build_rtplan(plan: Plan, structure_set: StructureSet, target_roi_number: int | None) -> Dataset:
    """The RT Plan of ``plan`` (brachy, LDR, interstitial, I-125), referencing the structure
    set and on its frame of reference."""
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    study: Study = structure_set.study
    ds = new_dataset(RT_PLAN_STORAGE, "RTPLAN", study, f"seedopt {plan.result.method}")
    ds.RTPlanLabel = plain_text(plan.case.name, 16) or "seedopt"  # type 1
    ds.RTPlanName = plain_text(plan.case.name, 64)
    ds.RTPlanDate, ds.RTPlanTime = date, time
    ds.RTPlanGeometry = "PATIENT"
    ds.PlanIntent = "CURATIVE"
    ref = Dataset()
    source = structure_set.path.name
    for keyword, value in (
        ("ReferencedSOPClassUID", structure_set.sop_class_uid),
        ("ReferencedSOPInstanceUID", structure_set.sop_instance_uid),
    ):
        uid, why = conformant("UI", value, keyword.removeprefix("Referenced"), source)
        if why:
            note(f"{why} in the RT Plan's reference to the structure set")
        setattr(ref, keyword, uid)
    ds.ReferencedStructureSetSequence = _seq(ref)
    ds.ApprovalStatus = "UNAPPROVED"
    if target_roi_number is not None:
        dref = Dataset()
        dref.DoseReferenceNumber = 1
        dref.DoseReferenceUID = generate_uid()
        dref.DoseReferenceStructureType = "VOLUME"
        dref.ReferencedROINumber = target_roi_number
        dref.DoseReferenceDescription = "target D90"
        dref.DoseReferenceType = "TARGET"
        dref.TargetPrescriptionDose = float(plan.spec.prescription_gy)
        ds.DoseReferenceSequence = _seq(dref)
    ds.BrachyTreatmentTechnique = "INTERSTITIAL"
    ds.BrachyTreatmentType = "LDR"
    machine = Dataset()
    machine.TreatmentMachineName = "seed implant"
    machine.Manufacturer = "seedopt"
    ds.TreatmentMachineSequence = _seq(machine)
    ds.SourceSequence = _seq(_source_item(plan, date, time))
    mean_life_s = plan.source.mean_life_h * 3600.0
    setup = Dataset()
    setup.ApplicationSetupType = "FREE"
    setup.ApplicationSetupNumber = 1
    setup.ApplicationSetupName = "needles"
    setup.TotalReferenceAirKerma = round(
        len(plan.seeds_mm) * plan.source.air_kerma_strength_u * plan.source.mean_life_h, 3
    )  # uGy at 1 m: S_K (uGy m^2 h^-1) x mean life (h), summed over seeds
    channels = []
    for channel_number, k in enumerate(plan.used_needles(), start=1):
        on = plan.loaded & (plan.candidates.seed_needle == k)
        needle = plan.candidates.needles[k]
        channels.append(
            _channel_item(
                channel_number,
                plan.candidates.seeds_mm[on],
                needle.tip_mm,
                needle.entry_mm,
                mean_life_s,
            )
        )
    setup.ChannelSequence = Sequence(channels)
    ds.ApplicationSetupSequence = _seq(setup)
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = 1
    group.NumberOfBeams = 0
    group.NumberOfBrachyApplicationSetups = 1
    used = Dataset()
    used.ReferencedBrachyApplicationSetupNumber = 1
    group.ReferencedBrachyApplicationSetupSequence = _seq(used)
    ds.FractionGroupSequence = _seq(group)
    return ds


def write_rtplan(
    plan: Plan, structure_set: StructureSet, path: Path, target_roi_number: int | None
) -> Dataset:
    ds = build_rtplan(plan, structure_set, target_roi_number)
    save(ds, path)
    return ds


PERMANENT_TECHNIQUES = {"", "INTERSTITIAL", "PERMANENT"}
SEED_TREATMENT_TYPES = {"", "LDR", "MANUAL"}


@dataclass(frozen=True)
class _Source:
    number: int
    strength_u: float | None
    model_id: str | None


def _source_strength(src: Dataset, path: Path, where: str) -> float | None:
    """Air-kerma strength of a source item, U: ReferenceAirKermaRate, else SourceStrength in
    AIR_KERMA_RATE units (None: neither given)."""
    if src.get("ReferenceAirKermaRate") not in (None, ""):
        value = number(src, "ReferenceAirKermaRate", path, where)
    elif src.get("SourceStrength") not in (None, "") and (
        str(src.get("SourceStrengthUnits", "")) == "AIR_KERMA_RATE"
    ):
        value = number(src, "SourceStrength", path, where)
    else:
        return None
    return value


def _sources(ds: Dataset, path: Path) -> dict[int, _Source]:
    out: dict[int, _Source] = {}
    for k, src in enumerate(sequence(ds, "SourceSequence")):
        where = f"SourceSequence[{k}]."
        n = integer(src, "SourceNumber", path, where)
        if n in out:
            raise SeedoptError(f"{path.name}: SourceSequence holds source number {n} twice")
        model = str(src.get("SourceModelID", "") or "") or None
        out[n] = _Source(n, _source_strength(src, path, where), model)
    return out


def _channel_seeds(
    channel: Dataset, path: Path, where: str
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Seed centres of one channel: control points where the cumulative time weight rises
    while the position stays (a dwell); every distinct position when no weights are given.
    Also the channel's direction (first to last distinct position), when it has one. The
    channel's declared counts and final weight must match what it holds."""
    points = sequence(channel, "BrachyControlPointSequence")
    if "NumberOfControlPoints" in channel:
        declared = integer(channel, "NumberOfControlPoints", path, where)
        if declared != len(points):
            raise SeedoptError(
                f"{path.name}: {where}BrachyControlPointSequence holds {len(points)} control "
                f"points but NumberOfControlPoints is {declared} (a cut or edited file?)"
            )
    positions = []
    for k, cp in enumerate(points):
        at = f"{where}BrachyControlPointSequence[{k}]."
        if "ControlPointIndex" in cp and integer(cp, "ControlPointIndex", path, at) != k:
            raise SeedoptError(
                f"{path.name}: {at}ControlPointIndex is {cp.ControlPointIndex}, expected {k} "
                "(control points missing or out of order)"
            )
        positions.append(numbers(cp, "ControlPoint3DPosition", path, at, count=3))
    given = ["CumulativeTimeWeight" in cp and cp.CumulativeTimeWeight is not None for cp in points]
    if any(given) and not all(given):
        k = given.index(False)
        raise SeedoptError(
            f"{path.name}: {where}BrachyControlPointSequence[{k}].CumulativeTimeWeight is "
            "missing (other control points of the channel have one)"
        )
    seeds: list[np.ndarray] = []
    if points and all(given):
        w = np.array(
            [
                number(cp, "CumulativeTimeWeight", path, f"{where}BrachyControlPointSequence[{k}].")
                for k, cp in enumerate(points)
            ]
        )
        if np.any(np.diff(w) < 0):
            k = int(np.argmax(np.diff(w) < 0)) + 1
            raise SeedoptError(
                f"{path.name}: {where}BrachyControlPointSequence[{k}].CumulativeTimeWeight "
                f"falls from {w[k - 1]:g} to {w[k]:g}"
            )
        if channel.get("FinalCumulativeTimeWeight") not in (None, ""):
            final = number(channel, "FinalCumulativeTimeWeight", path, where)
            if not np.isclose(final, w[-1], rtol=1e-6, atol=1e-9):
                raise SeedoptError(
                    f"{path.name}: {where}FinalCumulativeTimeWeight is {final:g} but the last "
                    f"control point's cumulative time weight is {w[-1]:g} (a cut or edited file?)"
                )
        for k in range(1, len(points)):
            same = np.linalg.norm(positions[k] - positions[k - 1]) < SAME_POSITION_MM
            if same and w[k] > w[k - 1]:
                seeds.append(positions[k])
    else:
        for p in positions:
            if not seeds or np.linalg.norm(p - seeds[-1]) >= SAME_POSITION_MM:
                seeds.append(p)
    direction = None
    if positions and np.linalg.norm(positions[-1] - positions[0]) > SAME_POSITION_MM:
        d = positions[0] - positions[-1]  # control points run from the tip outwards
        direction = d / np.linalg.norm(d)
    return seeds, direction


def _check_plan(ds: Dataset, path: Path) -> None:
    """A permanent LDR seed plan whose parts agree: treatment type and technique, fraction
    groups naming setups that exist, a structure set where the geometry says there is one."""
    kind = str(ds.get("BrachyTreatmentType", "") or "").upper()
    if kind not in SEED_TREATMENT_TYPES:
        raise SeedoptError(
            f"{path.name}: BrachyTreatmentType {kind}: seedopt evaluates permanent LDR seed "
            "implants"
        )
    technique = str(ds.get("BrachyTreatmentTechnique", "") or "").upper()
    if technique not in PERMANENT_TECHNIQUES:
        raise SeedoptError(
            f"{path.name}: BrachyTreatmentTechnique {technique}: seedopt evaluates permanent "
            "seed implants (INTERSTITIAL or PERMANENT)"
        )
    setups = set()
    for k, setup in enumerate(sequence(ds, "ApplicationSetupSequence")):
        if "ApplicationSetupNumber" in setup:
            n = integer(setup, "ApplicationSetupNumber", path, f"ApplicationSetupSequence[{k}].")
            if n in setups:
                raise SeedoptError(
                    f"{path.name}: ApplicationSetupSequence holds setup number {n} twice"
                )
            setups.add(n)
    for k, group in enumerate(sequence(ds, "FractionGroupSequence")):
        where = f"FractionGroupSequence[{k}]."
        used = sequence(group, "ReferencedBrachyApplicationSetupSequence")
        if group.get("NumberOfBrachyApplicationSetups") not in (None, ""):
            declared = integer(group, "NumberOfBrachyApplicationSetups", path, where)
            if declared != len(used):
                raise SeedoptError(
                    f"{path.name}: {where}NumberOfBrachyApplicationSetups is {declared} but "
                    f"ReferencedBrachyApplicationSetupSequence holds {len(used)} (a cut or "
                    "edited file?)"
                )
        for j, ref in enumerate(used):
            at = f"{where}ReferencedBrachyApplicationSetupSequence[{j}]."
            n = integer(ref, "ReferencedBrachyApplicationSetupNumber", path, at)
            if n not in setups:
                raise SeedoptError(
                    f"{path.name}: {at}ReferencedBrachyApplicationSetupNumber {n} names no "
                    f"application setup of the plan ({len(setups)} present; a cut file?)"
                )
    if str(ds.get("RTPlanGeometry", "")) == "PATIENT" and not sequence(
        ds, "ReferencedStructureSetSequence"
    ):
        raise SeedoptError(
            f"{path.name}: RTPlanGeometry PATIENT without a ReferencedStructureSetSequence "
            "(required then; a cut file?)"
        )


def _seed_source(sources: dict[int, _Source], used: set[int | None], path: Path) -> _Source:
    """The one source type the seeds are of; sources no channel references (a vendor's dummy
    source) are left aside with a note."""
    if None in used:  # a channel that names no source: the plan's only real one
        real = {n for n, s in sources.items() if s.strength_u} or set(sources)
        used = (used - {None}) | (real if len(real) == 1 else set(sources))
    missing = sorted(n for n in used if n is not None and n not in sources)
    if missing:
        raise SeedoptError(
            f"{path.name}: channels reference source number {missing[0]}, which the "
            "SourceSequence does not hold"
        )
    chosen = [sources[n] for n in sorted(n for n in used if n is not None)]
    for n in sorted(set(sources) - set(s.number for s in chosen)):
        note(f"{path.name}: source {n} is used by no channel (a dummy source): left aside")
    kinds = {(s.strength_u, s.model_id) for s in chosen}
    if len(kinds) > 1:
        listed = "; ".join(
            f"source {s.number}: {s.model_id or 'model not given'}, "
            f"{'strength not given' if s.strength_u is None else f'{s.strength_u:g} U'}"
            for s in chosen
        )
        raise SeedoptError(
            f"{path.name}: the seeds are of {len(kinds)} source types ({listed}); seedopt "
            "evaluates one source type at a time"
        )
    if not chosen:
        return _Source(0, None, None)
    strength = chosen[0].strength_u
    if strength is not None and strength <= 0:
        raise SeedoptError(
            f"{path.name}: the seeds' source {chosen[0].number} has strength {strength:g} U "
            "(ReferenceAirKermaRate or SourceStrength); it must be positive"
        )
    return chosen[0]


def read_rtplan_seeds(path: Path) -> ImplantSeeds:
    """The seeds of a permanent LDR brachytherapy RT Plan: every channel of every application
    setup (see the module docstring and docs/dicom.md).

    Raises
    ------
    SeedoptError
        Not an RT Plan, a cut or damaged file, counts that disagree with what the file holds
        (control points, application setups, final weights), an HDR or temporary plan, seeds
        of several source types, or no seeds.
    """
    path = Path(path)
    ds = read_dataset(path, "RT Plan", pixels=False)
    require_modality(ds, path, "RTPLAN")
    _check_plan(ds, path)
    sources = _sources(ds, path)
    positions, axes, channel, known = [], [], [], []
    used: set[int | None] = set()
    n_channels = 0
    for i, setup in enumerate(sequence(ds, "ApplicationSetupSequence")):
        for j, ch in enumerate(sequence(setup, "ChannelSequence")):
            where = f"ApplicationSetupSequence[{i}].ChannelSequence[{j}]."
            seeds, direction = _channel_seeds(ch, path, where)
            if not seeds:
                continue
            has_source = ch.get("ReferencedSourceNumber") not in (None, "")
            used.add(integer(ch, "ReferencedSourceNumber", path, where) if has_source else None)
            for p in seeds:
                positions.append(p)
                axes.append(direction if direction is not None else np.array([0.0, 0.0, 1.0]))
                channel.append(n_channels)
                known.append(direction is not None)
            n_channels += 1
    if not positions:
        raise SeedoptError(
            f"{path}: the RT Plan has no seeds (no channel with control point positions)"
        )
    source = _seed_source(sources, used, path)
    return ImplantSeeds(
        np.asarray(positions),
        np.asarray(axes),
        np.asarray(channel),
        source.strength_u,
        source.model_id,
        np.asarray(known),
    )
