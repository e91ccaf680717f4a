"""Planning against EQD2 limits (issue 18): a hard limit on the implant's EQD2 or on the
cumulative EQD2 (the prior course's plus the implant's, summed per voxel before the metric)
is part of the exact objective, which the annealer and the default method minimise exactly.

The synthetic organ has a prior course whose EQD2 rises along the organ, so the voxels that
decide the cumulative metric are not the implant's hottest.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from seedopt.optimizer import get_optimizer, objective
from seedopt.optimizer.base import HardLimit, PlanProblem
from seedopt.optimizer.bound import lower_bound
from seedopt.optimizer.hybrid import thinned
from seedopt.optimizer.objective import decisive_rows, dose, terms
from seedopt.optimizer.synthetic import synthetic_problem
from test_optimizers import all_loadings, brute_force

from seedopt.errors import SeedoptError
from seedopt.radiobiology import ImplantEqd2

CORD = ImplantEqd2(alpha_beta_gy=2.0, half_life_d=59.4, repair_half_time_h=1.5)


def reirradiated(limit_gy: float, quantity: str = "eqd2_cumulative", seed: int = 0):
    """The synthetic problem with a prior course on its organ (EQD2 20-45 Gy along x) and one
    D0.1cc limit of ``quantity``."""
    p = synthetic_problem(seed, needles=3, per_needle=4, n_oar=30)
    prior = np.linspace(20.0, 45.0, p.A_oar["rectum"].shape[0])
    return dataclasses.replace(
        p,
        hard=(HardLimit("rectum", "D0.1cc", limit_gy, quantity),),
        implant_eqd2={"rectum": CORD},
        prior_eqd2={"rectum": prior} if quantity == "eqd2_cumulative" else {},
    )


def by_hand(p: PlanProblem, x: np.ndarray) -> float:
    """The cumulative D0.1cc recomputed from the loading: implant dose per row, its EQD2 by
    Dale's formula written out, the prior added, then the k-th hottest row (k = 0.1 cc /
    0.05 cc = 2)."""
    d = p.A_oar["rectum"].astype(np.float64) @ x.astype(np.float64)
    c, ab = CORD.coefficient, CORD.alpha_beta_gy
    eqd2 = d * (1 + c * d / ab) / (1 + 2 / ab) + p.prior_eqd2["rectum"]
    return float(np.sort(eqd2)[-2])


def test_the_cumulative_metric_is_the_prior_plus_the_implant_eqd2_per_voxel() -> None:
    p = reirradiated(60.0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.random(p.n_candidates) < 0.5
        value = by_hand(p, x)
        t = terms(p, x)
        assert t.hard_excess_pct == pytest.approx(100 * max(0.0, value - 60.0) / 60.0, rel=1e-5)


def test_the_annealer_and_the_default_find_the_brute_force_optimum_of_the_cumulative_plan() -> None:
    p = reirradiated(75.0)
    x_best, f_best = brute_force(p)
    assert by_hand(p, x_best) <= 75.0  # the optimum respects the cumulative limit
    for method in ("anneal", "hybrid"):
        res = get_optimizer(method).solve(p, rng=3)
        assert res.fun == pytest.approx(f_best, rel=1e-6), method  # float32 sums


def test_the_cumulative_limit_binds_where_the_physical_plan_breaks_it() -> None:
    """The plan optimal without the prior exceeds the cumulative limit; the cumulative plan
    meets it, at a price in the objective's other terms."""
    p = reirradiated(75.0)
    physical_only = dataclasses.replace(p, hard=(), implant_eqd2={}, prior_eqd2={})
    x_phys, _ = brute_force(physical_only)
    x_eqd2, _ = brute_force(p)
    assert by_hand(p, x_phys) > 75.0 >= by_hand(p, x_eqd2)
    # it costs one seed more; coverage stays (D90 >= Rx in both)
    assert x_eqd2.sum() == x_phys.sum() + 1
    assert min(terms(p, x_eqd2).d90_gy, terms(physical_only, x_phys).d90_gy) >= p.prescription_gy


