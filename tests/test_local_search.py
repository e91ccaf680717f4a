"""Specification of the default method's parts: the quantile shortcuts of the objective, the
exact local search (flips, seed moves, needle closings) and the default itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from seedopt.optimizer import HardLimit, SoftWeights, get_optimizer, objective, terms
from seedopt.optimizer.hybrid import HybridOptions, kick_count, thinned
from seedopt.optimizer.local_search import (
    Loading,
    Neighbourhood,
    closing,
    flips,
    improve,
    kicked,
    pad,
)
from seedopt.optimizer.objective import decisive_rows, dose, terms_from_doses
from seedopt.optimizer.synthetic import RECTUM_LIMITS, RX_GY, synthetic_problem
from seedopt.optimizer.usable import rule_loading

from seedopt.errors import SeedoptError

LIMITS = (HardLimit("rectum", "D0.1cc", 60.0), HardLimit("rectum", "Dmax", 90.0))


def problem(seed: int = 0, **kw):
    return synthetic_problem(seed, hard=LIMITS, needles=4, per_needle=5, **kw)


def both_ways(p, X: np.ndarray):
    """The target doses of loadings ``X`` (k, m) and their terms with every quantile found
    and with the batch shortcuts (``with_d90=False``)."""
    d_t = dose(p.A_target, X).astype(np.float64)
    d_o = {"rectum": dose(p.A_oar["rectum"], X).astype(np.float64)}
    n_s = X.sum(axis=1)
    n_n = np.array([len(set(p.seed_needle[row])) for row in X])
    full = terms_from_doses(p, d_t, d_o, n_s, n_n)
    return d_t, full, terms_from_doses(p, d_t, d_o, n_s, n_n, with_d90=False)


@pytest.mark.parametrize("seed", range(4))
def test_quantiles_found_only_where_they_matter_give_the_same_total(seed: int) -> None:
    """with_d90=False skips D90 where at least 90 % of points reach Rx and a D{v}cc where it
    is below every priced dose: the total is the same for loadings on both sides."""
    p = problem(seed)
    X = (
        np.random.default_rng(seed).random((200, p.n_candidates))
        < np.linspace(0.05, 0.9, 200)[:, None]
    )
    _, full, fast = both_ways(p, X)
    assert (full.shortfall_pct > 0).any() and (full.shortfall_pct == 0).any()
    np.testing.assert_allclose(fast.total, full.total, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.shortfall_pct, full.shortfall_pct, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_quantiles_of_the_moves_of_one_loading_are_exact(seed: int) -> None:
    """The moves of one loading share most of their cold points; the shortcut then selects
    D90 among the points below Rx on some row (fewer columns than the whole target): the
    same values. (The D{v}cc shortcut is compared too, but on this small rectum every point
    is above its priced dose on some row, so it selects among all of them: next test.)"""
    p = problem(seed)
    x0 = rule_loading(p)
    X = np.repeat(x0[None], p.n_candidates, axis=0)
    X[np.arange(p.n_candidates), np.arange(p.n_candidates)] ^= True  # every single flip
    d_t, full, fast = both_ways(p, X)
    short = np.asarray(full.shortfall_pct) > 0
    assert short.any()
    assert (d_t[short] < RX_GY).any(axis=0).sum() < d_t.shape[1]  # a column subset was used
    np.testing.assert_array_equal(fast.shortfall_pct, full.shortfall_pct)
    np.testing.assert_allclose(fast.total, full.total, rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_the_dcc_of_the_moves_of_one_loading_is_selected_above_its_priced_dose(seed: int) -> None:
    """A longer rectum (its rows, and copies at a tenth and a quarter of their dose: points
    further from the implant): on the single flips of one loading the D0.1cc is selected
    only among the points above the priced dose (the organ floor, 12 Gy) on some row, a
    strict subset of the organ, and gives the same excess, organ term and total."""
    p = problem(seed)
    A = p.A_oar["rectum"]
    p = dataclasses.replace(p, A_oar={"rectum": np.vstack([A, 0.1 * A, 0.25 * A])})
    X = np.repeat(rule_loading(p)[None], p.n_candidates, axis=0)
    X[np.arange(p.n_candidates), np.arange(p.n_candidates)] ^= True
    _, full, fast = both_ways(p, X)
    d_o = dose(p.A_oar["rectum"], X)
    above = d_o > p.soft.lowest_priced_gy(60.0)
    need = above.sum(axis=1) >= 2  # D0.1cc of 0.05 cc points: the 2nd hottest
    assert need.any() and above[need].any(axis=0).sum() < d_o.shape[1]
    np.testing.assert_array_equal(fast.hard_excess_pct, full.hard_excess_pct)
    np.testing.assert_array_equal(fast.organ_pct, full.organ_pct)
    assert (full.organ_pct > 0).all()
    np.testing.assert_allclose(fast.total, full.total, rtol=0, atol=1e-9)


def test_the_shortcut_keeps_one_prescription_per_row_of_a_sweep() -> None:
    p = problem(1)
    X = np.random.default_rng(3).random((40, p.n_candidates)) < 0.5
    rx = np.linspace(0.6, 1.6, 40) * RX_GY
    q = dataclasses.replace(p, prescription_gy=rx)
    d_t = dose(p.A_target, X).astype(np.float64)
    d_o = {"rectum": dose(p.A_oar["rectum"], X).astype(np.float64)}
    args = (q, d_t, d_o, X.sum(axis=1), np.zeros(40))
    np.testing.assert_allclose(
        terms_from_doses(*args, with_d90=False).total, terms_from_doses(*args).total, atol=1e-9
    )


@pytest.mark.parametrize("seed", range(3))
def test_every_move_is_scored_with_the_exact_objective(seed: int) -> None:
    """A flip, a seed move and a needle closing each score what ``objective`` gives the
    loading they lead to, and taking them keeps the loading's doses exact."""
    p = decisive_rows(problem(seed))
    g = np.random.default_rng(seed)
    load = Loading(p, g.random(p.n_candidates) < 0.4)
    assert load.f == pytest.approx(float(objective(p, load.x)), rel=1e-6)
    rem, add = flips(load)
    r2, a2 = Neighbourhood(p, 12.0).moves(load)
    rem, add = np.concatenate([rem, r2]), np.concatenate([add, a2])
    assert len(r2) > 0
    values = load.score(rem, add)
    for k in g.choice(len(rem), size=12, replace=False):
        x = load.x.copy()
        x[rem[k][rem[k] >= 0]] = False
        x[add[k][add[k] >= 0]] = True
        assert values[k] == pytest.approx(float(objective(p, x)), rel=1e-6)
    used = np.flatnonzero(load.count)
    move = closing(load, int(used[0]))
    x = load.x.copy()
    x[list(move.remove)] = False
    x[list(move.add)] = True
    assert not x[p.seed_needle == used[0]].any()
    assert move.f == pytest.approx(float(objective(p, x)), rel=1e-6)
    load.apply(move)
    assert load.n_needles == len(used) - 1
    np.testing.assert_allclose(load.d_t, dose(p.A_target, x), rtol=1e-6)
    assert load.f == pytest.approx(float(objective(p, load.x)), rel=1e-6)


