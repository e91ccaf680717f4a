"""The one assembly path of a plan's inputs: config -> images -> case -> source -> candidates
-> dose-influence matrix -> problem.

``prepare`` returns a frozen ``PreparedCase`` that ``planning.plan_case``, the studies
(``escalate``, ``tune``, ``batch`` through ``plan_case``), the benchmarks and the tests all
start from, so none of them repeats the chain. DICOM is read here once (``load_case``) and the
images travel on the ``PreparedCase`` (and on the ``Plan``) to the exporters: the case layer
(``seedopt.case``) never reads files of its own.

This module sits between the case/candidates/dose layers below it and ``planning`` above it;
``planning`` keeps what happens after the problem exists (optimize, dose, metrics).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from .backend import Backend
from .beyond_grid import OutsidePart, outside_parts
from .candidates import Candidates, build_candidates
from .case import Case, CaseSpec
from .dose.cache import cached_influence_matrix
from .dose.influence import choose_storage
from .errors import SeedoptError
from .optimizer import HardLimit, PlanProblem
from .optimizer.base import CandidateGeometry
from .plan_config import PlanSpec
from .reirradiation import physical_prescription_gy, problem_eqd2, with_prior_dose
from .sources import Source

if TYPE_CHECKING:
    from .dicom.images import CaseImages


@dataclass(frozen=True)
class PreparedCase:
    """Everything a plan starts from, built once by ``prepare``.

    Attributes
    ----------
    spec : the validated plan config the rest was built from.
    case : grid and structure masks.
    images : the case's DICOM images (structure set, CT), or None for a phantom.
    candidates : candidate needles and seeds.
    source : the seed source at the config's strength.
    problem : the optimizer's problem (matrices on ``backend``'s device).
    matrix_cached : the dose-influence matrix came from the cache.
    outside : each hard-limited structure's part beyond the dose grid (None: inside).
    runtime_s : seconds per step ("case", "candidates", "dose_matrix", "beyond_grid").
    """

    spec: PlanSpec
    case: Case
    images: CaseImages | None
    candidates: Candidates
    source: Source
    problem: PlanProblem
    matrix_cached: bool
    outside: Mapping[str, OutsidePart | None]
    runtime_s: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


def load_case(spec: PlanSpec) -> tuple[Case, CaseImages | None]:
    """The case of ``spec`` and its DICOM images (read once here; None for a phantom)."""
    images = None
    if spec.dicom is not None:
        from .dicom.images import load_images

        d = spec.dicom
        images = load_images(d.rtstruct, d.ct, d.slice_thickness_mm)
    return with_prior_dose(spec, Case.from_spec(spec, images), images), images


def limited_outside(
    spec: PlanSpec, case: Case, images: CaseImages | None
) -> dict[str, OutsidePart | None]:
    """The part beyond the grid of every structure ``spec`` limits (``beyond_grid``)."""
    return outside_parts(spec, case, images, [lim.structure for lim in spec.hard_limits(case.skin)])


def _same_case(a: PlanSpec, b: PlanSpec) -> bool:
    return all(getattr(a, k) == getattr(b, k) for k in CaseSpec.model_fields)


def prepare(
    spec: PlanSpec,
    backend: Backend,
    cache_dir: Path | None = None,
    *,
    reuse: PreparedCase | None = None,
) -> PreparedCase:
    """Build a plan's inputs on ``backend`` (dose matrices cached under ``cache_dir``; None:
    no cache).

    ``reuse``: a ``PreparedCase`` of the same case (grid, structures, roles, images) whose
    case and images are kept; the source, candidates and problem are rebuilt for ``spec``
    (another seed pitch, strength, goal or backend, as ``escalate`` and the benchmarks need).
    """
    times: dict[str, float] = {}
    if reuse is None:
        t = time.perf_counter()
        case, images = load_case(spec)
        times["case"] = time.perf_counter() - t
    else:
        if not _same_case(reuse.spec, spec):
            raise ValueError("prepare(reuse=...): the config describes another case")
        case, images = reuse.case, reuse.images
    source = spec.source.build()
    t = time.perf_counter()
    candidates = build_candidates(case, spec.approach)
    times["candidates"] = time.perf_counter() - t
    t = time.perf_counter()
    problem, cached = build_problem(spec, case, candidates, source, backend, cache_dir)
    backend.synchronize()
    times["dose_matrix"] = time.perf_counter() - t
    robust = getattr(spec.optimizer.options_for(), "robust", None)
    if robust is not None:
        from .robust_scenarios import scenario_problems

        t = time.perf_counter()
        scenarios = scenario_problems(
            spec, case, candidates, source, backend, robust, spec.optimizer.seed
        )
        problem = dataclasses.replace(problem, scenarios=scenarios)
        times["scenarios"] = time.perf_counter() - t
    t = time.perf_counter()
    limited = {lim.structure for lim in spec.hard_limits(case.skin)}
    if reuse is not None and limited <= set(reuse.outside):
        outside: Mapping[str, OutsidePart | None] = reuse.outside
    else:
        outside = MappingProxyType(limited_outside(spec, case, images))
        times["beyond_grid"] = time.perf_counter() - t
    return PreparedCase(
        spec, case, images, candidates, source, problem, cached, outside, MappingProxyType(times)
    )


def hard_limit_rows(case: Case, limits: list[HardLimit]) -> dict[str, np.ndarray]:
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


def _candidate_geometry(case: Case, candidates: Candidates) -> CandidateGeometry:
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
    """The optimizer's problem on the case's voxels; True when the matrix came from the cache
    (the last step of ``prepare``)."""
    limits = spec.hard_limits(case.skin)
    rows = hard_limit_rows(case, limits)
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
    implant, prior = problem_eqd2(spec, case, source, limits)
    problem = PlanProblem(
        A_target=blocks[case.target],
        A_oar={n: blocks[n] for n in names if n != case.target},
        voxel_cc=case.grid.voxel_cc,
        prescription_gy=physical_prescription_gy(spec, case, source),
        hard=tuple(limits),
        seed_needle=candidates.seed_needle,
        n_needles=candidates.n_needles,
        soft=spec.goals.weights,
        max_seeds=spec.goals.max_seeds,
        max_needles=spec.goals.max_needles,
        geometry=_candidate_geometry(case, candidates),
        implant_eqd2=implant,
        prior_eqd2={n: backend.asarray(v) for n, v in prior.items()},
    )
    return problem, cached
