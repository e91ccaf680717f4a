"""Robust optimization (issue 19, ``optimizer.robust``): the robust objective is the mean, or
the mean of the worst tail, of the scenario objectives computed one by one; a scenario with
zero error is the plan's own problem; the default method's robust plan scores no worse on
its scenarios than the nominal plan it starts from."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from pydantic import ValidationError
from seedopt.optimizer import terms
from seedopt.optimizer.local_search import Neighbourhood, improve, kicked
from seedopt.optimizer.objective import objective
from seedopt.optimizer.robust import RobustLoading, RobustOptions
from seedopt.optimizer.synthetic import RECTUM_LIMITS, synthetic_problem
from test_planning import SMALL

from seedopt.backend import cpu_backend
from seedopt.pipeline import prepare
from seedopt.plan_config import PlanSpec
from seedopt.planning import plan_case
from seedopt.robust_scenarios import displaced_candidates


def _scenarios(k: int = 5):
    return [synthetic_problem(seed=s) for s in range(k)]


def by_hand(values: list[float], measure: str, tail: float) -> float:
    """The mean of ``values``, or (cvar) the mean of the worst ceil(tail x K) of them."""
    v = np.sort(np.asarray(values))[::-1]
    return float(v.mean() if measure == "mean" else v[: max(1, math.ceil(tail * v.size))].mean())


@pytest.mark.parametrize(("measure", "tail"), [("mean", 0.1), ("cvar", 0.1), ("cvar", 0.5)])
def test_the_robust_objective_is_the_aggregate_of_the_scenario_objectives(measure, tail):
    problems = _scenarios()
    x = np.random.default_rng(1).random(problems[0].n_candidates) < 0.5
    load = RobustLoading(problems, x, measure, tail)
    want = by_hand([float(objective(p, x)) for p in problems], measure, tail)
    assert load.f == pytest.approx(want, rel=1e-9)
    improve(load, Neighbourhood(problems[0], 10.0))
    again = by_hand([float(objective(p, load.x)) for p in problems], measure, tail)
    assert load.f == pytest.approx(again, rel=1e-9)
    assert load.f <= want + 1e-9


@pytest.mark.parametrize(("measure", "tail"), [("mean", 0.1), ("cvar", 0.4)])
def test_kicks_on_the_robust_objective_keep_it_exact_and_never_raise_it(measure, tail):
    """The iterated search on K scenarios: its objective and hard-limit excess are the
    aggregates of the scenarios' own, computed one by one, and no higher than where it
    started."""
    problems = [synthetic_problem(seed=s, hard=RECTUM_LIMITS) for s in range(4)]
    neighbours = Neighbourhood(problems[0], 10.0)
    x = np.random.default_rng(2).random(problems[0].n_candidates) < 0.5
    load = RobustLoading(problems, x, measure, tail)
    improve(load, neighbours)
    best, _, _ = kicked(load, neighbours, 4, np.random.default_rng(3))  # type: ignore[arg-type]
    f = by_hand([float(objective(p, best.x)) for p in problems], measure, tail)
    excess = by_hand([float(terms(p, best.x).hard_excess_pct) for p in problems], measure, tail)
    assert best.f == pytest.approx(f, rel=1e-6) and best.f <= load.f + 1e-12
    assert best.hard_excess_pct() == pytest.approx(excess, rel=1e-6, abs=1e-9)
    assert best.hard_excess_pct() <= load.hard_excess_pct() + 1e-9


def test_zero_error_leaves_the_candidates_and_a_pure_shift_moves_every_seed():
    spec = PlanSpec.model_validate(copy.deepcopy(SMALL))
    c = prepare(spec, cpu_backend()).candidates
    n, m = c.n_needles, c.n_seeds
    zero = (np.zeros((n, 3)), np.tile([1.0, 0, 0], (n, 1)), np.zeros(n), np.zeros(m))
    same = displaced_candidates(c, zero)
    np.testing.assert_array_equal(same.seeds_mm, c.seeds_mm)
    np.testing.assert_allclose(same.axes(), c.axes(), atol=1e-12)
    shift = np.array([1.0, -2.0, 0.5])
    moved = displaced_candidates(c, (np.tile(shift, (n, 1)), *zero[1:]))
    np.testing.assert_allclose(moved.seeds_mm, c.seeds_mm + shift, atol=1e-12)
    np.testing.assert_allclose(
        [k.entry_mm for k in moved.needles], [k.entry_mm + shift for k in c.needles], atol=1e-9
    )


@pytest.mark.parametrize("thinned", [{}, {"search_rows": 60, "kicks": 3}])
def test_the_robust_plan_is_no_worse_on_its_scenarios_than_the_nominal_plan(thinned):
    """Also with a kicked robust search on thinned scenarios first (``search_rows``)."""
    data = copy.deepcopy(SMALL)
    robust = {"scenarios": 4, "measure": "mean", "model": "template-3d-printed", **thinned}
    data["optimizer"] = {
        "method": "hybrid",
        "options": {"anneal_options": {"iterations": 300, "chains": 4}, "robust": robust},
    }
    plan = plan_case(PlanSpec.model_validate(data), cpu_backend(), cache_dir=None)
    extra = plan.result.extra
    assert extra["robust_scenarios"] == 4
    assert extra["robust_fun"] <= extra["robust_fun_nominal_plan"] + 1e-9
    assert "scenarios" in plan.metrics.runtime_s


@pytest.mark.parametrize(
    "bad", [{"scenarios": 0}, {"scenarios": 1000}, {"measure": "max"}, {"tail": 1.5}]
)
def test_robust_options_out_of_range_are_refused(bad):
    with pytest.raises(ValidationError):
        RobustOptions.model_validate(bad)
