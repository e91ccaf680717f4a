"""Plans under needle-placement errors: sampled scenarios of where the needles really go, the
dose of each (TG-43, every scenario's seeds in one batched matrix build), and the spread of
the plan's metrics (issue 19; docs/robustness.md).

A scenario moves every needle independently. The tip moves by a 3D vector (a random
direction; its length gamma-distributed with the model's mean and standard deviation). The
needle tilts about its tip by an angle of the same kind about a random axis perpendicular to
it. Each seed slides along the tilted needle by a normal error of the seed-spacing SD. With
every error zero a scenario's seeds are the plan's exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SeedoptError


@dataclass(frozen=True)
class ErrorModel:
    """Per-needle insertion errors: the tip's displacement (mm) and the needle's angle (deg),
    each as the mean and standard deviation of its magnitude, and each seed's independent
    error along the needle (SD, mm)."""

    tip_mean_mm: float
    tip_sd_mm: float
    angle_mean_deg: float
    angle_sd_deg: float
    spacing_sd_mm: float

    def __post_init__(self) -> None:
        for name in ("tip_mean_mm", "tip_sd_mm", "angle_mean_deg", "angle_sd_deg", "spacing_sd_mm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SeedoptError(f"{name} must be a finite number >= 0, got {value:g}")
        if (self.tip_sd_mm > 0 and self.tip_mean_mm == 0) or (
            self.angle_sd_deg > 0 and self.angle_mean_deg == 0
        ):
            raise SeedoptError("an error magnitude with a spread needs a positive mean")


ERROR_MODELS = {
    "template-3d-printed": ErrorModel(4.4, 2.9, 2.8, 1.7, 0.5),
    "coplanar-template": ErrorModel(5.5, 3.5, 4.0, 2.5, 0.5),
    "freehand": ErrorModel(7.0, 4.5, 6.0, 3.5, 1.0),
}
"""Default error models by approach (docs/robustness.md gives their sources and which are
assumptions)."""


def gamma_magnitudes(rng: np.random.Generator, mean: float, sd: float, size: Any) -> np.ndarray:
    """Non-negative magnitudes with the given mean and standard deviation: gamma with shape
    (mean / sd)^2 and scale sd^2 / mean; exactly ``mean`` when ``sd`` is 0."""
    if sd == 0:
        return np.full(size, float(mean))
    return rng.gamma((mean / sd) ** 2, sd * sd / mean, size)


def unit_vectors(rng: np.random.Generator, size: Any) -> np.ndarray:
    """Directions uniform on the sphere, shape ``size`` + (3,)."""
    v = rng.normal(size=(*np.atleast_1d(size), 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def rotation_minus_identity(axis: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """R - I for rotations by ``angle_rad`` about unit ``axis`` (..., 3) (Rodrigues:
    sin(a) K + (1 - cos(a)) K^2), exactly 0 for a zero angle."""
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    K = np.stack(
        [np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)],
        -2,
    )
    s, c = np.sin(angle_rad)[..., None, None], (1.0 - np.cos(angle_rad))[..., None, None]
    return s * K + c * (K @ K)


def moved_lines(
    tips_mm: np.ndarray,
    directions: np.ndarray,
    depths_mm: np.ndarray,
    shift_mm: np.ndarray,
    tilt_axis: np.ndarray,
    tilt_rad: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Entries and tips (n, 3) mm of needles (tips, unit directions (n, 3), lengths (n,)) after
    the errors ``needle_errors`` draws: each tip shifted by ``shift_mm``, each needle tilted
    about its tip by ``tilt_rad`` about ``tilt_axis``, its length kept."""
    d = directions + np.einsum(
        "nij,nj->ni", rotation_minus_identity(tilt_axis, tilt_rad), directions
    )
    tips = tips_mm + shift_mm
    return tips - np.asarray(depths_mm, float)[:, None] * d, tips


def _point(value: Any, where: str) -> np.ndarray:
    """A point (x, y, z, mm) of plan.json, or one line saying which entry is not one."""
    try:
        p = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        p = np.empty(0)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise SeedoptError(f"plan.json: {where}: expected three finite numbers (mm), got {value!r}")
    return p


