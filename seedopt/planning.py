"""The planning pipeline after its inputs are prepared (``seedopt.pipeline.prepare``):
optimizer -> loading -> dose grid -> metrics (``seedopt.plan_metrics``). ``plan_case`` is
what ``seedopt plan`` runs; ``evaluate_implant`` what ``seedopt evaluate`` runs."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .backend import Backend, out_of_memory_errors
from .candidates import Candidates, candidate_note
from .case import Case
from .dose import dose_at_points
from .errors import SeedoptError
from .optimizer import OptimizeResult, get_optimizer
from .pipeline import PreparedCase, limited_outside, load_case, prepare
from .plan_config import PlanSpec
from .plan_metrics import OptimizerRun, PlanMetrics, evaluate
from .sources import Source

if TYPE_CHECKING:
    from .dicom.images import CaseImages


@dataclass
class Plan:
    """A finished plan: the loaded seeds and needles, their dose, metrics and timings."""

    spec: PlanSpec
    case: Case
    images: CaseImages | None  # the case's DICOM images (None: a phantom), read once
    candidates: Candidates
    source: Source
    result: OptimizeResult
    dose_gy: np.ndarray  # grid shape (z, y, x), total dose of the permanent implant
    metrics: PlanMetrics
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
        return self.metrics.goals_met


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


@dataclass(frozen=True)
class ImplantEvaluation:
    """Post-implant dosimetry: the case, its DICOM images (None: a phantom), the dose of the
    seeds placed (Gy, grid shape, float32) and its metrics."""

    case: Case
    images: CaseImages | None
    dose_gy: np.ndarray
    metrics: PlanMetrics


def evaluate_implant(
    spec: PlanSpec,
    seeds_mm: np.ndarray,
    axes: np.ndarray,
    n_needles: int,
    source: Source,
    backend: Backend,
) -> ImplantEvaluation:
    """Every metric of the seeds actually placed (what ``seedopt evaluate`` runs)."""
    t = time.perf_counter()
    case, images = load_case(spec)
    times = {"case": time.perf_counter() - t}
    t = time.perf_counter()
    dose = implant_dose(case, seeds_mm, axes, source, spec, backend)
    outside = limited_outside(spec, case, images)
    metrics = evaluate(
        spec, case, images, dose, seeds_mm, axes, n_needles, source, "post-implant", outside
    )
    times["dose_and_metrics"] = time.perf_counter() - t
    metrics = dataclasses.replace(metrics, runtime_s=times)
    return ImplantEvaluation(case, images, dose.astype(np.float32), metrics)


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
    prepared = prepare(spec, backend, cache_dir)
    problem = prepared.problem
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
    times = {**prepared.runtime_s, "optimize": time.perf_counter() - t}
    return finish_plan(prepared, result, backend, times)


def finish_plan(
    prepared: PreparedCase,
    result: OptimizeResult,
    backend: Backend,
    times: Mapping[str, float],
    *,
    spec: PlanSpec | None = None,
    source: Source | None = None,
) -> Plan:
    """The dose grid (Gy) and metrics of an optimizer's loading: the end of ``plan_case``,
    also used by studies that optimize many loadings of one prepared case (``escalate``:
    ``spec`` and ``source`` of the level, default the prepared ones)."""
    t = time.perf_counter()
    times = dict(times)
    spec = spec or prepared.spec
    source = source or prepared.source
    case, candidates, problem = prepared.case, prepared.candidates, prepared.problem
    if result.strength_scale != 1.0:  # the clinical baseline scales the strength to D90 = Rx
        source = Source(
            source.model, source.air_kerma_strength_u * result.strength_scale, source.half_life_d
        )
    loaded = np.asarray(result.x, dtype=bool)
    seeds, axes = candidates.seeds_mm[loaded], candidates.axes()[loaded]
    dose = implant_dose(case, seeds, axes, source, spec, backend)
    n_needles = len(set(candidates.seed_needle[loaded].tolist()))
    outside = prepared.outside
    if not {lim.structure for lim in spec.hard_limits(case.skin)} <= set(outside):
        outside = limited_outside(spec, case, prepared.images)
    metrics = evaluate(
        spec, case, prepared.images, dose, seeds, axes, n_needles, source, result.method, outside
    )
    times["dose_and_metrics"] = time.perf_counter() - t
    notes = []
    if spec.dose.storage == "auto" and problem.A_target.dtype == np.float16:
        notes.append(
            f"the float32 dose matrix does not fit twice in the free memory of the "
            f"{backend.name}: stored in float16 (dose sums within 0.1 % of float32)"
        )
    if candidates.dropped:  # traced by the approach (replan's carry no counts)
        notes.append(candidate_note(candidates, spec.approach))
    metrics = dataclasses.replace(
        metrics,
        notes=(*notes, *metrics.notes),
        runtime_s=times,
        optimizer=OptimizerRun(
            float(result.fun),
            result.message,
            str(problem.A_target.dtype),
            prepared.matrix_cached,
            candidates.n_seeds,
            candidates.n_needles,
            candidates.dropped,
        ),
    )
    return Plan(
        spec,
        case,
        prepared.images,
        candidates,
        source,
        result,
        dose.astype(np.float32),
        metrics,
        times,
    )
