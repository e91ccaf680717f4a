"""``seedopt tune``: Optuna studies over a set of cases.

Each case's problem (dose matrix from the HDF5 cache) is built once; every trial then runs
the annealer on every case with the trial's parameters and the same random seed.

- ``objective="plan"`` tunes the annealer's hyperparameters (t0, t_end, p_shift, p_swap,
  chains) at the config's iteration budget; the value is the mean over cases of the exact
  plan objective (lower is better; ``optimizer/objective.py``).
- ``objective="pareto"`` samples the soft-goal weights (``goals.weights``: organ_per_pct,
  organ_floor, v150_per_pct, per_seed) and scores two objectives: target coverage (mean over
  cases of D90 as % of the prescription, maximised) against organ dose (mean over cases of
  the highest hard-limit metric as % of its limit, minimised). The study's best trials are
  the Pareto front.

Studies live in an Optuna storage (default SQLite in the output folder; any Optuna storage
URL lets several workers share a study) and open in optuna-dashboard.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..backend import Backend
from ..errors import SeedoptError
from ..optimizer import PlanProblem
from ..plan_config import PlanSpec
from .specs import anneal_options

OBJECTIVES = ("plan", "pareto")


def _problems(
    specs: list[PlanSpec], backend: Backend, cache_dir: Path | None
) -> list[tuple[PlanSpec, PlanProblem]]:
    from ..pipeline import prepare

    return [(spec, prepare(spec, backend, cache_dir).problem) for spec in specs]


def coverage_and_organ_pct(problem: PlanProblem, x: np.ndarray) -> tuple[float, float]:
    """D90 of the target rows as % of the prescription, and the highest hard-limit metric
    as % of its limit (0 without limits), for loading ``x``."""
    from ..optimizer.objective import dose, limit_value, terms

    t = terms(problem, x)
    coverage = 100.0 * float(t.d90_gy) / float(problem.prescription_gy)
    organ = [
        100.0
        * float(limit_value(dose(problem.A_oar[h.structure], x), h, problem.voxel_cc))
        / h.max_gy
        for h in problem.hard
    ]
    return coverage, max(organ, default=0.0)


def tune(
    specs: list[PlanSpec],
    backend: Backend,
    out: Path,
    *,
    trials: int,
    objective: str = "plan",
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Any:
    """Run ``trials`` trials of an Optuna study (see the module docstring); returns the
    study. Writes ``trials.csv`` and ``best.json`` (``pareto``: also ``pareto.csv`` and
    ``pareto.png``) in ``out``."""
    import optuna

    from ..optimizer import get_optimizer

    if objective not in OBJECTIVES:
        raise SeedoptError(f"unknown tune objective {objective!r}; one of {', '.join(OBJECTIVES)}")
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'tune.db').resolve()}"
    name = study_name or f"seedopt-{objective}"
    directions = (
        [optuna.study.StudyDirection.MINIMIZE]
        if objective == "plan"
        else [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=optuna.samplers.TPESampler(seed=seed),
            load_if_exists=True,
        )
    except (ValueError, ImportError, optuna.exceptions.OptunaError) as exc:
        raise SeedoptError(f"cannot open the Optuna study {name!r} at {storage}: {exc}") from None
    if list(study.directions) != directions:
        raise SeedoptError(f"study {name!r} at {storage} has other objectives than {objective!r}")
    problems = _problems(specs, backend, cache_dir)
    annealer = get_optimizer("anneal")

    def plan_value(trial: optuna.Trial) -> float:
        params = {
            "t0": trial.suggest_float("t0", 1.0, 1000.0, log=True),
            "t_end": trial.suggest_float("t_end", 1e-4, 1e-1, log=True),
            "p_shift": trial.suggest_float("p_shift", 0.0, 0.45),
            "p_swap": trial.suggest_float("p_swap", 0.0, 0.45),
            "chains": trial.suggest_int("chains", 4, 64, log=True),
        }
        values = [
            annealer.solve(problem, seed, anneal_options(spec, **params)).fun
            for spec, problem in problems
        ]
        return float(np.mean(values))

    def pareto_values(trial: optuna.Trial) -> tuple[float, float]:
        scored = []
        for spec, problem in problems:
            w = dataclasses.replace(
                spec.goals.weights,
                organ_per_pct=trial.suggest_float("organ_per_pct", 1e-3, 10.0, log=True),
                organ_floor=trial.suggest_float("organ_floor", 0.0, 1.0),
                v150_per_pct=trial.suggest_float("v150_per_pct", 0.0, 0.2),
                per_seed=trial.suggest_float("per_seed", 0.0, 0.5),
            )
            weighted = dataclasses.replace(problem, soft=w)
            result = annealer.solve(weighted, seed, anneal_options(spec))
            scored.append(coverage_and_organ_pct(problem, result.x))
        coverage, organ = np.mean(scored, axis=0)
        return float(coverage), float(organ)

    study.optimize(plan_value if objective == "plan" else pareto_values, n_trials=trials)
    _write_outputs(study, objective, out, storage)
    return study


def _write_outputs(study: Any, objective: str, out: Path, storage: str) -> None:
    frame = study.trials_dataframe()
    with atomic_path(out / "trials.csv") as tmp:
        frame.to_csv(tmp, index=False)
    best: dict[str, Any] = {"study": study.study_name, "storage": storage, "objective": objective}
    if objective == "plan":
        best.update(value=study.best_value, params=study.best_params, trial=study.best_trial.number)
    else:
        front = sorted(study.best_trials, key=lambda t: t.values[0])
        best["pareto_front"] = [
            {
                "trial": t.number,
                "coverage_pct": t.values[0],
                "organ_pct": t.values[1],
                "params": t.params,
            }
            for t in front
        ]
        write_pareto(study, front, out)
    with atomic_path(out / "best.json") as tmp:
        tmp.write_text(json.dumps(best, indent=2) + "\n")


def write_pareto(study: Any, front: list[Any], out: Path) -> None:
    """``pareto.csv`` (the front: trial, coverage_pct, organ_pct, parameters) and
    ``pareto.png`` (every trial, the front joined)."""
    import pandas as pd

    from ..figures import _pyplot

    table = pd.DataFrame(
        [
            {"trial": t.number, "coverage_pct": t.values[0], "organ_pct": t.values[1], **t.params}
            for t in front
        ]
    )
    with atomic_path(out / "pareto.csv") as tmp:
        table.to_csv(tmp, index=False)
    done = [t for t in study.trials if t.values is not None]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter(
        [t.values[1] for t in done], [t.values[0] for t in done], s=14, c="0.6", label="trials"
    )
    ax.plot(table["organ_pct"], table["coverage_pct"], "o-", color="C3", label="Pareto front")
    ax.set_xlabel("organ dose: highest hard-limit metric (% of its limit)")
    ax.set_ylabel("target coverage: D90 (% of prescription)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out / "pareto.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