@dataclass(frozen=True)
class Implant:
    """The plan's seeds and the needles they ride on (patient coordinates, mm).

    Attributes
    ----------
    seeds_mm : (s, 3) seed centres; axes : (s, 3) unit seed axes (along their needle).
    needle_of : (s,) index of each seed's needle; tips_mm : (n, 3) needle tips;
    directions : (n, 3) unit needle directions (entry to tip).
    """

    seeds_mm: np.ndarray
    axes: np.ndarray
    needle_of: np.ndarray
    tips_mm: np.ndarray
    directions: np.ndarray

    @classmethod
    def from_plan_document(cls, doc: dict[str, Any]) -> Implant:
        """The implant of a plan.json document (its needles' entry, tip and seeds); a
        document of another shape is refused in one line naming the bad entry."""
        seeds, needle_of, tips, dirs = [], [], [], []
        for k, n in enumerate(doc["needles"]):
            if not isinstance(n, dict) or not isinstance(n.get("seeds_mm"), list):
                raise SeedoptError(f"plan.json: needles.{k}: expected entry_mm, tip_mm, seeds_mm")
            tip = _point(n.get("tip_mm"), f"needles.{k}.tip_mm")
            d = tip - _point(n.get("entry_mm"), f"needles.{k}.entry_mm")
            if not np.linalg.norm(d) > 0:
                raise SeedoptError(f"plan.json: needle {k} has its tip at its entry")
            tips.append(tip)
            dirs.append(d / np.linalg.norm(d))
            for j, p in enumerate(n["seeds_mm"]):
                seeds.append(_point(p, f"needles.{k}.seeds_mm.{j}"))
                needle_of.append(k)
        if not seeds:
            raise SeedoptError("plan.json: the plan loads no seed")
        directions = np.array(dirs)
        needle = np.array(needle_of)
        return cls(np.array(seeds), directions[needle], needle, np.array(tips), directions)

    @property
    def n_needles(self) -> int:
        return int(self.tips_mm.shape[0])

    def moved(
        self, shift_mm: np.ndarray, tilt_axis: np.ndarray, tilt_rad: np.ndarray, slide_mm: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Seed centres and axes after moving each needle: its tip by ``shift_mm`` (n, 3),
        tilted about its tip by ``tilt_rad`` (n,) about ``tilt_axis`` (n, 3), each seed slid
        along its tilted needle by ``slide_mm`` (s,). Zero errors give the seeds exactly."""
        k = self.needle_of
        R_I = rotation_minus_identity(tilt_axis, tilt_rad)[k]  # (s, 3, 3)
        offset = self.seeds_mm - self.tips_mm[k]
        axes = self.axes + np.einsum("sij,sj->si", R_I, self.axes)  # rotated: still unit
        tilt = np.einsum("sij,sj->si", R_I, offset)
        seeds = self.seeds_mm + shift_mm[k] + tilt + np.asarray(slide_mm)[..., None] * axes
        return seeds, axes


def sample_scenarios(
    implant: Implant, model: ErrorModel, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenarios of ``implant`` under ``model``: seed centres (n, s, 3) and axes
    (n, s, 3); the same ``seed`` gives the same scenarios."""
    if n < 1:
        raise SeedoptError(f"scenarios must be a whole number >= 1, got {n}")
    rng = np.random.default_rng(seed)
    s = implant.seeds_mm.shape[0]
    seeds = np.empty((n, s, 3))
    axes = np.empty((n, s, 3))
    for i in range(n):
        seeds[i], axes[i] = implant.moved(*needle_errors(rng, implant.directions, model, s))
    return seeds, axes


def needle_errors(
    rng: np.random.Generator, directions: np.ndarray, model: ErrorModel, n_seeds: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One scenario's errors of needles along ``directions`` (n, 3) under ``model``: tip
    shifts (n, 3) mm in a uniform direction, tilt axes (n, 3) perpendicular to each needle,
    tilt angles (n,) rad, and each of ``n_seeds`` seeds' slide along its needle (mm)."""
    m = directions.shape[0]
    shift = (
        unit_vectors(rng, m) * gamma_magnitudes(rng, model.tip_mean_mm, model.tip_sd_mm, m)[:, None]
    )
    angle = np.radians(gamma_magnitudes(rng, model.angle_mean_deg, model.angle_sd_deg, m))
    axis = np.cross(directions, unit_vectors(rng, m))  # perpendicular to the needle
    axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-12)
    slide = (
        rng.normal(0.0, model.spacing_sd_mm, n_seeds) if model.spacing_sd_mm else np.zeros(n_seeds)
    )
    return shift, axis, angle, slide


def scenario_doses(
    points_mm: np.ndarray,
    seeds_mm: np.ndarray,
    axes: np.ndarray,
    source: Any,
    *,
    formalism: str = "2d",
    backend: Any = None,
    max_entries: int = 40_000_000,
) -> np.ndarray:
    """The total implant dose (Gy) of each scenario at ``points_mm``: (n scenarios, P).

    ``seeds_mm`` and ``axes`` are (n, s, 3); the TG-43 matrix of a block of scenarios' seeds
    is built at once (at most ``max_entries`` entries) and each scenario's columns summed in
    float64."""
    from .dose import influence_matrix

    n, s = seeds_mm.shape[:2]
    block = max(1, max_entries // max(1, len(points_mm) * s))
    out = np.empty((n, len(points_mm)))
    for first in range(0, n, block):
        last = min(n, first + block)
        A = influence_matrix(
            points_mm,
            seeds_mm[first:last].reshape(-1, 3),
            axes[first:last].reshape(-1, 3),
            source,
            formalism=formalism,
            backend=backend,
        )
        A = np.asarray(backend.to_numpy(A) if backend is not None else A, dtype=np.float64)
        out[first:last] = A.reshape(len(points_mm), last - first, s).sum(axis=2).T
    return out


APPROACH_MODEL = {"template": "coplanar-template", "freehand": "freehand"}
"""The error model a plan's approach gets by default."""
PERCENTILES = (5, 50, 95)


@dataclass(frozen=True)
class Robustness:
    """The metrics of every scenario and what they say about the plan.

    Attributes
    ----------
    model : the error model; model_name : its name (or "custom").
    values : metric name -> (n,) its value in each scenario (Gy, or % for V100 / V150).
    goals : (metric name, limit, at_least) of the D90 goal and every hard limit.
    target_doses : (n, P) each scenario's dose at the target's points (for the DVH band);
        planned_target_doses (P,) the plan's.
    nominal : metric name -> its value for the plan as planned.
    linear : every goal's metric is proportional to the seeds' strength (physical dose, no
        prior dose, no EQD2): what ``strength_factor`` needs.
    """

    model: ErrorModel
    model_name: str
    values: dict[str, np.ndarray]
    goals: list[tuple[str, float, bool]]
    target_doses: np.ndarray
    planned_target_doses: np.ndarray
    nominal: dict[str, float]
    seconds: float
    linear: bool = True

    def holds(self, name: str, limit: float, at_least: bool) -> np.ndarray:
        v = self.values[name]
        return v >= limit if at_least else v <= limit

    def all_hold(self) -> np.ndarray:
        ok = np.ones(len(self.target_doses), bool)
        for name, limit, at_least in self.goals:
            ok &= self.holds(name, limit, at_least)
        return ok

    def strength_factor(self, probability: float) -> float | None:
        """The least factor k on every seed's strength with which every goal holds in at
        least ``probability`` (0..1] of the scenarios; None where no k does (the limits bind
        first) or where a goal is not proportional to the strength (``linear`` False).

        Dose is linear in the strength (TG-43: D = S_K x Lambda x ...), so at factor k each
        scenario's D90 and each limited metric (Dmax, Dxcc, Dmean) are k times their values
        here: scenario i holds at k when Rx / D90_i <= k <= min_j L_j / M_ij. The price of
        robustness by uniform dose scaling, the reference a robust plan is measured against.
        """
        if not (0 < probability <= 1):
            raise ValueError(f"probability must be in (0, 1], got {probability:g}")
        if not self.linear:
            return None
        n = len(self.target_doses)
        lo, hi = np.zeros(n), np.full(n, np.inf)
        for name, limit, at_least in self.goals:
            v = np.asarray(self.values[name], dtype=np.float64)
            with np.errstate(divide="ignore"):
                if at_least:
                    lo = np.maximum(lo, np.where(v > 0, limit / v, np.inf))
                else:
                    hi = np.minimum(hi, np.where(v > 0, limit / v, np.inf))
        need = math.ceil(probability * n - 1e-9)
        for k in np.unique(lo[np.isfinite(lo)]):  # the count changes only where k meets a lo_i
            if int(((lo <= k) & (k <= hi)).sum()) >= need:
                return float(k)
        return None

    def rows(self) -> list[dict[str, float]]:
        """One row per scenario: its number, every metric, whether every goal holds."""
        ok = self.all_hold()
        return [
            {
                "scenario": i + 1,
                **{k: float(v[i]) for k, v in self.values.items()},
                "all_goals": bool(ok[i]),
            }
            for i in range(len(ok))
        ]

    def summary(self) -> dict[str, Any]:
        """Percentiles (5, 50, 95) of every metric, the probability that each goal holds and
        that every goal holds."""
        return {
            "scenarios": len(self.target_doses),
            "model": {"name": self.model_name, **self.model.__dict__},
            "percentiles": {
                k: dict(
                    zip(map(str, PERCENTILES), np.percentile(v, PERCENTILES).tolist(), strict=True)
                )
                for k, v in self.values.items()
            },
            "nominal": self.nominal,
            "probability": {
                f"{name} {'>=' if at_least else '<='} {limit:g}": float(
                    self.holds(name, limit, at_least).mean()
                )
                for name, limit, at_least in self.goals
            },
            "probability_all_goals": float(self.all_hold().mean()),
            "strength_factor_90": self.strength_factor(0.9),
            "seconds": self.seconds,
        }


def evaluate_robustness(
    spec: Any,
    case: Any,
    source: Any,
    implant: Implant,
    model: ErrorModel,
    *,
    model_name: str,
    scenarios: int,
    seed: int,
    backend: Any = None,
) -> Robustness:
    """The plan's metrics in ``scenarios`` sampled placements: target D90 (Gy), V100 and V150
    (%), and every hard limit's metric (in its quantity, EQD2 included) on the voxels of the
    structures (equal volumes, the optimizer's view of the case)."""
    import time

    from .optimizer.objective import dose_at_percent, limit_value
    from .pipeline import hard_limit_rows
    from .reirradiation import physical_prescription_gy, problem_eqd2

    t0 = time.perf_counter()
    limits = spec.hard_limits(case.skin)
    rows = hard_limit_rows(case, limits)
    names = list(rows)
    points = np.concatenate([rows[n] for n in names])
    bounds = np.cumsum([0] + [len(rows[n]) for n in names])
    at = {n: slice(bounds[k], bounds[k + 1]) for k, n in enumerate(names)}
    implant_eqd2, prior_eqd2 = problem_eqd2(spec, case, source, limits)
    rx = physical_prescription_gy(spec, case, source)
    seeds, axes = sample_scenarios(implant, model, scenarios, seed)
    seeds = np.concatenate([implant.seeds_mm[None], seeds])  # scenario 0: the plan
    axes = np.concatenate([implant.axes[None], axes])
    doses = scenario_doses(
        points, seeds, axes, source, formalism=spec.dose.formalism, backend=backend
    )
    d_t = doses[:, at[case.target]]
    values: dict[str, np.ndarray] = {
        "D90_gy": dose_at_percent(d_t, 90.0),
        "V100_pct": 100.0 * (d_t >= rx).mean(axis=1),
        "V150_pct": 100.0 * (d_t >= 1.5 * rx).mean(axis=1),
    }
    goals: list[tuple[str, float, bool]] = [("D90_gy", rx, True)]
    for lim in limits:
        d = doses[:, at[lim.structure]]
        if lim.quantity != "physical":
            d = implant_eqd2[lim.structure].eqd2(d)
            if lim.quantity == "eqd2_cumulative":
                d = d + prior_eqd2[lim.structure]
        suffix = "" if lim.quantity == "physical" else f" {lim.quantity}"
        name = f"{lim.structure} {lim.metric}{suffix}"
        values[name] = np.asarray(limit_value(d, lim, case.grid.voxel_cc), dtype=np.float64)
        goals.append((name, float(lim.max_gy), False))
    nominal = {k: float(v[0]) for k, v in values.items()}
    linear = all(lim.quantity == "physical" for lim in limits)
    return Robustness(
        model,
        model_name,
        {k: v[1:] for k, v in values.items()},
        goals,
        d_t[1:],
        d_t[0],
        nominal,
        time.perf_counter() - t0,
        linear,
    )
