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
voxel (``eqd2_implant`` is convex in D; ``implant_dose_for_eqd2`` is its inverse).
Tumour repopulation during the implant's long delivery is not modelled (it lowers the
tumour's BED; omitting it overstates tumour effect, never organ effect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
class ImplantEqd2:
    """The EQD2 of a permanent implant in one tissue: ``alpha_beta_gy`` of the tissue, the
    source's half-life and the tissue's repair half-time.

    ``coefficient`` is lambda / (mu + lambda), so that BED = D (1 + coefficient D / (a/b)).
    """

    alpha_beta_gy: float
    half_life_d: float
    repair_half_time_h: float = DEFAULT_REPAIR_HALF_TIME_H

    def __post_init__(self) -> None:
        _check("alpha_beta_gy", self.alpha_beta_gy)
        _check("half_life_d", self.half_life_d)
        _check("repair_half_time_h", self.repair_half_time_h)

    @property
    def coefficient(self) -> float:
        lam = math.log(2.0) / (self.half_life_d * 24.0)  # per hour
        mu = math.log(2.0) / self.repair_half_time_h
        return lam / (mu + lam)

    def bed(self, dose_gy: Any) -> Any:
        """BED (Gy) of a total implant dose (Gy, per voxel; array module of the input)."""
        return dose_gy * (1.0 + self.coefficient * dose_gy / self.alpha_beta_gy)

    def eqd2(self, dose_gy: Any) -> Any:
        """EQD2 (Gy) of a total implant dose (Gy, per voxel); increasing and convex."""
        return self.bed(dose_gy) / (1.0 + 2.0 / self.alpha_beta_gy)

    def dose_for_eqd2(self, eqd2_gy: float) -> float:
        """The total implant dose (Gy) whose EQD2 is ``eqd2_gy`` (the positive root)."""
        ab, c = self.alpha_beta_gy, self.coefficient
        target = float(eqd2_gy) * (1.0 + 2.0 / ab)  # the BED asked for
        a = c / ab
        return 2.0 * target / (1.0 + math.sqrt(1.0 + 4.0 * a * target))


@dataclass(frozen=True)
class Radiobiology:
    """Per-structure parameters: alpha/beta (Gy) and repair half-time (h), each a mapping of
    structure name to value with a ``default`` entry for the others."""

    alpha_beta_gy: dict[str, float]
    repair_half_time_h: dict[str, float]

    @classmethod
    def defaults(cls) -> Radiobiology:
        return cls({"default": DEFAULT_ALPHA_BETA_GY}, {"default": DEFAULT_REPAIR_HALF_TIME_H})

    def alpha_beta(self, structure: str) -> float:
        return float(self.alpha_beta_gy.get(structure, self.alpha_beta_gy["default"]))

    def implant(self, structure: str, half_life_d: float) -> ImplantEqd2:
        """The implant EQD2 model of ``structure`` for a source of ``half_life_d`` days."""
        t = self.repair_half_time_h.get(structure, self.repair_half_time_h["default"])
        return ImplantEqd2(self.alpha_beta(structure), half_life_d, float(t))
