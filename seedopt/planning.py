"""The planning pipeline: case -> candidates -> dose matrix -> problem -> optimizer -> plan,
dose and metrics. ``plan_case`` is what ``seedopt plan`` runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Backend, out_of_memory_errors
from .candidates import Candidates, build_candidates
from .case import Case
from .dose import dose_at_points
from .dose.cache import cached_influence_matrix
from .dose.influence import choose_storage
from .errors import SeedoptError
from .metrics import Structure, conformity_indices, requested_metric, requested_metric_key
from .optimizer import HardLimit, OptimizeResult, PlanProblem, SoftWeights, get_optimizer
from .optimizer.base import CandidateGeometry
from .plan_config import HardLimitSpec, PlanSpec
from .sources import Source

DCC_METRICS = {"D0.1cc": 0.1, "D1cc": 1.0, "D2cc": 2.0}


@dataclass
class Plan:
    """A finished plan: the loaded seeds and needles, their dose, metrics and timings."""

    spec: PlanSpec
    case: Case
    candidates: Candidates
    source: Source
    result: OptimizeResult
    dose_gy: np.ndarray  # grid shape (z, y, x), total dose of the permanent implant
    metrics: dict[str, Any]
    runtime_s: dict[str, float] = field(default_factory=dict)

    @property
    def loaded(self) -> np.ndarray:
        return np.asarray(self.result.x, dtype=bool)

    @property
    def seeds_mm(self) -> np.ndarray:
        return self.candidates.seeds_mm[self.loaded]

    @property
    def seed_axes(self) -> np.ndarray:
        return self.candidates.axes()[self.loaded]

    def used_needles(self) -> list[int]:
        return sorted(set(self.candidates.seed_needle[self.loaded].tolist()))

    @property
    def goals_met(self) -> bool:
        return all(g["met"] for g in self.metrics["goals"])


def _rows(case: Case, limits: list[HardLimitSpec]) -> dict[str, np.ndarray]:
    """Dose points (mm) of the target and of every structure with a hard limit."""
    rows = {case.target: case.grid.points_mm(case.masks[case.target])}
    for lim in limits:
        if not case.masks[lim.structure].any():
            raise SeedoptError(
                f"hard limit {lim.structure} {lim.metric} <= {lim.max_gy:g} Gy: "
                f"{lim.structure} has no voxel inside the dose grid; extend grid.min_mm / "
                "grid.max_mm to cover it, or leave the limit out of goals.hard"
            )
        rows.setdefault(lim.structure, case.grid.points_mm(case.masks[lim.structure]))
    return rows


def candidate_geometry(case: Case, candidates: Candidates) -> CandidateGeometry:
    """What the clinical baseline needs: needle lattice, seed depths inside the target."""
    from scipy import ndimage

    sx, sy, sz = case.grid.spacing_mm
    depth = ndimage.distance_transform_edt(case.masks[case.target], sampling=(sz, sy, sx))
    idx = case.grid.mm_to_index(candidates.seeds_mm)
    inside = case.grid.contains_index(idx)
    seed_depth = np.zeros(candidates.n_seeds)
    seed_depth[inside] = depth[tuple(idx[inside].T)] - min(case.grid.spacing_mm) / 2
    order = np.zeros(candidates.n_seeds, dtype=int)
    points = np.zeros((candidates.n_needles, 3))
    for k, needle in enumerate(candidates.needles):
        on = np.flatnonzero(candidates.seed_needle == k)
        from_tip = np.linalg.norm(candidates.seeds_mm[on] - needle.tip_mm, axis=1)
        order[on[np.argsort(from_tip, kind="stable")]] = np.arange(on.size)
        points[k] = candidates.seeds_mm[on].mean(axis=0) if on.size else needle.tip_mm
    return CandidateGeometry(
        [n.hole for n in candidates.needles],
        points,
        np.array([n.direction for n in candidates.needles]).reshape(-1, 3),
        seed_depth,
        order,
        candidates.seeds_mm,
    )


def build_problem(
    spec: PlanSpec,
    case: Case,
    candidates: Candidates,
    source: Source,
    backend: Backend,
    cache_dir: Path | None,
) -> tuple[PlanProblem, bool]:
    """The optimizer's problem on the case's voxels; True when the matrix came from the cache."""
    limits = spec.hard_limits(case.skin)
    rows = _rows(case, limits)
    names = list(rows)
    points = np.concatenate([rows[n] for n in names])
    storage = choose_storage(backend, len(points), candidates.n_seeds, spec.dose.storage)
    A, cached = cached_influence_matrix(
        points,
        candidates.seeds_mm,
        candidates.axes(),
        source,
        formalism=spec.dose.formalism,
        storage=storage,
        backend=backend,
        cache_dir=cache_dir,
    )  # stays on the backend's device, in its storage dtype
    bounds = np.cumsum([0] + [len(rows[n]) for n in names])
    blocks = {n: A[bounds[k] : bounds[k + 1]] for k, n in enumerate(names)}
    w = spec.goals.weights
    problem = PlanProblem(
        A_target=blocks[case.target],
        A_oar={n: blocks[n] for n in names if n != case.target},
        voxel_cc=case.grid.voxel_cc,
        prescription_gy=spec.prescription_gy,
        hard=tuple(HardLimit(lim.structure, lim.metric, lim.max_gy) for lim in limits),
        seed_needle=candidates.seed_needle,
        n_needles=candidates.n_needles,
        soft=SoftWeights(**w.model_dump()),
        max_seeds=spec.goals.max_seeds,
        max_needles=spec.goals.max_needles,
        geometry=candidate_geometry(case, candidates),
    )
    return problem, cached


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


def _goal(name: str, value: float, limit: float, met: bool, miss_gy: float) -> dict[str, Any]:
    """One entry of metrics.json's goals; ``miss_gy`` is 0 when met."""
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "met": met,
        "miss": miss_gy,
        "miss_pct": 100 * miss_gy / limit,
    }


