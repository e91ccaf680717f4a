"""The scenario problems of robust optimization (``optimizer.robust``): the plan's candidates
with every candidate needle displaced by one sampled error, dosed with TG-43 like the plan's
own (``pipeline.build_problem``).

A scenario moves each candidate needle as ``robustness`` moves a planned one (tip shift, tilt
about the tip, each seed's slide along the tilted needle; ``robustness.needle_errors``), so a
loading's scenario dose is the dose that loading would give were the needles inserted with
those errors.
"""

from __future__ import annotations

import numpy as np

from .backend import Backend
from .candidates import Candidates, Needle
from .case import Case
from .optimizer import PlanProblem
from .optimizer.robust import RobustOptions
from .pipeline import build_problem
from .plan_config import PlanSpec
from .robustness import APPROACH_MODEL, ERROR_MODELS, Implant, moved_lines, needle_errors
from .sources import Source


def displaced_candidates(candidates: Candidates, errors: tuple) -> Candidates:
    """``candidates`` with each needle moved by ``errors`` (``needle_errors``' tuple: tip
    shifts (n, 3), tilt axes (n, 3), tilt angles (n,), seed slides (m,))."""
    dirs = np.array([n.direction for n in candidates.needles]).reshape(-1, 3)
    tips = np.array([n.tip_mm for n in candidates.needles], float).reshape(-1, 3)
    implant = Implant(candidates.seeds_mm, candidates.axes(), candidates.seed_needle, tips, dirs)
    seeds, _ = implant.moved(*errors)
    depths = np.array([n.depth_mm for n in candidates.needles])
    entries, new_tips = moved_lines(tips, dirs, depths, *errors[:3])
    needles = [
        Needle(e, t, n.hole) for n, e, t in zip(candidates.needles, entries, new_tips, strict=True)
    ]
    return Candidates(
        needles, seeds, candidates.seed_needle, candidates.seed_pitch_mm, candidates.approach
    )


def scenario_problems(
    spec: PlanSpec,
    case: Case,
    candidates: Candidates,
    source: Source,
    backend: Backend,
    options: RobustOptions,
    seed: int,
) -> tuple[PlanProblem, ...]:
    """``options.scenarios`` problems of ``candidates`` displaced under the error model
    (``options.model``, default by the approach), reproducible by ``seed``."""
    model = ERROR_MODELS[options.model or APPROACH_MODEL[spec.approach.kind]]
    rng = np.random.default_rng([seed, 19])
    dirs = np.array([n.direction for n in candidates.needles]).reshape(-1, 3)
    out = []
    for _ in range(options.scenarios):
        errors = needle_errors(rng, dirs, model, candidates.n_seeds)
        moved = displaced_candidates(candidates, errors)
        problem, _ = build_problem(spec, case, moved, source, backend, None)
        out.append(problem)
    return tuple(out)
