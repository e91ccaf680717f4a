"""Specification of which plans a method presents (``optimizer.usable``): a plan at least as
good as the rule-based loading on the exact objective, or proven optimal; otherwise one line
naming the method, what went wrong in numbers and what to use instead, in the library, on
the command line, in a batch, a tune study and the cohort benchmark."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from seedopt.optimizer import OptimizeResult, PlanProblem, get_optimizer, objective, terms
from seedopt.optimizer.anneal import SimulatedAnnealingOptimizer
from seedopt.optimizer.clinical import clinical_ranking
from seedopt.optimizer.synthetic import RECTUM_LIMITS, synthetic_problem
from seedopt.optimizer.usable import require_usable, rule_loading
from study_cases import tiny_config
from test_planning import SMALL

from seedopt.cli import main
from seedopt.errors import SeedoptError
from seedopt.studies import make_tasks
from seedopt.studies.batch import plan_task

REFUSAL = re.compile(
    r"^(?P<method>\w+) (?P<what>.+) with D90 (?P<d90>\d+\.\d\d) x Rx, objective (?P<fun>\S+) "
    r"vs (?P<rule>\S+) for the rule-based loading; use method hybrid \(the default\)"
    r"(?P<raise>, or raise \w+)?$"
)
"""The one line of a refusal."""

CUT_SHORT = synthetic_problem(2, (), n_target=150, needles=8, per_needle=5)
"""A problem on which one branch-and-bound node leaves milp worse than the rule."""


def rule_objective(problem: PlanProblem) -> float:
    return float(objective(problem, rule_loading(problem)))


def refusal(call: object) -> re.Match[str]:
    """The parsed message of the ``SeedoptError`` that ``call()`` raises."""
    with pytest.raises(SeedoptError) as refused:
        call()  # type: ignore[operator]
    match = REFUSAL.match(str(refused.value))
    assert match, str(refused.value)
    return match


# the reference ------------------------------------------------------------------------------


def test_the_rule_based_loading_is_what_the_clinical_method_loads() -> None:
    for problem in (synthetic_problem(0, RECTUM_LIMITS, needles=6, per_needle=6), CUT_SHORT):
        assert np.array_equal(rule_loading(problem), get_optimizer("clinical").solve(problem).x)


def test_the_rule_based_loading_keeps_the_caps_in_rule_order() -> None:
    problem = synthetic_problem(0, (), needles=6, per_needle=6, max_seeds=5, max_needles=2)
    x = rule_loading(problem)
    t = terms(problem, x)
    assert 0 < int(t.n_seeds) <= 5 and int(t.n_needles) <= 2
    ranking = clinical_ranking(problem)
    needles = list(dict.fromkeys(problem.seed_needle[ranking]))[:2]  # the first two it reaches
    allowed = ranking[np.isin(problem.seed_needle[ranking], needles)][:5]
    assert set(np.flatnonzero(x)) == set(allowed[: int(x.sum())])


def test_the_rule_needs_the_candidates_geometry() -> None:
    problem = dataclasses.replace(synthetic_problem(0), geometry=None)
    with pytest.raises(SeedoptError, match=r"geometry \(PlanProblem.geometry\)"):
        rule_loading(problem)


# what is presented ----------------------------------------------------------------------------


def test_a_plan_no_worse_than_the_rule_is_presented_with_the_rules_objective() -> None:
    problem = synthetic_problem(0)
    res = get_optimizer("milp").solve(problem)
    assert res.extra["rule_objective"] == rule_objective(problem)
    assert res.fun <= res.extra["rule_objective"]


def test_a_proven_optimum_is_presented_without_the_comparison() -> None:
    problem = synthetic_problem(0, (RECTUM_LIMITS[0],), n_target=30, per_needle=3)
    res = get_optimizer("milp").solve(problem, formulation="exact", mip_rel_gap=0.0)
    assert res.status == 0 and res.extra["rule_objective"] is None
    one_seed = np.zeros(problem.n_candidates, dtype=bool)
    one_seed[0] = True
    poor = dataclasses.replace(res, x=one_seed, fun=float(objective(problem, one_seed)))
    assert poor.fun > rule_objective(problem)
    assert require_usable(problem, poor, what="proved", proven_optimal=True) is poor


def test_an_empty_plan_is_never_presented() -> None:
    problem = synthetic_problem(0, (RECTUM_LIMITS[0],))
    empty = OptimizeResult(np.zeros(problem.n_candidates, bool), 1000.0, True, 0, "", 0, 0, "x", 1)
    with pytest.raises(SeedoptError, match=r"^x proved it optimal and loads no seed; use method"):
        require_usable(problem, empty, what="proved it optimal", proven_optimal=True)


def test_a_near_empty_plan_is_refused_even_where_the_rule_scores_worse() -> None:
    """On an unreachable problem the rule breaks a limit and scores badly; a plan covering
    less than half the prescription is still no treatment plan."""
    problem = synthetic_problem(0, (RECTUM_LIMITS[0],))
    one = np.zeros(problem.n_candidates, bool)
    one[0] = True
    few = OptimizeResult(one, 0.0, True, 0, "", 0, 0, "x", 1)  # fun below any rule's
    with pytest.raises(SeedoptError, match=r"^x stopped with D90 0\.\d\d x Rx, below 0\.5 x Rx"):
        require_usable(problem, few, what="stopped")


# refusals -------------------------------------------------------------------------------------


def test_milp_cut_short_refuses_and_names_hybrid_and_the_limit() -> None:
    milp = get_optimizer("milp")
    raw = milp.run(CUT_SHORT, None, milp.parse_options(node_limit=1))
    assert raw.status == 1 and raw.extra["stopped_by"] == "node_limit"
    m = refusal(lambda: milp.solve(CUT_SHORT, node_limit=1))
    assert m["method"] == "milp" and m["what"] == "stopped at its node limit (node_limit=1)"
    assert m["raise"] == ", or raise node_limit"
    # the numbers are the exact objective of both plans and the plan's D90 over all rows
    assert float(m["fun"]) == pytest.approx(raw.fun, rel=1e-3)
    assert float(m["rule"]) == pytest.approx(rule_objective(CUT_SHORT), rel=1e-3)
    d90 = float(terms(CUT_SHORT, raw.x).d90_gy) / CUT_SHORT.prescription_gy
    assert float(m["d90"]) == pytest.approx(d90, abs=0.005)


def test_a_surrogate_optimum_is_judged_on_the_exact_objective() -> None:
    """On 3 target rows the penalty model's proven optimum covers 3 points: optimal for the
    model, far worse than the rule on every row of the exact objective, so refused."""
    problem = synthetic_problem(0)
    milp = get_optimizer("milp")
    raw = milp.run(problem, None, milp.parse_options(max_points=3))
    assert raw.status == 0 and raw.extra["model_objective"] < raw.fun
    m = refusal(lambda: milp.solve(problem, max_points=3))
    assert m["what"].startswith("solved its linear-penalty surrogate (optimal within")
    assert m["raise"] is None and float(m["fun"]) > float(m["rule"])


def test_lp_refuses_a_local_minimum_worse_than_the_rule() -> None:
    m = refusal(lambda: get_optimizer("lp").solve(CUT_SHORT))
    assert m["method"] == "lp" and m["raise"] is None
    assert re.fullmatch(
        r"rounded its LP relaxation and repaired it into a local minimum after \d+ flips",
        m["what"],
    )


def test_lp_cut_short_names_the_limit_to_raise() -> None:
    m = refusal(lambda: get_optimizer("lp").solve(synthetic_problem(0), repair_steps=0))
    assert m["what"] == "stopped repairing at its step limit (repair_steps=0)"
    assert m["raise"] == ", or raise repair_steps"


# where a refusal shows ------------------------------------------------------------------------


def refusing_config(folder: Path) -> Path:
    """The small case planned by milp with one branch-and-bound node on a model of 30 target
    points (refused: worse than the rule-based loading)."""
    config = copy.deepcopy(SMALL)
    config["optimizer"] = {"method": "milp", "options": {"node_limit": 1, "max_points": 30}}
    path = folder / "refused.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_command_line_shows_a_refusal_as_one_error_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "seedopt", "plan", str(refusing_config(tmp_path)), "--out", "o"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("seedopt: error: milp stopped at its node limit (node_limit=1)")
    assert REFUSAL.match(last.removeprefix("seedopt: error: ")), last
    assert not (tmp_path / "o").exists()


def test_a_batch_records_a_refusal_as_its_tasks_error(tmp_path: Path) -> None:
    (task,) = make_tasks([refusing_config(tmp_path)])
    record = plan_task(task, "cpu", str(tmp_path / "cache"))["attrs"]
    assert record["status"] == "failed" and "milp stopped at its node limit" in record["error"]
    assert "use method hybrid (the default)" in record["error"]


def test_a_tune_trial_with_a_refusal_fails_and_the_study_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials score the annealer's raw ``run`` (no comparison with the rule); a SeedoptError
    there (e.g. the memory check) fails that trial only."""
    run_ = SimulatedAnnealingOptimizer.run
    calls = []

    def first_refused(self, problem, rng, options, x0=None):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise SeedoptError("anneal stopped early; use method hybrid (the default)")
        return run_(self, problem, rng, options, x0)

    monkeypatch.setattr(SimulatedAnnealingOptimizer, "run", first_refused)
    config = tiny_config(tmp_path, "a", iterations=100)
    out = tmp_path / "tune"
    args = ["tune", str(config), "--trials", "2", "--out", str(out), "--backend", "cpu"]
    try:
        main([*args, "--cache", str(tmp_path / "cache")])
    except SystemExit as exc:
        assert not exc.code
    study = optuna.load_study(study_name="seedopt-plan", storage=f"sqlite:///{out / 'tune.db'}")
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert first.user_attrs["refused"].startswith("anneal stopped early")
    assert second.state == optuna.trial.TrialState.COMPLETE
    assert json.loads((out / "best.json").read_text())["trial"] == 1
    assert "user_attrs_refused" in pd.read_csv(out / "trials.csv").columns


