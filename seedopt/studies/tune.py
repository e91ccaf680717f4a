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

A trial in which the annealer refuses a case (no usable plan, ``optimizer.usable``) fails
in Optuna with the refusal kept as its user attribute ``refused`` (a column of
``trials.csv``); the study goes on, and a study with no completed trial is one error.

Studies live in an Optuna storage (default SQLite in the output folder; any Optuna storage
URL lets several workers share a study) and open in optuna-dashboard.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, writable_folder
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
        * float(
            limit_value(
                problem.limit_doses(h, dose(problem.A_oar[h.structure], x)), h, problem.voxel_cc
            )
        )
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
    from sqlalchemy.exc import SQLAlchemyError

    from ..optimizer import get_optimizer

    if objective not in OBJECTIVES:
        raise SeedoptError(f"unknown tune objective {objective!r}; one of {', '.join(OBJECTIVES)}")
    writable_folder(out, "--out")
    storage = storage or f"sqlite:///{(out / 'tune.db').resolve()}"
    name = study_name or f"seedopt-{objective}"
    directions = (
        [optuna.study.StudyDirection.MINIMIZE]
        if objective == "plan"
        else [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    )
    study = open_study(storage, name, directions, seed)
    problems = _problems(specs, backend, cache_dir)
    # run, not solve: a trial scores the raw plan of its options (one the rule beats scores
    # worse, it is not refused), as the study compares option sets, not plans to present
    annealer = get_optimizer("anneal")

    def refused(trial: optuna.Trial, exc: SeedoptError, values: int) -> Any:
        """A failed trial (NaN, which Optuna records as failed) keeping the refusal."""
        trial.set_user_attr("refused", str(exc))
        return math.nan if values == 1 else (math.nan,) * values

    def plan_value(trial: optuna.Trial) -> float:
        params = {
            "t0": trial.suggest_float("t0", 1.0, 1000.0, log=True),
            "t_end": trial.suggest_float("t_end", 1e-4, 1e-1, log=True),
            "p_shift": trial.suggest_float("p_shift", 0.0, 0.45),
            "p_swap": trial.suggest_float("p_swap", 0.0, 0.45),
            "chains": trial.suggest_int("chains", 4, 64, log=True),
        }
        try:
            values = [
                annealer.run(problem, seed, anneal_options(spec, **params)).fun
                for spec, problem in problems
            ]
        except SeedoptError as exc:
            return refused(trial, exc, 1)
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
            try:
                result = annealer.run(weighted, seed, anneal_options(spec))
            except SeedoptError as exc:
                return refused(trial, exc, 2)
            scored.append(coverage_and_organ_pct(problem, result.x))
        coverage, organ = np.mean(scored, axis=0)
        return float(coverage), float(organ)

    try:
        study.optimize(plan_value if objective == "plan" else pareto_values, n_trials=trials)
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise SeedoptError(
            f"Optuna storage {storage}: failed during the study: {_first(exc)}"
        ) from None
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        why = [t.user_attrs["refused"] for t in study.trials if "refused" in t.user_attrs]
        raise SeedoptError("no trial of the study completed" + (f": {why[-1]}" if why else ""))
    try:
        _write_outputs(study, objective, out, storage)
    except OSError as exc:
        raise SeedoptError(f"cannot write the results in {out}: {exc}") from None
    return study


SQLITE_HEADER = b"SQLite format 3\x00"
OPTUNA_TABLES = {"studies", "trials", "version_info"}


def open_study(storage: str, name: str, directions: list[Any], seed: int) -> Any:
    """The Optuna study ``name`` in ``storage`` (created if absent). A storage that cannot
    be opened, a SQLite file that is not a database or holds tables of another schema (left
    untouched: Optuna would add its tables to it), or a study of other objectives is one
    error naming the storage."""
    import optuna
    from optuna.exceptions import OptunaError
    from sqlalchemy.exc import SQLAlchemyError

    check_sqlite_storage(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=optuna.samplers.TPESampler(seed=seed),
            load_if_exists=True,
        )
    except (ValueError, ImportError, RuntimeError, SQLAlchemyError, OptunaError) as exc:
        raise SeedoptError(
            f"Optuna storage {storage}: cannot open study {name!r}: {_first(exc)}"
        ) from None
    if list(study.directions) != directions:
        raise SeedoptError(
            f"Optuna storage {storage}: study {name!r} has other objectives "
            f"({', '.join(d.name.lower() for d in study.directions)}); give another --study"
        )
    return study


def check_sqlite_storage(storage: str) -> None:
    """For a ``sqlite:///FILE`` URL: FILE is absent (in a folder that exists), empty, or an
    SQLite database holding Optuna's tables (or none); else one error saying what it is."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        url = make_url(storage)
    except (SQLAlchemyError, ValueError) as exc:
        raise SeedoptError(f"Optuna storage {storage}: not a storage URL ({_first(exc)})") from None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    path = Path(url.database)
    where = f"Optuna storage {storage}"
    if path.is_dir():
        raise SeedoptError(f"{where}: {path} is a folder, not a database file")
    if not path.exists():
        if not path.parent.is_dir():
            raise SeedoptError(f"{where}: the folder {path.parent} does not exist")
        return
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise SeedoptError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if not header:
        return
    if header != SQLITE_HEADER:
        raise SeedoptError(f"{where}: {path} is not an SQLite database")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            check = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        raise SeedoptError(f"{where}: {path} is a damaged SQLite database ({exc})") from None
    if check != "ok":
        raise SeedoptError(f"{where}: {path} is a damaged SQLite database ({check})")
    if tables and not OPTUNA_TABLES <= tables:
        raise SeedoptError(
            f"{where}: {path} is an SQLite database of another schema (tables "
            f"{', '.join(sorted(tables)[:6])}), not an Optuna study store"
        )


def _first(exc: BaseException) -> str:
    """The first line of an exception's message (SQLAlchemy appends SQL and links)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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
