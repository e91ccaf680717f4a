"""The clinical-style baseline: loading by rule, the way the published CT-guided series plan
by hand, with the seed count (default) or the seed strength scaled until the target's D90
reaches the prescription.

1. Needles about 1 cm apart: on a 5 mm template, every other hole in both directions (the one
   of the four phases that reaches the most candidate seeds); freehand, a greedy choice of
   needles at least ``needle_spacing_mm`` apart (most seeds first).
2. Modified peripheral loading along each chosen needle: seeds every 5 mm where they lie within
   ``peripheral_depth_mm`` of the target's surface, every 10 mm deeper (every other candidate).
3. ``scaling="count"`` (default, the config's seed strength): the candidates are ranked
   (a) the pattern of steps 1-2, (b) the 5 mm fill-in of its needles, (c) the peripheral
   pattern on the remaining needles, (d) the rest; within each group in farthest-point order
   (each next seed the farthest from those ranked before it, so every prefix is spread over
   the target). The plan loads the shortest prefix whose D90 reaches the prescription (D90
   never falls as seeds are added, so a bisection finds it); every candidate if none does.
   ``scaling="strength"``: the pattern of steps 1-2 with the seed strength scaled so that
   D90 equals the prescription (``OptimizeResult.strength_scale``; the planner applies it).
Organ limits are not looked at, as in manual planning; the report shows where they are missed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

import numpy as np
from pydantic import Field

from seedopt.config_types import Length_mm, NonNegativeLength_mm

from .base import OptimizeResult, PlanProblem
from .objective import dose, dose_at_percent, objective
from .options import OptimizerOptions
from .registry import BaseOptimizer, register


def _template_needles(problem: PlanProblem) -> np.ndarray:
    geo = problem.geometry
    assert geo is not None
    holes = geo.needle_holes
    seeds_per_needle = np.bincount(problem.seed_needle, minlength=problem.n_needles)
    best, best_count = np.zeros(problem.n_needles, bool), -1
    for pc in (0, 1):
        for pr in (0, 1):
            chosen = np.array([h is not None and h[0] % 2 == pc and h[1] % 2 == pr for h in holes])
            count = int(seeds_per_needle[chosen].sum())
            if count > best_count:
                best, best_count = chosen, count
    return best


def _spaced_needles(problem: PlanProblem, spacing_mm: float) -> np.ndarray:
    geo = problem.geometry
    assert geo is not None
    seeds_per_needle = np.bincount(problem.seed_needle, minlength=problem.n_needles)
    chosen = np.zeros(problem.n_needles, bool)
    for k in np.argsort(-seeds_per_needle, kind="stable"):
        p, u = geo.needle_points_mm[k], geo.needle_directions[k]
        ok = True
        for j in np.flatnonzero(chosen):
            d = p - geo.needle_points_mm[j]
            ok &= bool(np.linalg.norm(d - np.dot(d, u) * u) >= spacing_mm)
        chosen[k] = ok and seeds_per_needle[k] > 0
    return chosen


def _pattern(problem: PlanProblem, needles: np.ndarray, peripheral_depth_mm: float) -> np.ndarray:
    """Modified peripheral loading on ``needles`` (bool per candidate seed)."""
    geo = problem.geometry
    assert geo is not None
    peripheral = geo.seed_depth_mm <= peripheral_depth_mm
    every_other = geo.seed_order % 2 == 0
    return needles[problem.seed_needle] & (peripheral | every_other)


def clinical_needles(problem: PlanProblem, needle_spacing_mm: float = 10.0) -> np.ndarray:
    """The needles of step 1 (bool, one per candidate needle)."""
    geo = problem.geometry
    if geo is None:
        raise ValueError("the clinical baseline needs the candidates' geometry")
    if all(h is not None for h in geo.needle_holes):
        return _template_needles(problem)
    return _spaced_needles(problem, needle_spacing_mm)


def clinical_loading(
    problem: PlanProblem, needle_spacing_mm: float = 10.0, peripheral_depth_mm: float = 5.0
) -> np.ndarray:
    """The rule-based pattern of steps 1-2 (bool, one per candidate seed)."""
    needles = clinical_needles(problem, needle_spacing_mm)
    return _pattern(problem, needles, peripheral_depth_mm)


def farthest_point_order(points: np.ndarray) -> np.ndarray:
    """Indices of ``points`` (k, 3), each next the farthest from those before; starts at the
    point nearest the centroid (ties by index)."""
    k = len(points)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.empty(k, dtype=np.int64)
    nearest = np.linalg.norm(points - points.mean(axis=0), axis=1)
    order[0] = int(np.argmin(nearest))
    gap = np.linalg.norm(points - points[order[0]], axis=1)
    for i in range(1, k):
        order[i] = int(np.argmax(gap))
        gap = np.minimum(gap, np.linalg.norm(points - points[order[i]], axis=1))
    return order


def clinical_ranking(
    problem: PlanProblem, needle_spacing_mm: float = 10.0, peripheral_depth_mm: float = 5.0
) -> np.ndarray:
    """Every candidate seed in the count-scaling order of step 3 (module docstring)."""
    geo = problem.geometry
    needles = clinical_needles(problem, needle_spacing_mm)
    on = needles[problem.seed_needle]
    pattern = _pattern(problem, needles, peripheral_depth_mm)
    others = _pattern(problem, ~needles, peripheral_depth_mm)
    groups = [pattern, on & ~pattern, others, ~on & ~others]
    assert geo is not None
    ranked = []
    for g in groups:
        idx = np.flatnonzero(g)
        ranked.append(idx[farthest_point_order(geo.seed_points_mm[idx])])
    return np.concatenate(ranked)


def shortest_prefix_reaching(problem: PlanProblem, ranking: np.ndarray) -> tuple[int, int]:
    """The fewest leading seeds of ``ranking`` whose target D90 >= prescription (bisection;
    ``len(ranking)`` if even all of them fall short), and how many doses it evaluated. D90 is
    ``objective``'s own, from ``dose`` (no copy of the influence matrix)."""
    m = problem.n_candidates
    evaluations = 0

    def reaches(k: int) -> bool:
        nonlocal evaluations
        evaluations += 1
        x = np.zeros(m, dtype=bool)
        x[ranking[:k]] = True
        d90 = dose_at_percent(dose(problem.A_target, x), 90.0)
        return bool(d90 >= problem.prescription_gy * (1 - 1e-9))

    lo, hi = 1, len(ranking)
    if not reaches(hi):
        return hi, evaluations
    while lo < hi:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo, evaluations