def test_a_tune_study_with_every_trial_refused_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(self, problem, rng, options, x0=None):  # type: ignore[no-untyped-def]
        raise SeedoptError("anneal stopped early; use method hybrid (the default)")

    monkeypatch.setattr(SimulatedAnnealingOptimizer, "run", refused)
    config = tiny_config(tmp_path, "a", iterations=100)
    args = ["tune", str(config), "--trials", "1", "--out", str(tmp_path / "t"), "--backend", "cpu"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--cache", str(tmp_path / "cache")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err == "seedopt: error: no trial of the study completed: anneal stopped early; use "
        "method hybrid (the default)"
    )


def test_the_cohort_benchmark_records_a_refusal_as_a_row(tmp_path: Path) -> None:
    bench = Path(__file__).parents[1] / "benchmarks" / "bench_cohort.py"
    cmd = [sys.executable, str(bench), "--cases", "tiny_vertebral", "--methods", "clinical,milp"]
    r = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (written,) = tmp_path.glob("*.json")
    clinical, milp = json.loads(written.read_text())["rows"]
    assert "D90_over_rx" in clinical and "refused" not in clinical
    assert REFUSAL.match(milp["refused"]) and milp["seconds"] > 0 and "D90_over_rx" not in milp
    md = next(tmp_path.glob("*.md")).read_text()
    assert "| milp | 0 of 1 (1 refused) |" in md and "| milp | refused: milp " in md
