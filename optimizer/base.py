"""The planning problem every optimizer solves and the one result type they all return.

Problem (all doses in Gy, from the dose-influence matrix of the candidate seeds):

* decision: ``x[j] in {0, 1}`` loads candidate seed ``j``; a needle is used when any of its
  seeds is loaded;
* primary goal: target D90 >= prescription (evaluated on ``A_target`` rows, equal volumes);
* hard limits: ``HardLimit(structure, metric, max_gy)`` with metric "Dmax", "D0.1cc",
  "D1cc", "D2cc" or "Dmean" on ``A_oar[structure]`` rows (each row ``voxel_cc``);
* soft goals, weighted: V150 and V200 of the target (percent), number of seeds, number of
  needles, and each hard-limited organ metric above a fraction of its limit (ALARA).

``objective(problem, x)`` defines the exact scalar every optimizer is compared on (lower is
better); see its docstring.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

import numpy as np

from seedopt.radiobiology import ImplantEqd2

Metric = Literal["Dmax", "D0.1cc", "D1cc", "D2cc", "Dmean"]
METRICS: tuple[str, ...] = get_args(Metric)
Quantity = Literal["physical", "eqd2_implant", "eqd2_cumulative"]
QUANTITIES: tuple[str, ...] = get_args(Quantity)
"""What a hard limit's dose is: the implant's physical dose, the implant's EQD2, or the
cumulative EQD2 (the prior course's plus the implant's, summed per voxel before the metric);
``seedopt.radiobiology``."""


def _finite(owner: object, name: str) -> float:
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


@dataclass(frozen=True)
class HardLimit:
    """``metric`` of ``structure`` at most ``max_gy`` (Gy, of ``quantity``): the one definition
    of a hard limit, also what ``goals.hard`` in a plan config validates into
    (``seedopt.plan_config``)."""

    structure: str
    metric: Metric
    max_gy: float
    quantity: Quantity = "physical"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.quantity not in QUANTITIES:
            raise ValueError(
                f"quantity must be one of {', '.join(QUANTITIES)}, got {self.quantity!r}"
            )
        if _finite(self, "max_gy") <= 0:
            raise ValueError(f"max_gy must be a positive dose in Gy, got {self.max_gy:g}")


@dataclass(frozen=True)
class SoftWeights:
    """Weights of the soft goals in the objective (per unit named): the one definition, also
    what ``goals.weights`` in a plan config validates into (``seedopt.plan_config``).

    ``organ_per_pct`` prices each hard-limited metric (D0.1cc, D2cc, ...) per percent of its
    limit above ``organ_floor`` x the limit: organ dose kept as low as reasonably achievable,
    but below ``organ_floor`` (a fraction of the limit, 0..1) x limit it no longer costs
    anything. Every weight is >= 0.
    """

    v150_per_pct: float = 0.02
    v200_per_pct: float = 0.05
    per_seed: float = 0.05
    per_needle: float = 0.1
    organ_per_pct: float = 0.1
    organ_floor: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            if _finite(self, f.name) < 0:
                raise ValueError(f"{f.name} must be >= 0, got {getattr(self, f.name):g}")
        if self.organ_floor > 1:
            raise ValueError(
                f"organ_floor must be a fraction of the limit in [0, 1], got {self.organ_floor:g}"
            )

    def organ_floor_gy(self, limit_gy: float) -> float:
        """Dose (Gy) above which a limited metric costs ``organ_per_pct`` per percent."""
        return self.organ_floor * limit_gy

    def lowest_priced_gy(self, limit_gy: float) -> float:
        """Dose (Gy) below which a limited metric costs nothing in the objective."""
        return self.organ_floor_gy(limit_gy) if self.organ_per_pct > 0 else limit_gy


@dataclass(frozen=True)
class CandidateGeometry:
    """Geometry that a geometry-aware method (the clinical baseline) needs.

    Attributes
    ----------
    needle_holes : template hole (column, row) of each candidate needle, or None (freehand).
    needle_points_mm : (n_needles, 3) a point of each needle inside the target, mm.
    needle_directions : (n_needles, 3) unit directions.
    seed_depth_mm : (m,) distance of each candidate seed centre inside the target's surface, mm.
    seed_order : (m,) position of each candidate along its needle, counted from the tip.
    seed_points_mm : (m, 3) candidate seed centres, mm.
    """

    needle_holes: list[tuple[int, int] | None]
    needle_points_mm: np.ndarray
    needle_directions: np.ndarray
    seed_depth_mm: np.ndarray
    seed_order: np.ndarray
    seed_points_mm: np.ndarray


@dataclass(frozen=True)
class PlanProblem:
    """Everything an optimizer needs; matrices are NumPy (or CuPy) float32 arrays.

    Attributes
    ----------
    A_target : (n_target, m) Gy per seed at target points (equal volumes).
    A_oar : structure name -> (n_k, m) Gy per seed at that structure's points.
    voxel_cc : volume of one point of ``A_oar`` and ``A_target`` rows, cc.
    prescription_gy : target D90 goal, Gy; in a sweep (``optimizer.sweep``) one per row of
        the loadings being scored (an array in the matrices' array module).
    hard : hard organ limits.
    soft : soft-goal weights.
    seed_needle : (m,) needle index of each candidate seed.
    n_needles : number of candidate needles.
    max_seeds, max_needles : optional caps.
    geometry : candidate geometry for geometry-aware methods (optional).
    implant_eqd2 : structure -> its implant EQD2 model (``radiobiology.ImplantEqd2``), for
        every structure with an EQD2 limit.
    prior_eqd2 : structure -> (n_k,) EQD2 of the prior course at its rows (Gy, recovery
        applied), for every structure with a cumulative limit; rows as ``A_oar``'s.
    scenarios : the same problem with every candidate needle displaced by a sampled error,
        one per scenario, for robust optimization (``optimizer.robust``); empty: none.
    """

    A_target: Any
    A_oar: dict[str, Any]
    voxel_cc: float
    prescription_gy: float | Any
    hard: tuple[HardLimit, ...]
    seed_needle: np.ndarray
    n_needles: int
    soft: SoftWeights = field(default_factory=SoftWeights)
    max_seeds: int | None = None
    max_needles: int | None = None
    geometry: CandidateGeometry | None = None
    implant_eqd2: dict[str, ImplantEqd2] = field(default_factory=dict)
    prior_eqd2: dict[str, Any] = field(default_factory=dict)
    scenarios: tuple[PlanProblem, ...] = ()

    def __post_init__(self) -> None:
        for lim in self.hard:
            if lim.quantity != "physical" and lim.structure not in self.implant_eqd2:
                raise ValueError(f"{lim.structure}: an {lim.quantity} limit needs its EQD2 model")
            if lim.quantity == "eqd2_cumulative":
                prior = self.prior_eqd2.get(lim.structure)
                if prior is None or prior.shape != (self.A_oar[lim.structure].shape[0],):
                    raise ValueError(
                        f"{lim.structure}: a cumulative limit needs the prior EQD2 at each of "
                        "its rows"
                    )

    @property
    def n_candidates(self) -> int:
        return int(self.A_target.shape[1])

    @property
    def physical_only(self) -> bool:
        """Every hard limit is on the implant's physical dose."""
        return all(lim.quantity == "physical" for lim in self.hard)

    def limit_doses(self, lim: HardLimit, d: Any) -> Any:
        """The per-row dose ``lim`` constrains, from implant doses ``d`` (Gy) at the rows of
        its structure ((..., n_k)): ``d`` itself, its EQD2, or the prior's EQD2 plus its EQD2."""
        if lim.quantity == "physical":
            return d
        e = self.implant_eqd2[lim.structure].eqd2(d)
        return e + self.prior_eqd2[lim.structure] if lim.quantity == "eqd2_cumulative" else e

    def with_organ_rows(self, rows: dict[str, Any], voxel_cc: float | None = None) -> PlanProblem:
        """The same problem on a subset of its organ rows (structure -> row indices, or a
        slice), each prior EQD2 cut alike; ``voxel_cc`` when a row stands for more volume."""
        a_oar = dict(self.A_oar)
        prior = dict(self.prior_eqd2)
        for name, r in rows.items():
            a_oar[name] = self.A_oar[name][r]
            if name in prior:
                prior[name] = prior[name][r]
        return dataclasses.replace(
            self,
            A_oar=a_oar,
            prior_eqd2=prior,
            voxel_cc=self.voxel_cc if voxel_cc is None else voxel_cc,
        )


@dataclass
class OptimizeResult:
    """The result every optimizer returns (after SciPy's ``OptimizeResult``).

    Attributes
    ----------
    x : (m,) bool loading of the candidate seeds.
    fun : ``objective(problem, x)``.
    success : the optimizer finished normally (not: every goal met).
    status : 0 finished, 1 time or iteration limit, 2 failed.
    message : a human-readable line.
    nit, nfev : iterations and objective/dose evaluations.
    method : optimizer name.
    runtime_s : wall time, s.
    bound : the proven lower bound of the method's own model objective (MILP/LP: the HiGHS
        dual bound of the linear-penalty model, not of ``fun``), else None.
    strength_scale : the plan uses the seed strength times this factor (1: the problem's
        strength; the clinical baseline's ``scaling: strength`` sets it), and ``fun`` is the
        objective at that strength.
    extra : method-specific details.
    """

    x: np.ndarray
    fun: float
    success: bool
    status: int
    message: str
    nit: int
    nfev: int
    method: str
    runtime_s: float
    bound: float | None = None
    strength_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
