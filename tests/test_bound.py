"""Specification of the proven lower bound on the plan objective (brute force is exact on
tiny synthetic problems: every one of the 2^12 loadings is scored)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from scipy.optimize import OptimizeResult
from seedopt.optimizer import HardLimit, PlanProblem, SoftWeights, bound, terms
from seedopt.optimizer.bound import (
    PlanBound,
    build_model,
    group_rows,
    lower_bound,
    patch_rows,
    solve_bound,
)
from seedopt.optimizer.objective import W_COVERAGE, kth_hottest
from seedopt.optimizer.synthetic import RECTUM_LIMITS, RX_GY, synthetic_problem

from seedopt.errors import SeedoptError

LOADINGS = np.array(list(itertools.product([False, True], repeat=12)))
"""Every loading of the 12 candidates of a default synthetic problem."""
PRICED = SoftWeights(v150_per_pct=0.5, v200_per_pct=1.0, organ_per_pct=1.0, organ_floor=0.2)
"""Soft weights that make the V150, V200 and organ terms matter."""


def brute_force(problem: PlanProblem) -> tuple[float, float, int | None]:
    """Over all loadings within the caps: the lowest objective, and over those with
    D90 >= Rx the lowest per_seed * seeds + per_needle * needles and the fewest seeds
    (inf, inf, None when none reaches D90 >= Rx)."""
    t = terms(problem, LOADINGS)
    allowed = np.ones(len(LOADINGS), dtype=bool)
    if problem.max_seeds is not None:
        allowed &= t.n_seeds <= problem.max_seeds
    if problem.max_needles is not None:
        allowed &= t.n_needles <= problem.max_needles
    covered = allowed & (np.asarray(t.shortfall_pct) <= 0)
    s = problem.soft
    cost = s.per_seed * t.n_seeds + s.per_needle * t.n_needles
    best = float(np.asarray(t.total, dtype=np.float64)[allowed].min())
    if not covered.any():
        return best, math.inf, None
    return best, float(cost[covered].min()), int(t.n_seeds[covered].min())


def case(seed: int, rx_factor: float, hard: tuple[HardLimit, ...], caps: str, soft: SoftWeights):
    p = synthetic_problem(seed, hard=hard)
    caps_of = {"none": {}, "seeds": {"max_seeds": 4}, "needles": {"max_needles": 2}}
    return dataclasses.replace(p, prescription_gy=RX_GY * rx_factor, soft=soft, **caps_of[caps])


CASES = [
    pytest.param(seed, rx, hard, caps, soft, id=f"s{seed}-rx{rx}-{len(hard)}lim-{caps}-{label}")
    for seed in (0, 1)
    for rx in (0.6, 1.0, 2.2)  # 2.2 Rx: out of reach, or reached only with every seed
    for hard, caps in (
        ((), "none"),
        ((HardLimit("rectum", "Dmax", 60.0),), "none"),
        (RECTUM_LIMITS, "seeds"),
        ((HardLimit("rectum", "Dmean", 30.0), HardLimit("rectum", "D0.1cc", 50.0)), "needles"),
    )
    for soft, label in ((SoftWeights(), "default"), (PRICED, "priced"))
]


@pytest.mark.parametrize(("seed", "rx", "hard", "caps", "soft"), CASES)
def test_the_bounds_never_exceed_the_brute_force_optima(seed, rx, hard, caps, soft) -> None:
    """The objective bound is at most the best objective of any loading (within the caps);
    the seed and needle bounds at most the best of any loading with D90 >= Rx."""
    problem = case(seed, rx, hard, caps, soft)
    best, best_cost, fewest = brute_force(problem)
    b = lower_bound(problem)
    assert b.objective_lb is not None and 0 <= b.objective_lb <= best
    assert b.seed_needle_lb is not None and b.seed_needle_lb <= best_cost
    if fewest is not None:
        assert b.min_seeds is not None and b.min_seeds <= fewest
    if b.seed_needle_lb == math.inf:
        assert fewest is None and b.min_seeds is None


def test_impossible_coverage_is_proven_where_even_a_fractional_loading_misses() -> None:
    """Four seeds cannot give D90 >= 2.2 Rx: the bound says so (inf, no seed count)."""
    problem = case(0, 2.2, (), "seeds", SoftWeights())
    assert brute_force(problem)[2] is None
    b = lower_bound(problem)
    assert b.seed_needle_lb == math.inf and b.min_seeds is None
    assert "no loading reaches D90 >= Rx" in b.message


def test_a_binding_limit_makes_the_bound_pay_for_it() -> None:
    """With a Dmax limit that coverage must break, the bound rises above the one without."""
    free = lower_bound(case(0, 2.2, (), "none", SoftWeights()))
    limited = lower_bound(case(0, 2.2, (HardLimit("rectum", "Dmax", 60.0),), "none", SoftWeights()))
    assert limited.objective_lb > free.objective_lb + 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouping_rows_never_raises_the_bound(seed: int) -> None:
    """Fewer, aggregated target rows relax the model: no bound above the one-row-per-group
    bound."""
    problem = case(seed, 1.0, RECTUM_LIMITS, "none", PRICED)
    exact = lower_bound(problem, max_groups=problem.A_target.shape[0])
    for groups in (1, 3, 12, 40):
        grouped = lower_bound(problem, max_groups=groups)
        assert grouped.objective_lb <= exact.objective_lb + 1e-9
        assert grouped.seed_needle_lb <= exact.seed_needle_lb + 1e-9
        assert grouped.min_seeds <= exact.min_seeds


def test_groups_partition_the_rows_in_near_equal_sizes() -> None:
    A = synthetic_problem(0, n_target=500).A_target
    for max_groups in (1, 7, 64, 500, 900):
        groups = group_rows(A, max_groups)
        assert len(groups) == min(500, max_groups)
        assert np.array_equal(np.sort(np.concatenate(groups)), np.arange(500))
        sizes = [g.size for g in groups]
        assert max(sizes) - min(sizes) <= 1


def test_patch_rows_bound_the_volume_dose_from_below() -> None:
    """For every loading, b x <= the q-th hottest organ dose for each patch row b."""
    A = synthetic_problem(1).A_oar["rectum"].astype(np.float64)
    for q in (1, 3, 10):
        rows = patch_rows(A, q, patches=8)
        d = LOADINGS @ A.T
        assert np.all(LOADINGS @ rows.T <= kth_hottest(d, q)[:, None] + 1e-9)


def test_a_solve_stopped_by_its_time_limit_is_no_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped LP gives None, never a number: through ``lower_bound`` with no time left,
    and where HiGHS reports its own time limit (faked: a tiny limit does not reliably stop
    HiGHS on a small model)."""
    problem = synthetic_problem(0)
    b = lower_bound(problem, time_limit_s=1e-9)
    assert (b.objective_lb, b.seed_needle_lb, b.min_seeds) == (None, None, None)
    assert b.gap(5.0) is None and b.message.startswith("no objective bound")
    model = build_model(problem, group_rows(problem.A_target, 500))
    c = model.costs(seeds=0.05, needles=0.1, shortfall=W_COVERAGE)
    assert solve_bound(model, c, model.hi, time_limit_s=30.0) is not None
    stopped = OptimizeResult(status=1, fun=1.0, message="Time limit reached.")
    monkeypatch.setattr(bound, "linprog", lambda *args, **kwargs: stopped)
    assert solve_bound(model, c, model.hi, time_limit_s=30.0) is None
    assert lower_bound(problem).objective_lb is None


def test_gap_is_the_percent_of_the_plan_objective_above_the_bound() -> None:
    b = PlanBound(objective_lb=3.0, seed_needle_lb=1.0, min_seeds=10, message="", runtime_s=0)
    assert b.gap(4.0) == pytest.approx(25.0)
    assert b.gap(0.0) is None


def test_bad_requests_are_refused() -> None:
    problem = synthetic_problem(0)
    with pytest.raises(SeedoptError, match="max_groups"):
        lower_bound(problem, max_groups=0)
    sweep = dataclasses.replace(problem, prescription_gy=np.array([140.0, 150.0]))
    with pytest.raises(SeedoptError, match="one prescription"):
        lower_bound(sweep)