def evaluate(
    spec: PlanSpec,
    case: Case,
    dose_gy: np.ndarray,
    limits: list[HardLimitSpec],
    n_seeds: int,
    n_needles: int,
) -> dict[str, Any]:
    """metrics.json content (without timings)."""
    rx = spec.prescription_gy
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
    goals = [
        _goal(
            f"{case.target} D90 >= prescription",
            d90,
            rx,
            bool(d90 >= rx * (1 - 1e-6)),
            max(0.0, rx - d90),
        )
    ]
    for lim in limits:
        value = per[lim.structure][f"{lim.metric}_gy"]
        ok = bool(np.isnan(value) or value <= lim.max_gy * (1 + 1e-6))
        goals.append(
            _goal(
                f"{lim.structure} {lim.metric} <= {lim.max_gy:g} Gy",
                value,
                lim.max_gy,
                ok,
                0.0 if ok else value - lim.max_gy,
            )
        )
    return {
        "prescription_gy": rx,
        "target": case.target,
        "structures": per,
        "indices": {"CI": idx.CI, "EI": idx.EI, "HI": idx.HI},
        "goals": goals,
        "n_needles": n_needles,
        "n_seeds": n_seeds,
    }


def implant_dose(
    case: Case,
    seeds_mm: np.ndarray,
    axes: np.ndarray,
    source: Source,
    spec: PlanSpec,
    backend: Backend,
) -> np.ndarray:
    """Total dose of the permanent implant (Gy) on the case's grid, shape ``grid.shape``."""
    return dose_at_points(
        case.grid.points_mm(),
        seeds_mm,
        axes,
        source,
        formalism=spec.dose.formalism,
        backend=backend,
    ).reshape(case.grid.shape)


