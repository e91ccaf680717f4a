"""Dose-volume metrics of a plan: Dx, Vx, Dcc, CI, EI, HI and cumulative DVH curves.

Conventions (stated because clinical systems differ):

* A structure is a set of voxels with occupancy weights in [0, 1] (1 for a plain mask, a
  fraction for partial volumes); its volume is ``sum(weights) * voxel_cc``.
* ``D_x%`` (e.g. D90) is the largest dose d such that at least x % of the volume receives >= d:
  voxels sorted by dose, hottest first, and the dose of the voxel at which the cumulative
  volume first reaches x %. ``D_v cc`` (D2cc, D0.1cc) is the same with an absolute volume.
  For a structure smaller than v (on the grid) ``D_v cc`` is the dose of its coldest voxel:
  the dose the whole structure receives at least. This is the rule the optimizer's objective
  uses (``optimizer.objective.points_in_volume``: the k-th hottest point with k at most the
  number of points), so the value reported is the value optimised. Only a structure with no
  voxel at all has no D_v cc (NaN, reported "n/a", never a passed goal).
* ``V_x`` is the percentage of the volume receiving >= x Gy.
* Conformity, external volume and homogeneity indices as the published CT-guided I-125
  series define them (CI is van't Riet's conformation number, IJROBP 37:731, 1997):
  CI = (V_T,ref / V_T) x (V_T,ref / V_ref), EI = (V_ref - V_T,ref) / V_T,
  HI = (V_T,ref - V_T,1.5ref) / V_T,ref, where V_ref is the body volume receiving the
  prescription dose and V_T,ref the target volume receiving it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Structure:
    """Doses of a structure's voxels (Gy) with their volumes (cc), hottest first."""

    dose_gy: np.ndarray
    volume_cc: np.ndarray

    @classmethod
    def from_mask(cls, dose_gy: np.ndarray, weights: np.ndarray, voxel_cc: float) -> Structure:
        """From a dose grid and a same-shaped mask or occupancy array (0..1)."""
        w = np.asarray(weights, dtype=np.float64).ravel()
        d = np.asarray(dose_gy, dtype=np.float64).ravel()
        if w.shape != d.shape:
            raise ValueError(
                f"mask shape {np.shape(weights)} differs from dose {np.shape(dose_gy)}"
            )
        keep = w > 0
        order = np.argsort(-d[keep], kind="stable")
        return cls(d[keep][order], w[keep][order] * voxel_cc)

    @property
    def total_cc(self) -> float:
        return float(self.volume_cc.sum())

    def dose_at_volume_cc(self, volume_cc: float) -> float:
        """Minimum dose to the hottest ``volume_cc`` (Gy); the coldest voxel's dose if the
        structure is smaller (module docstring); NaN if it has no voxel."""
        cum = np.cumsum(self.volume_cc)
        if cum.size == 0:
            return float("nan")
        k = int(np.searchsorted(cum, volume_cc * (1 - 1e-12), side="left"))
        return float(self.dose_gy[min(k, cum.size - 1)])

    def dose_at_percent(self, percent: float) -> float:
        """D_x%: minimum dose to the hottest ``percent`` % of the volume (Gy)."""
        return self.dose_at_volume_cc(self.total_cc * percent / 100.0)

    def volume_at_dose_cc(self, dose_gy: float) -> float:
        """Volume receiving at least ``dose_gy`` (cc)."""
        return float(self.volume_cc[self.dose_gy >= dose_gy].sum())

    def percent_at_dose(self, dose_gy: float) -> float:
        """V_x: percentage of the volume receiving at least ``dose_gy``."""
        total = self.total_cc
        return 100.0 * self.volume_at_dose_cc(dose_gy) / total if total > 0 else float("nan")

    def max_gy(self) -> float:
        return float(self.dose_gy[0]) if self.dose_gy.size else float("nan")

    def mean_gy(self) -> float:
        total = self.total_cc
        return float(np.dot(self.dose_gy, self.volume_cc) / total) if total > 0 else float("nan")

    def dvh(
        self, bin_gy: float = 0.5, max_gy: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative DVH: dose levels (Gy) and percent of volume receiving at least each."""
        top = self.max_gy() if max_gy is None else max_gy
        levels = np.arange(0.0, top + bin_gy, bin_gy)
        ascending_dose = self.dose_gy[::-1]
        ascending_cum = np.cumsum(self.volume_cc[::-1])  # volume with dose <= that voxel's
        below = np.searchsorted(ascending_dose, levels, side="left")
        cum_below = np.where(below > 0, ascending_cum[np.maximum(below - 1, 0)], 0.0)
        return levels, 100.0 * (self.total_cc - cum_below) / self.total_cc


@dataclass(frozen=True)
class ConformityIndices:
    """CI, EI and HI of a target at a prescription (dimensionless)."""

    CI: float
    EI: float
    HI: float


def conformity_indices(
    target: Structure, body: Structure, prescription_gy: float
) -> ConformityIndices:
    """CI, EI, HI (definitions in the module docstring); ``body`` includes the target."""
    v_t = target.total_cc
    v_t_ref = target.volume_at_dose_cc(prescription_gy)
    v_t_15 = target.volume_at_dose_cc(1.5 * prescription_gy)
    v_ref = body.volume_at_dose_cc(prescription_gy)
    ci = (v_t_ref / v_t) * (v_t_ref / v_ref) if v_ref > 0 and v_t > 0 else 0.0
    ei = (v_ref - v_t_ref) / v_t if v_t > 0 else float("nan")
    hi = (v_t_ref - v_t_15) / v_t_ref if v_t_ref > 0 else float("nan")
    return ConformityIndices(ci, ei, hi)


_METRIC = re.compile(r"^(D|V)(\d+(?:\.\d+)?)(cc|Gy|%)?$")
REQUESTED_METRIC_HELP = (
    "write Dx (Gy to the hottest x %), Dxcc (Gy to the hottest x cc), Vx (% of the structure "
    "at x % of the prescription) or VxGy (% of the structure at x Gy)"
)


def parse_requested_metric(name: str) -> tuple[str, float, str]:
    """(``"D"`` or ``"V"``, x, unit ``"%"``, ``"cc"`` or ``"Gy"``) of a Dx / Vx metric name;
    ValueError naming the accepted forms otherwise."""
    m = _METRIC.match(name)
    kind, unit = (m.group(1), m.group(3) or "%") if m else ("", "")
    if not m or (kind, unit) in (("D", "Gy"), ("V", "cc")):
        raise ValueError(f"{name!r} is not a Dx / Vx metric; {REQUESTED_METRIC_HELP}")
    x = float(m.group(2))
    if unit == "%" and kind == "D" and x > 100:
        raise ValueError(f"{name!r}: a dose-to-volume percentage is at most 100")
    return kind, x, unit


def requested_metric(name: str, structure: Structure, prescription_gy: float) -> float:
    """A Dx / Vx metric asked for by name: ``D98`` (Gy), ``D0.5cc`` (Gy), ``V120`` (% of the
    structure at 120 % of the prescription), ``V100Gy`` (% of the structure at 100 Gy)."""
    kind, x, unit = parse_requested_metric(name)
    if kind == "D":
        return structure.dose_at_volume_cc(x) if unit == "cc" else structure.dose_at_percent(x)
    level = x if unit == "Gy" else prescription_gy * x / 100.0
    return structure.percent_at_dose(level)


def requested_metric_key(name: str) -> str:
    """The metrics.json key of a requested metric: ``D98`` -> ``D98_gy``, ``V120`` ->
    ``V120_pct``, ``D0.5cc`` -> ``D0.5cc_gy``, ``V100Gy`` -> ``V100Gy_pct``."""
    kind, _, _ = parse_requested_metric(name)
    return f"{name}_gy" if kind == "D" else f"{name}_pct"
