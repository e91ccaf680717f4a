"""Specification of the device path: the planning loop runs on the array module of the dose
matrices (NumPy or CuPy), with the same quality on both, and memory trouble is one clear line.

Tests taking the ``backend`` fixture run on the CPU here and also on the GPU where one answers.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from seedopt.optimizer import PlanProblem, get_optimizer, objective
from seedopt.optimizer.anneal import state_nbytes
from seedopt.optimizer.synthetic import RECTUM_LIMITS, synthetic_problem
from test_optimizers import brute_force
from test_planning import SMALL

from seedopt.backend import Backend, cpu_backend
from seedopt.errors import SeedoptError
from seedopt.plan_config import PlanSpec
from seedopt.planning import plan_case


def on_backend(problem: PlanProblem, backend: Backend) -> PlanProblem:
    """The same problem with its matrices on ``backend``'s device."""
    return dataclasses.replace(
        problem,
        A_target=backend.asarray(problem.A_target),
        A_oar={k: backend.asarray(v) for k, v in problem.A_oar.items()},
    )


@pytest.mark.parametrize("seed", [0, 3])
def test_anneal_on_the_device_reaches_the_brute_force_optimum(backend: Backend, seed: int) -> None:
    host = synthetic_problem(seed, RECTUM_LIMITS)
    _, best = brute_force(host)
    res = get_optimizer("anneal").solve(on_backend(host, backend), rng=seed)
    assert isinstance(res.x, np.ndarray) and res.x.dtype == np.bool_  # results come home
    assert isinstance(res.extra["trace"], np.ndarray)
    assert res.fun == pytest.approx(best, rel=1e-6)
    assert res.fun == pytest.approx(float(objective(host, res.x)), rel=1e-6)


def test_a_fixed_seed_gives_the_same_plan_on_the_same_backend(backend: Backend) -> None:
    problem = on_backend(synthetic_problem(2, RECTUM_LIMITS, needles=6, per_needle=6), backend)
    a, b = (get_optimizer("anneal").solve(problem, rng=11, iterations=500) for _ in range(2))
    assert np.array_equal(a.x, b.x) and a.fun == b.fun
    assert np.array_equal(a.extra["trace"], b.extra["trace"])


def test_anneal_refuses_a_state_that_cannot_fit_with_one_line() -> None:
    problem = synthetic_problem(0, RECTUM_LIMITS)
    chains = 10**12
    assert state_nbytes(problem, chains) > 10**15
    with pytest.raises(SeedoptError, match=r"annealing 1000000000000 chains needs about .* GiB"):
        get_optimizer("anneal").solve(problem, chains=chains, iterations=1)


def test_running_out_of_memory_while_optimizing_is_one_clear_error(monkeypatch) -> None:
    from seedopt.optimizer.anneal import SimulatedAnnealingOptimizer

    def exhausted(*args, **kwargs):
        raise MemoryError("cannot allocate 12.0 GiB")

    monkeypatch.setattr(SimulatedAnnealingOptimizer, "solve", exhausted)
    spec = PlanSpec.model_validate(copy.deepcopy(SMALL))
    with pytest.raises(
        SeedoptError, match=r"out of memory on the cpu while optimizing with anneal"
    ):
        plan_case(spec, cpu_backend(), cache_dir=None)


@pytest.mark.gpu
def test_gpu_plans_are_as_good_as_cpu_plans(tmp_path: Path) -> None:
    """The backends draw different random streams, so their plans differ; the GPU plan's
    objective must lie within the spread of CPU plans over five seeds (plus 2 %), and both
    meet every goal of the small case."""
    from seedopt.backend import select_backend

    spec = PlanSpec.model_validate(copy.deepcopy(SMALL))
    cpu = [plan_case(spec, cpu_backend(), seed=s, cache_dir=tmp_path) for s in range(5)]
    gpu = plan_case(spec, select_backend("gpu")[0], seed=0, cache_dir=None)
    worst = max(p.metrics["objective"] for p in cpu)
    assert gpu.metrics["objective"] <= worst * 1.02
    assert gpu.goals_met and all(p.goals_met for p in cpu)