def evaluate_implant(
    spec: PlanSpec,
    seeds_mm: np.ndarray,
    axes: np.ndarray,
    n_needles: int,
    source: Source,
    backend: Backend,
) -> tuple[Case, np.ndarray, dict[str, Any]]:
    """Post-implant dosimetry: the case, the dose of seeds actually placed (Gy) and every
    metric of ``evaluate`` (what ``seedopt evaluate`` runs)."""
    t = time.perf_counter()
    case = Case.from_spec(spec)
    times = {"case": time.perf_counter() - t}
    t = time.perf_counter()
    dose = implant_dose(case, seeds_mm, axes, source, spec, backend)
    n = len(seeds_mm)
    metrics = evaluate(spec, case, dose, spec.hard_limits(case.skin), n, n_needles)
    times["dose_and_metrics"] = time.perf_counter() - t
    metrics.update(
        method="post-implant",
        source={
            "model": source.model.model_id,
            "air_kerma_strength_u": source.air_kerma_strength_u,
        },
        total_strength_u=n * source.air_kerma_strength_u,
        runtime_s=times,
    )
    return case, dose.astype(np.float32), metrics


def plan_case(
    spec: PlanSpec,
    backend: Backend,
    *,
    method: str | None = None,
    seed: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> Plan:
    """Plan a case end to end on ``backend`` (``progress``: bars on a terminal)."""
    spec = spec.with_method(method)  # options checked against the method before any work
    options = spec.optimizer.options_for()
    times: dict[str, float] = {}
    t = time.perf_counter()
    case = Case.from_spec(spec)
    source = spec.source.build()
    times["case"] = time.perf_counter() - t
    t = time.perf_counter()
    candidates = build_candidates(case, spec.approach)
    times["candidates"] = time.perf_counter() - t
    t = time.perf_counter()
    problem, cached = build_problem(spec, case, candidates, source, backend, cache_dir)
    times["dose_matrix"] = time.perf_counter() - t
    t = time.perf_counter()
    optimizer = get_optimizer(spec.optimizer.method, progress)
    try:
        result = optimizer.solve(
            problem, rng=spec.optimizer.seed if seed is None else seed, options=options
        )
    except out_of_memory_errors(backend.xp) as exc:
        raise SeedoptError(
            f"out of memory on the {backend.name} while optimizing with {optimizer.name} "
            f"({problem.A_target.shape[0]} target points x {problem.n_candidates} candidates): "
            f"{exc}; use --backend cpu, fewer chains or a coarser grid"
        ) from None
    times["optimize"] = time.perf_counter() - t
    return finish_plan(spec, case, candidates, source, backend, problem, result, cached, times)


def finish_plan(
    spec: PlanSpec,
    case: Case,
    candidates: Candidates,
    source: Source,
    backend: Backend,
    problem: PlanProblem,
    result: OptimizeResult,
    cached: bool,
    times: dict[str, float],
) -> Plan:
    """The dose grid (Gy) and metrics of an optimizer's loading: the end of ``plan_case``,
    also used by studies that optimize many loadings of one problem (``escalate``)."""
    t = time.perf_counter()
    times = dict(times)
    scale = result.extra.get("strength_scale")
    if scale is not None:  # the clinical baseline scales the strength to reach D90 = Rx
        source = Source(source.model, source.air_kerma_strength_u * scale, source.half_life_d)
    loaded = np.asarray(result.x, dtype=bool)
    dose = implant_dose(
        case, candidates.seeds_mm[loaded], candidates.axes()[loaded], source, spec, backend
    )
    n_needles = len(set(candidates.seed_needle[loaded].tolist()))
    metrics = evaluate(spec, case, dose, spec.hard_limits(case.skin), int(loaded.sum()), n_needles)
    times["dose_and_metrics"] = time.perf_counter() - t
    notes = []
    if spec.dose.storage == "auto" and problem.A_target.dtype == np.float16:
        notes.append(
            f"the float32 dose matrix does not fit twice in the free memory of the "
            f"{backend.name}: stored in float16 (dose sums within 0.1 % of float32)"
        )
    metrics.update(
        notes=notes,
        dose_matrix_dtype=str(problem.A_target.dtype),
        method=result.method,
        objective=result.fun,
        optimizer_message=result.message,
        total_strength_u=float(loaded.sum()) * source.air_kerma_strength_u,
        dose_matrix_cached=cached,
        n_candidate_seeds=candidates.n_seeds,
        n_candidate_needles=candidates.n_needles,
        runtime_s=times,
    )
    return Plan(spec, case, candidates, source, result, dose.astype(np.float32), metrics, times)