def test_decisive_rows_keep_the_objective_of_every_loading() -> None:
    """A row with a high prior but a low implant dose can decide the cumulative metric: the
    rows dropped are only those whose cumulative EQD2 never reaches the priced dose."""
    p = reirradiated(75.0)
    X = all_loadings(p.n_candidates)
    kept = decisive_rows(p)
    np.testing.assert_array_equal(objective(kept, X), objective(p, X))
    assert kept.prior_eqd2["rectum"].shape == (kept.A_oar["rectum"].shape[0],)


def test_thinned_organ_rows_keep_their_prior() -> None:
    p = reirradiated(75.0)
    thin = thinned(p, rows=10, margin=0.0)
    s = p.A_oar["rectum"].shape[0] // thin.A_oar["rectum"].shape[0]
    np.testing.assert_array_equal(thin.prior_eqd2["rectum"], p.prior_eqd2["rectum"][::s])
    np.testing.assert_array_equal(thin.A_oar["rectum"], p.A_oar["rectum"][::s])


def test_an_implant_eqd2_limit_is_the_physical_limit_at_the_inverse_dose() -> None:
    """Without a prior the EQD2 of every row rises with its dose alike, so a limit of E Gy EQD2
    is a physical limit of dose_for_eqd2(E) Gy: the same objective on every loading."""
    e = 40.0
    p = reirradiated(e, "eqd2_implant")
    as_physical = dataclasses.replace(
        p, hard=(HardLimit("rectum", "D0.1cc", CORD.dose_for_eqd2(e)),), implant_eqd2={}
    )
    X = all_loadings(p.n_candidates)
    t, u = terms(p, X), terms(as_physical, X)
    # the excess is in % of the limit of each quantity: zero together, positive together
    np.testing.assert_array_equal(t.hard_excess_pct > 0, u.hard_excess_pct > 0)


@pytest.mark.parametrize("method", ["lp", "milp"])
def test_linear_methods_bound_the_eqd2_curve_from_above_and_keep_the_limit(method) -> None:
    """lp and milp replace each row's EQD2 by its secant over [0, the row's dose with every
    candidate loaded], which lies above the convex curve: a loading the model accepts keeps
    the true cumulative limit."""
    from seedopt.optimizer.milp import linear_limit_rows

    p = reirradiated(75.0)
    A, offset = linear_limit_rows(p, p.hard[0])
    X = all_loadings(p.n_candidates).astype(np.float64)
    d = p.A_oar["rectum"].astype(np.float64) @ X.T  # (rows, loadings)
    true = p.prior_eqd2["rectum"][:, None] + CORD.eqd2(d)
    assert np.all(offset[:, None] + A @ X.T >= true - 1e-9)
    res = get_optimizer(method).solve(p, rng=0)
    assert by_hand(p, res.x) <= 75.0


def test_the_exact_milp_formulation_refuses_eqd2_limits() -> None:
    with pytest.raises(SeedoptError, match=r'formulation "exact" models physical-dose limits'):
        get_optimizer("milp").solve(reirradiated(75.0), rng=0, formulation="exact")


def test_the_bound_stays_valid_and_says_what_it_left_out() -> None:
    p = reirradiated(75.0)
    _, f_best = brute_force(p)
    bound = lower_bound(p, time_limit_s=30)
    assert bound.objective_lb is not None and bound.objective_lb <= f_best + 1e-9
    assert "EQD2 limits left out (rectum D0.1cc eqd2_cumulative)" in bound.message


def test_a_problem_missing_its_eqd2_model_or_prior_is_refused() -> None:
    p = reirradiated(75.0)
    with pytest.raises(ValueError, match="needs its EQD2 model"):
        dataclasses.replace(p, implant_eqd2={})
    with pytest.raises(ValueError, match="needs the prior EQD2 at each of its rows"):
        dataclasses.replace(p, prior_eqd2={"rectum": np.zeros(3)})


def test_the_fused_gpu_step_leaves_eqd2_problems_to_the_reference_step() -> None:
    from seedopt.optimizer.anneal import AnnealOptions, fused_spec

    assert fused_spec(reirradiated(75.0), 4, AnnealOptions()) is None
    p = reirradiated(75.0)
    assert dose(p.A_oar["rectum"], np.ones(p.n_candidates, bool)).shape == (30,)
