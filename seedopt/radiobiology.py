"""Radiobiology of re-irradiation: equivalent doses in 2 Gy fractions (EQD2, Gy) of a prior
fractionated course and of a permanent implant, per voxel, in the linear-quadratic model.

Fractionated course of total dose D in n fractions (complete repair between fractions; Withers
HR, Thames HD, Peters LJ. A new isoeffect curve for change in dose per fraction. Radiother
Oncol 1983;1:187-191; Fowler JF. The linear-quadratic formula and progress in fractionated
radiotherapy. Br J Radiol 1989;62:679-694):

    BED = D (1 + (D/n) / (a/b)),   EQD2 = BED / (1 + 2 / (a/b)) = D (D/n + a/b) / (2 + a/b).

Permanent implant delivering D in total with the source's exponential decay (lambda = ln 2 /
half-life) and mono-exponential sublethal-damage repair (mu = ln 2 / repair half-time), given
in full (the source decays completely; no repopulation; Dale RG. The application of the
linear-quadratic dose-effect equation to fractionated and protracted radiotherapy. Br J Radiol
1985;58:515-528, eq. for permanent implants):

    BED = D [1 + D lambda / ((mu + lambda) (a/b))],   EQD2 = BED / (1 + 2 / (a/b)).

Both are increasing in D, so a dose-volume metric of EQD2 is taken after converting every
voxel (``ImplantEqd2.eqd2`` is convex in D; ``dose_for_eqd2`` is its inverse).

Optional tumour repopulation (``Repopulation``, for the target only): with the initial dose
rate R0 = D lambda, R(t) = R0 exp(-lambda t) and the repopulation rate K = ln 2 / (alpha T_pot)
(Gy per hour), the implant's BED up to time T (Dale 1985, the protracted-exposure integral;
Dale RG. Radiobiological assessment of permanent implants using tumour repopulation factors
in the linear-quadratic model. Br J Radiol 1989;62:241-244) is

    BED(T) = R0 (1 - e^(-lambda T)) / lambda
             + 2 R0^2 / ((mu - lambda) (a/b)) [(1 - e^(-2 lambda T)) / (2 lambda)
                                                - (1 - e^(-(mu + lambda) T)) / (mu + lambda)]
             - K T,

taken at the effective treatment time T_eff where it is largest (dBED/dT = 0: the killing
rate R(T) (1 + 2 I(T) / (a/b)), I(T) = R0 (e^(-lambda T) - e^(-mu T)) / (mu - lambda), falls to
K), and 0 when R0 <= K. Without repopulation T -> infinity gives the formula above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SeedoptError

DEFAULT_ALPHA_BETA_GY = 3.0
"""alpha/beta of late-responding normal tissue (Fowler 1989); tumours are often given 10 Gy
and the spinal cord 2 Gy (Kirkpatrick JP et al. Radiation dose-volume effects in the spinal
cord. Int J Radiat Oncol Biol Phys 2010;76(3 Suppl):S42-S49)."""
DEFAULT_REPAIR_HALF_TIME_H = 1.5
"""Half-time of sublethal-damage repair, hours: 1.5 h is the value Dale (1985) and later LDR
work use for late-responding tissue (Dale RG, Jones B. The clinical radiobiology of
brachytherapy. Br J Radiol 1998;71:465-483)."""


def _check(name: str, value: float, low: float = 0.0) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= low:
        raise SeedoptError(f"{name} must be a finite number above {low:g}, got {value:g}")
    return value


def eqd2_fractionated(dose_gy: Any, fractions: int, alpha_beta_gy: float) -> Any:
    """EQD2 (Gy) of ``dose_gy`` (total, per voxel) given in ``fractions`` equal fractions."""
    if isinstance(fractions, bool) or int(fractions) != fractions or fractions < 1:
        raise SeedoptError(f"fractions must be a whole number >= 1, got {fractions!r}")
    ab = _check("alpha/beta", alpha_beta_gy)
    d = np.asarray(dose_gy, dtype=np.float64)
    return d * (d / fractions + ab) / (2.0 + ab)


@dataclass(frozen=True)
class Repopulation:
    """Tumour repopulation during the implant: the tumour's alpha (per Gy) and potential
    doubling time (days). Typical published values are alpha 0.15-0.3 /Gy and T_pot 5-40 d
    (Dale 1989; Dale and Jones 1998); they are the physician's to set."""

    alpha_per_gy: float
    t_pot_days: float

    def __post_init__(self) -> None:
        _check("alpha_per_gy", self.alpha_per_gy)
        _check("t_pot_days", self.t_pot_days)

    @property
    def rate_gy_per_h(self) -> float:
        """K = ln 2 / (alpha T_pot), Gy per hour."""
        return math.log(2.0) / (self.alpha_per_gy * self.t_pot_days * 24.0)