class ClinicalOptions(OptimizerOptions):
    """Options of ``clinical``."""

    scaling: Literal["count", "strength"] = Field(
        default="count",
        description='"count" (the config\'s strength, fewest seeds in rule order) or '
        '"strength" (the rule pattern, seed strength scaled to D90 = Rx)',
    )
    needle_spacing_mm: Length_mm = Field(
        default=10.0, description="freehand needle spacing, mm (a template uses every other hole)"
    )
    peripheral_depth_mm: NonNegativeLength_mm = Field(
        default=5.0, description="seeds this close to the target surface are loaded every 5 mm"
    )


@register("clinical")
class ClinicalBaseline(BaseOptimizer[ClinicalOptions]):
    """Rule-based loading scaled to the prescription (see the module doc)."""

    Options = ClinicalOptions

    def run(self, problem: PlanProblem, rng: Any, options: ClinicalOptions) -> OptimizeResult:
        """Load by rule (options: ``ClinicalOptions``; ``rng`` is unused: deterministic)."""
        t0 = time.perf_counter()
        geometry = {
            "needle_spacing_mm": options.needle_spacing_mm,
            "peripheral_depth_mm": options.peripheral_depth_mm,
        }
        if options.scaling == "count":
            ranking = clinical_ranking(problem, **geometry)
            k, evaluations = shortest_prefix_reaching(problem, ranking)
            x = np.zeros(problem.n_candidates, dtype=bool)
            x[ranking[:k]] = True
            return OptimizeResult(
                x,
                float(objective(problem, x)),
                True,
                0,
                f"clinical pattern, count scaled: the first {k} of {ranking.size} ranked seeds",
                1,
                evaluations + 1,
                self.name,
                time.perf_counter() - t0,
            )
        x = clinical_loading(problem, **geometry)
        if not x.any():
            return OptimizeResult(
                x,
                float(objective(problem, x)),
                False,
                2,
                "no candidate seed on the clinical needle pattern",
                1,
                1,
                self.name,
                time.perf_counter() - t0,
            )
        d90 = float(dose_at_percent(dose(problem.A_target, x), 90.0))
        scale = problem.prescription_gy / d90 if d90 > 0 else 1.0
        scaled = dataclasses.replace(
            problem,
            A_target=problem.A_target * scale,
            A_oar={k: v * scale for k, v in problem.A_oar.items()},
        )
        return OptimizeResult(
            x,
            float(objective(scaled, x)),
            True,
            0,
            f"clinical pattern: {int(x.sum())} seeds, strength scaled x{scale:.3f} to D90 = Rx",
            1,
            2,
            self.name,
            time.perf_counter() - t0,
            strength_scale=scale,
        )
