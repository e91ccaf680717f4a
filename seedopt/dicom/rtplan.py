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
from .files import RT_PLAN_STORAGE, Study, new_dataset, read_dataset, require_modality, save

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
    """

    positions_mm: np.ndarray
    axes: np.ndarray
    channel: np.ndarray
    strength_u: float | None = None
    model_id: str | None = None

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
    item.SourceManufacturer = src.model.description.split()[0] if src.model.description else ""
    item.SourceModelID = src.model.model_id
    item.SourceDescription = src.model.description[:64]
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
    number: int, seeds_mm: np.ndarray, tip_mm: np.ndarray, entry_mm: np.ndarray, mean_life_s: float
) -> Dataset:
    """One needle: a control point at the tip, two per seed (tip outwards), one at the entry."""
    from_tip = np.linalg.norm(seeds_mm - tip_mm, axis=1)
    order = np.argsort(from_tip, kind="stable")
    length = float(np.linalg.norm(entry_mm - tip_mm))
    ch = Dataset()
    ch.ChannelNumber = number
    ch.ChannelLength = round(length, 2)
    ch.ChannelTotalTime = round(mean_life_s, 1)
    ch.SourceMovementType = "FIXED"
    ch.ReferencedSourceNumber = 1
    ch.NumberOfControlPoints = 2 * len(order) + 2
    ch.SourceApplicatorNumber = number
    ch.SourceApplicatorID = f"needle {number}"
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
    ds.RTPlanLabel = plan.case.name[:16]
    ds.RTPlanName = plan.case.name[:64]
    ds.RTPlanDate, ds.RTPlanTime = date, time
    ds.RTPlanGeometry = "PATIENT"
    ds.PlanIntent = "CURATIVE"
    ref = Dataset()
    ref.ReferencedSOPClassUID = structure_set.sop_class_uid
    ref.ReferencedSOPInstanceUID = structure_set.sop_instance_uid
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
    for number, k in enumerate(plan.used_needles(), start=1):
        on = plan.loaded & (plan.candidates.seed_needle == k)
        needle = plan.candidates.needles[k]
        channels.append(
            _channel_item(
                number, plan.candidates.seeds_mm[on], needle.tip_mm, needle.entry_mm, mean_life_s
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


def _channel_seeds(channel: Dataset) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Seed centres of one channel: control points where the cumulative time weight rises
    while the position stays (a dwell); every distinct position when no weights are given.
    Also the channel's direction (first to last distinct position), when it has one."""
    points = channel.get("BrachyControlPointSequence", [])
    positions = [
        np.asarray([float(v) for v in cp.ControlPoint3DPosition])
        for cp in points
        if "ControlPoint3DPosition" in cp
    ]
    if len(positions) != len(points):
        return [], None
    weights = [cp.get("CumulativeTimeWeight") for cp in points]
    seeds: list[np.ndarray] = []
    if all(w is not None for w in weights) and len(points) > 1:
        w = np.asarray([float(v) for v in weights])
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


def read_rtplan_seeds(path: Path) -> ImplantSeeds:
    """The seeds of a brachytherapy RT Plan: every channel of every application setup.

    Raises
    ------
    SeedoptError
        Not an RT Plan, or one with no seeds.
    """
    path = Path(path)
    ds = read_dataset(path, "RT Plan", pixels=False)
    require_modality(ds, path, "RTPLAN")
    positions, axes, channel = [], [], []
    n_channels = 0
    for setup in ds.get("ApplicationSetupSequence", []):
        for ch in setup.get("ChannelSequence", []):
            seeds, direction = _channel_seeds(ch)
            if not seeds:
                continue
            for p in seeds:
                positions.append(p)
                axes.append(direction if direction is not None else np.array([0.0, 0.0, 1.0]))
                channel.append(n_channels)
            n_channels += 1
    if not positions:
        raise SeedoptError(
            f"{path}: the RT Plan has no seeds (no channel with control point positions)"
        )
    sources = ds.get("SourceSequence", [])
    strength = sources[0].get("ReferenceAirKermaRate") if sources else None
    model = sources[0].get("SourceModelID") if sources else None
    return ImplantSeeds(
        np.asarray(positions),
        np.asarray(axes),
        np.asarray(channel),
        float(strength) if strength else None,
        str(model) if model else None,
    )