@dataclass(frozen=True)
class ImplantEqd2:
    """The EQD2 of a permanent implant in one tissue: ``alpha_beta_gy`` of the tissue, the
    source's half-life, the tissue's repair half-time and, for a tumour, optionally its
    repopulation.

    ``coefficient`` is lambda / (mu + lambda), so that without repopulation
    BED = D (1 + coefficient D / (a/b)).
    """

    alpha_beta_gy: float
    half_life_d: float
    repair_half_time_h: float = DEFAULT_REPAIR_HALF_TIME_H
    repopulation: Repopulation | None = None

    def __post_init__(self) -> None:
        _check("alpha_beta_gy", self.alpha_beta_gy)
        _check("half_life_d", self.half_life_d)
        _check("repair_half_time_h", self.repair_half_time_h)

    @property
    def decay_per_h(self) -> float:
        return math.log(2.0) / (self.half_life_d * 24.0)

    @property
    def repair_per_h(self) -> float:
        return math.log(2.0) / self.repair_half_time_h

    @property
    def coefficient(self) -> float:
        lam, mu = self.decay_per_h, self.repair_per_h
        return lam / (mu + lam)

    def bed(self, dose_gy: Any) -> Any:
        """BED (Gy) of a total implant dose (Gy, per voxel; array module of the input; with
        repopulation NumPy only)."""
        if self.repopulation is None:
            return dose_gy * (1.0 + self.coefficient * dose_gy / self.alpha_beta_gy)
        return np.vectorize(self._bed_repopulating, otypes=[float])(dose_gy)

    def bed_until(self, dose_gy: float, t_h: float) -> float:
        """BED (Gy) of the dose delivered in the first ``t_h`` hours, less repopulation."""
        lam, mu, ab = self.decay_per_h, self.repair_per_h, self.alpha_beta_gy
        r0 = dose_gy * lam
        quad = (1 - math.exp(-2 * lam * t_h)) / (2 * lam) - (1 - math.exp(-(mu + lam) * t_h)) / (
            mu + lam
        )
        bed = r0 * (1 - math.exp(-lam * t_h)) / lam + 2 * r0 * r0 * quad / ((mu - lam) * ab)
        k = self.repopulation.rate_gy_per_h if self.repopulation else 0.0
        return bed - k * t_h

    def effective_time_h(self, dose_gy: float) -> float:
        """T_eff (hours): where the killing rate falls to the repopulation rate (0 when the
        initial dose rate does not exceed it); infinite without repopulation."""
        if self.repopulation is None:
            return math.inf
        lam, mu, ab = self.decay_per_h, self.repair_per_h, self.alpha_beta_gy
        r0, k = float(dose_gy) * lam, self.repopulation.rate_gy_per_h

        def killing(t: float) -> float:
            inner = r0 * (math.exp(-lam * t) - math.exp(-mu * t)) / (mu - lam)
            return r0 * math.exp(-lam * t) * (1 + 2 * inner / ab) - k

        if killing(0.0) <= 0:
            return 0.0
        lo, hi = 0.0, 1.0 / lam
        while killing(hi) > 0:
            lo, hi = hi, 2 * hi
        for _ in range(200):  # bisection to machine precision
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if killing(mid) > 0 else (lo, mid)
        return 0.5 * (lo + hi)

    def _bed_repopulating(self, dose_gy: float) -> float:
        return max(0.0, self.bed_until(dose_gy, self.effective_time_h(dose_gy)))

    def eqd2(self, dose_gy: Any) -> Any:
        """EQD2 (Gy) of a total implant dose (Gy, per voxel); increasing (and convex without
        repopulation)."""
        return self.bed(dose_gy) / (1.0 + 2.0 / self.alpha_beta_gy)

    def dose_for_eqd2(self, eqd2_gy: float) -> float:
        """The total implant dose (Gy) whose EQD2 is ``eqd2_gy`` (the positive root; by
        bisection with repopulation)."""
        ab, c = self.alpha_beta_gy, self.coefficient
        target = float(eqd2_gy) * (1.0 + 2.0 / ab)  # the BED asked for
        a = c / ab
        guess = 2.0 * target / (1.0 + math.sqrt(1.0 + 4.0 * a * target))
        if self.repopulation is None:
            return guess
        lo, hi = guess, 2.0 * guess
        while float(self.eqd2(hi)) < eqd2_gy:
            lo, hi = hi, 2 * hi
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if float(self.eqd2(mid)) < eqd2_gy else (lo, mid)
        return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Radiobiology:
    """Per-structure parameters: alpha/beta (Gy) and repair half-time (h), each a mapping of
    structure name to value with a ``default`` entry for the others."""

    alpha_beta_gy: dict[str, float]
    repair_half_time_h: dict[str, float]
    repopulation: dict[str, Repopulation] = field(default_factory=dict)

    def alpha_beta(self, structure: str) -> float:
        return float(self.alpha_beta_gy.get(structure, self.alpha_beta_gy["default"]))

    def implant(self, structure: str, half_life_d: float) -> ImplantEqd2:
        """The implant EQD2 model of ``structure`` for a source of ``half_life_d`` days."""
        t = self.repair_half_time_h.get(structure, self.repair_half_time_h["default"])
        return ImplantEqd2(
            self.alpha_beta(structure), half_life_d, float(t), self.repopulation.get(structure)
        )
