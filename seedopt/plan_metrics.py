"""A plan's metrics as one frozen type: ``PlanMetrics`` (structures, indices, goals, notes,
counts, method, timings) with one ``to_json`` (metrics.json, the batch's ``metrics_json``) and
one ``from_json`` (``evaluate --plan``, the batch and HDF5 readers).

A goal's pass or fail is never stored, only computed: ``Goal.met`` is derived from the value
and the limit, and a value that is NaN (not computable) or not trustworthy (a limited organ
whose dose outside the grid may exceed its limit; ``seedopt.beyond_grid``) is "not
evaluated" and never met. So a NaN cannot pass a goal, in a plan or in a file read back.

metrics.json (values in Gy, cc, % or s; null where a value is not computable)::

    {"prescription_gy", "target", "method", "n_seeds", "n_needles", "total_strength_u",
     "source": {"model", "air_kerma_strength_u"},
     "structures": {name: {"volume_cc", "Dmax_gy", "Dmean_gy", "D0.1cc_gy", "D1cc_gy",
                           "D2cc_gy", [target: "D90_gy", "D100_gy", "V90_pct", "V100_pct",
                           "V150_pct", "V200_pct"], requested "D98_gy", "V120_pct", ...}},
     "indices": {"CI", "EI", "HI"},
     "goals": [{"name", "value", "limit", "sense" (">=" or "<="), "met", "miss", "miss_pct",
                "not_evaluated" (why, or null)}],
     "beyond_grid": {name: {"inside_cc", "outside_cc" (null: unbounded shape),
                            "dose_outside_max_gy"}},
     "notes": [str], "runtime_s": {step: s},
     plans only: "objective", "optimizer_message", "dose_matrix_dtype",
                 "dose_matrix_cached", "n_candidate_seeds", "n_candidate_needles",
                 "candidate_drops": {reason: lines} (traced needle lines dropped, by reason),
     evaluate --plan only: "pre_plan": {"folder", "structures"}}
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from .beyond_grid import GrownValue, OutsidePart, dose_outside_bound_gy, evaluate_grown
from .case import Case
from .errors import SeedoptError
from .metrics import Structure, conformity_indices, requested_metric, requested_metric_key
from .optimizer import HardLimit
from .plan_config import PlanSpec
from .reirradiation import limited_volume, outside_eqd2_bound_gy, physical_prescription_gy
from .sources import Source

if TYPE_CHECKING:
    from .dicom.images import CaseImages

GOAL_RTOL = 1e-6
"""Relative tolerance of a goal's comparison (float32 doses)."""
DCC_METRICS = {"D0.1cc": 0.1, "D1cc": 1.0, "D2cc": 2.0}
"""The Dcc metrics of every structure: label -> volume, cc."""
STRUCTURE_KEYS = ("volume_cc", "Dmax_gy", "Dmean_gy", *(f"{k}_gy" for k in DCC_METRICS))
"""Metrics every structure has in metrics.json."""
TARGET_KEYS = ("D90_gy", "D100_gy", "V90_pct", "V100_pct", "V150_pct", "V200_pct")
"""Metrics the target has besides."""


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class Goal:
    """``value`` >= ``limit`` (``at_least``, the target's D90) or <= ``limit`` (an organ).

    ``value`` is NaN when it cannot be computed; ``not_evaluated`` says why a value cannot
    be judged (None: it can). Either way the goal is not met.
    """

    name: str
    value: float
    limit: float
    at_least: bool = False
    not_evaluated: str | None = None

    @property
    def evaluated(self) -> bool:
        return self.not_evaluated is None and math.isfinite(self.value)

    @property
    def reason(self) -> str | None:
        """Why the goal is not evaluated (None when it is)."""
        if self.evaluated:
            return None
        return self.not_evaluated or "the value is not computable"

    @property
    def met(self) -> bool:
        if not self.evaluated:
            return False
        if self.at_least:
            return self.value >= self.limit * (1 - GOAL_RTOL)
        return self.value <= self.limit * (1 + GOAL_RTOL)

    @property
    def miss_gy(self) -> float:
        """How far the value lies on the wrong side of the limit (0 when met, NaN when not
        evaluated)."""
        if not self.evaluated:
            return math.nan
        if self.met:
            return 0.0
        return self.limit - self.value if self.at_least else self.value - self.limit

    def to_json(self) -> dict[str, Any]:
        miss = self.miss_gy
        return {
            "name": self.name,
            "value": _json_number(self.value),
            "limit": self.limit,
            "sense": ">=" if self.at_least else "<=",
            "met": self.met,
            "miss": _json_number(miss),
            "miss_pct": _json_number(100 * miss / self.limit),
            "not_evaluated": self.reason,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Goal:
        d = _mapping(data, where)
        name = _text(d, "name", where)
        sense = d.get("sense", ">=" if " >= " in name else "<=")  # files before "sense"
        if sense not in (">=", "<="):
            raise SeedoptError(f"{where}: sense: expected '>=' or '<=', got {sense!r}")
        reason = d.get("not_evaluated")
        return cls(
            name,
            _number(d, "value", where),
            _number(d, "limit", where, allow_null=False),
            sense == ">=",
            reason if isinstance(reason, str) else None,
        )


@dataclass(frozen=True)
class BeyondGrid:
    """A hard-limited structure that extends beyond the dose grid: its volume inside (cc, on
    the grid's voxels), outside (cc; ``math.inf`` for a shape without bound, such as a
    cylinder without ``half_length_mm``) and an upper bound of the dose anywhere in its part
    outside the grid (Gy; ``seedopt.beyond_grid.dose_outside_bound_gy``)."""

    inside_cc: float
    outside_cc: float
    dose_outside_max_gy: float

    def to_json(self) -> dict[str, Any]:
        return {
            "inside_cc": self.inside_cc,
            "outside_cc": _json_number(self.outside_cc),
            "dose_outside_max_gy": _json_number(self.dose_outside_max_gy),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> BeyondGrid:
        d = _mapping(data, where)
        outside = _number(d, "outside_cc", where)
        bound = _number(d, "dose_outside_max_gy", where)
        return cls(
            _number(d, "inside_cc", where, allow_null=False),
            math.inf if math.isnan(outside) else outside,
            math.inf if math.isnan(bound) else bound,
        )


@dataclass(frozen=True)
class OptimizerRun:
    """How an optimized plan was found (absent for post-implant dosimetry)."""

    objective: float
    message: str
    dose_matrix_dtype: str
    dose_matrix_cached: bool
    n_candidate_seeds: int
    n_candidate_needles: int
    candidate_drops: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    """Traced needle lines that gave no candidate, by reason (``candidates.drops.KEYS``)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "objective": _json_number(self.objective),
            "optimizer_message": self.message,
            "dose_matrix_dtype": self.dose_matrix_dtype,
            "dose_matrix_cached": self.dose_matrix_cached,
            "n_candidate_seeds": self.n_candidate_seeds,
            "n_candidate_needles": self.n_candidate_needles,
            "candidate_drops": dict(self.candidate_drops),
        }


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class PlanMetrics:
    """Everything metrics.json holds (module docstring); build with ``plan_metrics.evaluate``
    or ``from_json``.

    ``structures`` maps each structure to its metrics (NaN where not computable); ``goals``
    starts with the target's D90 goal, then one per hard limit.
    """

    prescription_gy: float
    target: str
    structures: Mapping[str, Mapping[str, float]]
    indices: Mapping[str, float]
    goals: tuple[Goal, ...]
    n_seeds: int
    n_needles: int
    method: str
    total_strength_u: float
    source_model: str
    strength_u: float
    notes: tuple[str, ...] = ()
    runtime_s: Mapping[str, float] = field(default_factory=lambda: _frozen({}))
    beyond_grid: Mapping[str, BeyondGrid] = field(default_factory=lambda: _frozen({}))
    optimizer: OptimizerRun | None = None
    pre_plan: tuple[str, Mapping[str, Mapping[str, float]]] | None = None  # folder, structures

    @property
    def goals_met(self) -> bool:
        return all(g.met for g in self.goals)

    @property
    def n_goals_missed(self) -> int:
        return sum(not g.met for g in self.goals)

    @property
    def objective(self) -> float:
        """The optimizer's objective (NaN for post-implant dosimetry)."""
        return self.optimizer.objective if self.optimizer is not None else math.nan

    def target_metrics(self) -> Mapping[str, float]:
        return self.structures[self.target]

    def to_json(self) -> dict[str, Any]:
        """metrics.json: JSON-safe (NaN and infinity as null), keys as in the module doc."""
        data: dict[str, Any] = {
            "prescription_gy": self.prescription_gy,
            "target": self.target,
            "structures": _structures_json(self.structures),
            "indices": {k: _json_number(v) for k, v in self.indices.items()},
            "goals": [g.to_json() for g in self.goals],
            "n_needles": self.n_needles,
            "n_seeds": self.n_seeds,
            "method": self.method,
            "source": {"model": self.source_model, "air_kerma_strength_u": self.strength_u},
            "total_strength_u": self.total_strength_u,
            "beyond_grid": {k: b.to_json() for k, b in self.beyond_grid.items()},
            "notes": list(self.notes),
            "runtime_s": dict(self.runtime_s),
        }
        if self.optimizer is not None:
            data.update(self.optimizer.to_json())
        if self.pre_plan is not None:
            folder, structures = self.pre_plan
            data["pre_plan"] = {"folder": folder, "structures": _structures_json(structures)}
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "metrics.json") -> PlanMetrics:
        """Read metrics.json content back; a file of another shape is a ``SeedoptError``
        naming the key."""
        d = _mapping(data, where)
        structures = _structures(d, "structures", where)
        target = _text(d, "target", where)
        if target not in structures:
            raise SeedoptError(f"{where}: target {target!r} is not among its structures")
        for name, m in structures.items():
            needed = STRUCTURE_KEYS + (TARGET_KEYS if name == target else ())
            if missing := [k for k in needed if k not in m]:
                raise SeedoptError(f"{where}: structures.{name}: {missing[0]} is missing")
        goals = _list(d, "goals", where)
        source = d.get("source")
        source = _mapping(source, f"{where}: source") if source is not None else {}
        optimizer = None
        if "objective" in d:
            optimizer = OptimizerRun(
                _number(d, "objective", where),
                str(d.get("optimizer_message", "")),
                str(d.get("dose_matrix_dtype", "")),
                bool(d.get("dose_matrix_cached", False)),
                _count(d, "n_candidate_seeds", where),
                _count(d, "n_candidate_needles", where),
                _counts(d.get("candidate_drops", {}), f"{where}: candidate_drops"),
            )
        runtime = _mapping(d.get("runtime_s", {}), f"{where}: runtime_s")
        pre = None
        if d.get("pre_plan") is not None:
            p = _mapping(d["pre_plan"], f"{where}: pre_plan")
            pre = (_text(p, "folder", f"{where}: pre_plan"), _structures(p, "structures", where))
        return cls(
            prescription_gy=_number(d, "prescription_gy", where, allow_null=False),
            target=target,
            structures=structures,
            indices=_frozen(
                {
                    k: _number(_mapping(d.get("indices"), f"{where}: indices"), k, where)
                    for k in ("CI", "EI", "HI")
                }
            ),
            goals=tuple(Goal.from_json(g, f"{where}: goals.{k}") for k, g in enumerate(goals)),
            n_seeds=_count(d, "n_seeds", where),
            n_needles=_count(d, "n_needles", where),
            method=_text(d, "method", where),
            total_strength_u=_number(d, "total_strength_u", where),
            source_model=str(source.get("model", "")),
            strength_u=_number(source, "air_kerma_strength_u", f"{where}: source")
            if "air_kerma_strength_u" in source
            else math.nan,
            notes=tuple(str(n) for n in (_list(d, "notes", where) if "notes" in d else [])),
            runtime_s=_frozen(
                {str(k): _number(runtime, k, f"{where}: runtime_s") for k in runtime}
            ),
            beyond_grid=_frozen(
                {
                    str(k): BeyondGrid.from_json(v, f"{where}: beyond_grid.{k}")
                    for k, v in _mapping(d.get("beyond_grid", {}), f"{where}: beyond_grid").items()
                }
            ),
            optimizer=optimizer,
            pre_plan=pre,
        )


def _structures_json(structures: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    return {n: {k: _json_number(v) for k, v in m.items()} for n, m in structures.items()}


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SeedoptError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _list(d: Mapping[str, Any], key: str, where: str) -> list[Any]:
    if not isinstance(d.get(key), list):
        raise SeedoptError(f"{where}: {key} must be a list (found {type(d.get(key)).__name__})")
    return d[key]


def _text(d: Mapping[str, Any], key: str, where: str) -> str:
    if not isinstance(d.get(key), str):
        raise SeedoptError(f"{where}: {key} must be text (found {d.get(key)!r})")
    return d[key]


def _number(d: Mapping[str, Any], key: str, where: str, *, allow_null: bool = True) -> float:
    """A number of ``d`` (null -> NaN where allowed); missing keys and other types refused."""
    if key not in d:
        raise SeedoptError(f"{where}: {key} is missing")
    v = d[key]
    if v is None and allow_null:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise SeedoptError(f"{where}: {key} must be a number (found {v!r})")
    return float(v)


def _count(d: Mapping[str, Any], key: str, where: str) -> int:
    """A whole number >= 0 of ``d``."""
    v = _number(d, key, where, allow_null=False)
    if not (math.isfinite(v) and v >= 0 and v == int(v)):
        raise SeedoptError(f"{where}: {key} must be a whole number >= 0 (found {v!r})")
    return int(v)


def _counts(value: Any, where: str) -> Mapping[str, int]:
    """A mapping of names to whole numbers >= 0."""
    d = _mapping(value, where)
    return _frozen({str(k): _count(d, k, where) for k in d})


def _structures(d: Mapping[str, Any], key: str, where: str) -> Mapping[str, Mapping[str, float]]:
    if key not in d:
        raise SeedoptError(f"{where}: {key} is missing")
    structures = _mapping(d.get(key), f"{where}: {key}")
    return _frozen(
        {
            str(name): _frozen(
                {
                    k: _number(m, k, f"{where}: {key}.{name}")
                    for k in _mapping(m, f"{where}: {key}.{name}")
                }
            )
            for name, m in structures.items()
        }
    )


def structure_metrics(
    case: Case, structures: dict[str, Structure], rx_gy: float
) -> dict[str, dict[str, float]]:
    """Per structure: Dmax, D0.1cc, D1cc, D2cc, Dmean, volume; for the target also D90, D100
    and V90, V100, V150, V200 (percent)."""
    out: dict[str, dict[str, float]] = {}
    for name, s in structures.items():
        m = {"volume_cc": s.total_cc, "Dmax_gy": s.max_gy(), "Dmean_gy": s.mean_gy()}
        for label, cc in DCC_METRICS.items():
            m[f"{label}_gy"] = s.dose_at_volume_cc(cc)
        if name == case.target:
            m.update(D90_gy=s.dose_at_percent(90), D100_gy=s.dose_at_percent(100))
            for pct in (90, 100, 150, 200):
                m[f"V{pct}_pct"] = s.percent_at_dose(rx_gy * pct / 100)
        out[name] = m
    return out


def _outside_text(b: BeyondGrid) -> str:
    outside = "a part without bound" if math.isinf(b.outside_cc) else f"{b.outside_cc:.1f} cc"
    return f"{b.inside_cc:.1f} cc inside the dose grid and {outside} outside it"


def limit_goal(
    lim: HardLimit,
    value: float,
    beyond: BeyondGrid | None,
    grown: Callable[[], GrownValue],
    notes: list[str],
) -> Goal:
    """The goal of a hard limit whose metric is ``value`` on the structure's part inside the
    grid. Where the structure extends beyond the grid (``beyond``) the dose outside is not
    computed, only bounded: met when value and bound keep the limit, missed when the value
    alone exceeds it; otherwise the metric is evaluated on the grid grown over the structure
    (``grown``, ``beyond_grid.evaluate_grown``), and the goal is not evaluated if even that
    cannot decide. ``notes`` says what was assumed whenever the bound is above the value."""
    name = f"{lim.structure} {lim.metric} <= {lim.max_gy:g} Gy"
    if beyond is None or not math.isfinite(value) or value > lim.max_gy * (1 + GOAL_RTOL):
        return Goal(name, value, lim.max_gy)
    bound = beyond.dose_outside_max_gy
    where = f"{lim.structure}: {_outside_text(beyond)}"
    if bound <= lim.max_gy * (1 + GOAL_RTOL):
        if bound > value:
            notes.append(
                f"{where}; the dose outside is not computed but is at most {bound:.1f} Gy (a "
                f"bound), so the {lim.metric} of {value:.1f} Gy is the part inside's and the "
                f"{lim.max_gy:g} Gy limit holds for the whole"
            )
        return Goal(name, value, lim.max_gy)
    g = grown()
    if g.value_gy > lim.max_gy * (1 + GOAL_RTOL) or g.dose_outside_max_gy <= lim.max_gy:
        notes.append(
            f"{where}; the dose outside may reach {bound:.1f} Gy (a bound), so {lim.metric} "
            f"was evaluated on the grid grown {g.grown_mm:g} mm over it ({g.inside_cc:.1f} cc): "
            f"{g.value_gy:.1f} Gy, the dose beyond at most {g.dose_outside_max_gy:.1f} Gy (the "
            f"optimizer saw the {value:.1f} Gy of the part inside the plan's grid)"
        )
        return Goal(name, g.value_gy, lim.max_gy)
    reason = (
        f"{where}; the dose outside is not computed and, even beyond the grid grown "
        f"{g.grown_mm:g} mm over it, may reach {g.dose_outside_max_gy:.1f} Gy (a bound) > "
        f"{lim.max_gy:g} Gy: extend grid.min_mm / grid.max_mm over {lim.structure}"
    )
    notes.append(f"{lim.structure} {lim.metric} not evaluated: {reason}")
    return Goal(name, value, lim.max_gy, not_evaluated=reason)


QUANTITY_NAMES = {"eqd2_implant": "implant EQD2", "eqd2_cumulative": "cumulative EQD2"}


def eqd2_goal(
    spec: PlanSpec,
    case: Case,
    source: Source,
    lim: HardLimit,
    dose_gy: np.ndarray,
    per: dict[str, dict[str, float]],
    beyond: Mapping[str, BeyondGrid],
    notes: list[str],
) -> Goal:
    """The goal of an EQD2 limit, and its metric of the implant's EQD2, the prior's EQD2 and
    their per-voxel sum (``<metric>_eqd2_{implant,prior,cumulative}_gy``) in ``per``."""
    name = f"{lim.structure} {lim.metric} <= {lim.max_gy:g} Gy ({QUANTITY_NAMES[lim.quantity]})"
    mask = case.masks[lim.structure]
    key = f"{lim.metric}_gy"
    implant = dataclasses.replace(lim, quantity="eqd2_implant")
    volumes = {"implant": limited_volume(spec, case, source, implant, dose_gy)}
    if spec.prior is not None:
        volumes["cumulative"] = limited_volume(
            spec, case, source, dataclasses.replace(lim, quantity="eqd2_cumulative"), dose_gy
        )
        volumes["prior"] = volumes["cumulative"] - volumes["implant"]
    for kind, volume in volumes.items():
        metrics = structure_metrics(
            case, {lim.structure: Structure.from_mask(volume, mask, case.grid.voxel_cc)}, 0.0
        )
        per[lim.structure][f"{lim.metric}_eqd2_{kind}_gy"] = metrics[lim.structure][key]
    value = per[lim.structure][f"{lim.metric}_eqd2_{lim.quantity.removeprefix('eqd2_')}_gy"]
    part = beyond.get(lim.structure)
    if part is not None:
        bound = outside_eqd2_bound_gy(spec, case, source, lim, part.dose_outside_max_gy)
        where = f"{lim.structure}: {_outside_text(part)}"
        if bound > lim.max_gy * (1 + GOAL_RTOL):
            return Goal(
                name,
                value,
                lim.max_gy,
                not_evaluated=f"{where}; beyond the grid its {QUANTITY_NAMES[lim.quantity]} "
                f"may reach {bound:.1f} Gy (a bound) > {lim.max_gy:g} Gy: extend grid.min_mm / "
                f"grid.max_mm over {lim.structure}",
            )
        notes.append(
            f"{where}; beyond the grid its {QUANTITY_NAMES[lim.quantity]} is at most "
            f"{bound:.1f} Gy (the implant's dose bound there, and the prior RT Dose's highest "
            "dose beyond the grid, taken as 0 beyond its own), so the limit holds for the whole"
        )
    return Goal(name, value, lim.max_gy)


def evaluate(
    spec: PlanSpec,
    case: Case,
    images: CaseImages | None,
    dose_gy: np.ndarray,
    seeds_mm: np.ndarray,
    seed_axes: np.ndarray,
    n_needles: int,
    source: Source,
    method: str,
    outside: Mapping[str, OutsidePart | None],
) -> PlanMetrics:
    """Every metric and goal of the dose ``dose_gy`` (Gy, grid shape) of seeds of ``source``
    at ``seeds_mm`` (along ``seed_axes``) on ``case`` (its DICOM ``images`` or None); no
    timings, notes only about the goals. ``outside``: every hard-limited structure's part
    beyond the grid (``beyond_grid.outside_parts``)."""
    rx = physical_prescription_gy(spec, case, source)
    structures = {
        name: Structure.from_mask(dose_gy, mask, case.grid.voxel_cc)
        for name, mask in case.masks.items()
    }
    per = structure_metrics(case, structures, rx)
    for name, wanted in spec.metrics.items():
        for metric in wanted:
            per[name][requested_metric_key(metric)] = requested_metric(metric, structures[name], rx)
    idx = conformity_indices(structures[case.target], structures[case.body], rx)
    d90 = per[case.target]["D90_gy"]
    rx_name = "prescription"
    if spec.prescription_quantity == "eqd2":
        rx_name += f" (EQD2 {spec.prescription_gy:g} Gy = {rx:.1f} Gy physical)"
    goals = [Goal(f"{case.target} D90 >= {rx_name}", d90, rx, at_least=True)]
    limits = spec.hard_limits(case.skin)
    if missing := {lim.structure for lim in limits} - set(outside):
        raise ValueError(f"evaluate: outside_parts not given for {sorted(missing)}")
    beyond: dict[str, BeyondGrid] = {}
    for name, part in outside.items():
        if part is not None:
            beyond[name] = BeyondGrid(
                structures[name].total_cc,
                part.outside_cc,
                dose_outside_bound_gy(part, seeds_mm, source, spec.dose.formalism),
            )
    notes: list[str] = []
    for lim in limits:
        if lim.quantity != "physical":
            goals.append(eqd2_goal(spec, case, source, lim, dose_gy, per, beyond, notes))
            continue
        value = per[lim.structure][f"{lim.metric}_gy"]
        grown = functools.partial(
            evaluate_grown, spec, case, images, lim, seeds_mm, seed_axes, source
        )
        goals.append(limit_goal(lim, value, beyond.get(lim.structure), grown, notes))
    n = len(seeds_mm)
    return PlanMetrics(
        prescription_gy=rx,
        target=case.target,
        structures=_frozen({k: _frozen(v) for k, v in per.items()}),
        indices=_frozen({"CI": idx.CI, "EI": idx.EI, "HI": idx.HI}),
        goals=tuple(goals),
        n_seeds=n,
        n_needles=n_needles,
        method=method,
        total_strength_u=n * source.air_kerma_strength_u,
        source_model=source.model.model_id,
        strength_u=source.air_kerma_strength_u,
        notes=tuple(notes),
        beyond_grid=_frozen(beyond),
    )
