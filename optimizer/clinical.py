"""The clinical-style baseline: loading by rule, the way the published CT-guided series plan
by hand, then the seed strength scaled until the target's D90 reaches the prescription.

1. Needles about 1 cm apart: on a 5 mm template, every other hole in both directions (the one
   of the four phases that reaches the most candidate seeds); freehand, a greedy choice of
   needles at least ``needle_spacing_mm`` apart (most seeds first).
2. Modified peripheral loading along each chosen needle: seeds every 5 mm where they lie within
   ``peripheral_depth_mm`` of the target's surface, every 10 mm deeper (every other candidate).
3. Strength scaled so that D90 equals the prescription (``extra["strength_scale"]``; the
   planner applies it to the source). Organ limits are not looked at, as in manual planning;
   the report shows where they are missed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from .base import OptimizeResult, PlanProblem
from .objective import dose, dose_at_percent, objective
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


def clinical_loading(
    problem: PlanProblem, needle_spacing_mm: float = 10.0, peripheral_depth_mm: float = 5.0
) -> np.ndarray:
    """The rule-based loading (bool, one per candidate seed)."""
    geo = problem.geometry
    if geo is None:
        raise ValueError("the clinical baseline needs the candidates' geometry")
    if all(h is not None for h in geo.needle_holes):
        needles = _template_needles(problem)
    else:
        needles = _spaced_needles(problem, needle_spacing_mm)
    on_needle = needles[problem.seed_needle]
    peripheral = geo.seed_depth_mm <= peripheral_depth_mm
    every_other = geo.seed_order % 2 == 0
    return on_needle & (peripheral | every_other)


@register("clinical")
class ClinicalBaseline(BaseOptimizer):
    """Rule-based loading with strength scaled to the prescription (see the module doc)."""

    name = "clinical"

    def solve(self, problem: PlanProblem, rng: Any = None, **options: Any) -> OptimizeResult:
        t0 = time.perf_counter()
        x = clinical_loading(problem, **options)
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
            extra={"strength_scale": scale},
        )