def test_padded_moves_add_nothing_where_they_are_shorter() -> None:
    p = decisive_rows(problem(2))
    load = Loading(p, np.zeros(p.n_candidates, bool))
    both = load.score(pad([(), ()]), pad([(0, 1), (0,)]))
    one = load.score(pad([()]), pad([(0,)]))
    assert both[1] == one[0] and both[0] != one[0]


@pytest.mark.parametrize("seed", range(3))
def test_local_search_ends_at_a_local_optimum_without_getting_worse(seed: int) -> None:
    p = decisive_rows(problem(seed))
    start = np.random.default_rng(seed).random(p.n_candidates) < 0.3
    load = Loading(p, start)
    before = load.f
    neighbours = Neighbourhood(p, 12.0)
    improve(load, neighbours)
    assert load.f <= before
    assert load.f == pytest.approx(float(objective(p, load.x)), rel=1e-6)
    rem, add = flips(load)
    r2, a2 = neighbours.moves(load)
    assert load.score(np.concatenate([rem, r2]), np.concatenate([add, a2])).min() >= load.f - 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_kicks_leave_a_local_optimum_only_for_a_better_plan(seed: int) -> None:
    """The iterated search's plan is never worse than the local optimum it starts from, never
    exceeds a hard limit more, its objective is exact, and with a frozen seed the needle
    holding it is never emptied."""
    p = decisive_rows(problem(seed))
    neighbours = Neighbourhood(p, 12.0)
    load = Loading(p, np.random.default_rng(seed).random(p.n_candidates) < 0.4)
    improve(load, neighbours)
    best, kept, _ = kicked(load, neighbours, 8, np.random.default_rng(seed))
    assert best.f <= load.f and (kept == 0) == (best is load)
    assert best.hard_excess_pct() <= load.hard_excess_pct() + 1e-9  # no limit for coverage
    assert best.hard_excess_pct() == pytest.approx(float(terms(p, best.x).hard_excess_pct))
    assert best.f == pytest.approx(float(objective(p, best.x)), rel=1e-6)
    frozen = np.zeros(p.n_candidates, bool)
    frozen[np.flatnonzero(best.x)[0]] = True
    held = Loading(p, best.x, frozen=frozen)
    after, _, _ = kicked(held, neighbours, 8, np.random.default_rng(seed + 1))
    assert after.x[frozen].all()


def test_local_search_keeps_the_caps() -> None:
    p = decisive_rows(problem(0, max_seeds=5, max_needles=2))
    load = Loading(p, np.zeros(p.n_candidates, bool))
    improve(load, Neighbourhood(p, 12.0))
    assert load.n_seeds <= 5 and load.n_needles <= 2 and load.n_seeds > 0


@pytest.mark.parametrize("seed", range(4))
def test_the_default_is_never_worse_than_the_rule_loading_it_starts_from(seed: int) -> None:
    p = synthetic_problem(seed, hard=RECTUM_LIMITS, needles=5, per_needle=6)
    rule = get_optimizer("clinical").solve(p)
    res = get_optimizer("hybrid").solve(p, rng=seed, anneal_options={"iterations": 200})
    assert res.fun <= rule.fun
    assert res.fun == pytest.approx(float(objective(p, res.x)), rel=1e-6)
    assert res.extra["rule_fun"] == rule.fun
    trace = res.extra["trace_f"]
    assert (
        trace[0] == rule.fun
        and trace[-1] == pytest.approx(res.fun)
        and trace == sorted(trace, reverse=True)
    )


def test_the_thinned_search_problem_keeps_volumes_and_raises_rx_by_the_margin() -> None:
    p = synthetic_problem(0, hard=RECTUM_LIMITS, n_target=300, n_oar=90)
    q = thinned(p, 50, 0.01)
    assert q.A_target.shape[0] == 50 and q.prescription_gy == pytest.approx(1.01 * RX_GY)
    s = 2  # ceil(90 / 50)
    assert q.A_oar["rectum"].shape[0] == 45 and q.voxel_cc == pytest.approx(s * p.voxel_cc)
    assert thinned(p, 1000, 0.01) == p


@pytest.mark.parametrize(
    "options, key",
    [
        ({"effort": 0}, "effort"),
        ({"search_rows": 0}, "search_rows"),
        ({"radius_mm": -1}, "radius_mm"),
        ({"search_margin": 2}, "search_margin"),
        ({"iterations_per_candidate": 0}, "iterations_per_candidate"),
        ({"anneal_options": {"chains": 0}}, "anneal_options.chains"),
    ],
)
def test_default_options_out_of_range_are_refused_naming_the_key(options, key) -> None:
    with pytest.raises(SeedoptError, match=key.replace(".", r"\.")):
        get_optimizer("hybrid").parse_options(options)


def test_a_soft_weight_change_reaches_the_search() -> None:
    """The local search scores the problem's own weights: seeds priced out of reach leave
    fewer of them."""
    p = synthetic_problem(1, needles=5, per_needle=6)
    cheap = get_optimizer("hybrid").solve(p, rng=0, anneal_options={"iterations": 200})
    dear = dataclasses.replace(p, soft=SoftWeights(per_seed=5.0))
    res = get_optimizer("hybrid").solve(dear, rng=0, anneal_options={"iterations": 200})
    assert res.x.sum() <= cheap.x.sum()


def test_with_caps_the_default_starts_from_and_beats_the_capped_rule() -> None:
    """Under seed and needle caps the rule's loading is cut down to them (the plan every
    method's usability is judged against); the default keeps the caps and is no worse."""
    p = synthetic_problem(2, RECTUM_LIMITS, needles=5, per_needle=6, max_seeds=6, max_needles=2)
    rule = rule_loading(p)
    res = get_optimizer("hybrid").solve(p, rng=0, anneal_options={"iterations": 200})
    t = terms(p, res.x)
    assert t.n_seeds <= 6 and t.n_needles <= 2
    assert res.extra["rule_fun"] == pytest.approx(float(objective(p, rule)))
    assert res.fun <= res.extra["rule_fun"]


def test_kicks_grow_with_the_candidates_between_their_floor_and_the_budget() -> None:
    """At least ``kicks``, ``kicks_per_candidate`` x candidates where more, never more than
    ``kick_budget`` / candidates, none when ``kicks`` is 0."""
    options = HybridOptions(kicks=20, kicks_per_candidate=0.08, kick_budget=20000)
    assert kick_count(options, 15) == 20  # the floor
    assert kick_count(options, 300) == 24  # ceil(0.08 x 300)
    assert kick_count(options, 399) == 32  # ceil(31.92)
    assert kick_count(options, 507) == 20000 // 507  # 39, the budget, below ceil(40.56)
    assert kick_count(options, 1027) == 20000 // 1027  # the budget: 19
    assert kick_count(options, 2554) == 7
    assert kick_count(HybridOptions(kicks=0), 300) == 0
    assert kick_count(HybridOptions(kicks_per_candidate=0), 300) == 20
    counts = [kick_count(options, n) for n in range(10, 3000, 7)]
    assert all(k * n <= 20000 for k, n in zip(counts, range(10, 3000, 7), strict=True))
