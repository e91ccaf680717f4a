"""The study commands of ``seedopt``: ``batch``, ``escalate`` and ``tune``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from ..atomic import writable_folder
from .options import SEED, backend_option, cache_folder, cache_option, echo_backend

config_paths = click.argument(
    "configs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)


def out_option(folder: bool, help: str):  # type: ignore[no-untyped-def]
    """``--out``: a file (``folder=False``) or a folder, required."""
    kind = click.Path(file_okay=not folder, dir_okay=folder, path_type=Path)
    return click.option("--out", type=kind, required=True, help=help)


@click.command("batch")
@config_paths
@out_option(False, "results.h5; parts and logs go beside it (OUT.parts/, OUT.logs/).")
@click.option(
    "--variants",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML mapping variant name -> config overrides (default: one variant, base).",
)
@click.option("--method", "methods", multiple=True, help="Optimizer; repeat for several.")
@click.option("--seed", type=SEED, help="Random seed of every task (default: each config's).")
@click.option("--address", help="Join this Ray cluster (default: an embedded local Ray).")
@click.option(
    "--connect-timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="With --address: give up when the cluster does not answer within this time.",
)
@click.option("--workers", type=click.IntRange(min=1), help="CPUs of the local Ray.")
@click.option("--save-dose", is_flag=True, help="Keep each plan's dose grid in the results.")
@click.option("--retry-failed", is_flag=True, help="Run failed tasks again on resume.")
@cache_option
@backend_option
def batch_cmd(
    configs: tuple[Path, ...],
    out: Path,
    variants: Path | None,
    methods: tuple[str, ...],
    seed: int | None,
    address: str | None,
    connect_timeout_s: float,
    workers: int | None,
    save_dose: bool,
    retry_failed: bool,
    cache: Path | None,
    backend: str,
) -> None:
    """Plan every CONFIG in every variant on Ray into OUT; run it again to resume.

    Exit code 0 when every plan meets its goals, 3 when one misses a goal, 4 when a task
    failed (the summary and OUT.logs/ say why)."""
    from ..studies.batch import format_summary, make_tasks, run_batch

    if backend not in ("auto", "cpu", "gpu"):
        raise click.BadParameter(f"unknown backend {backend!r}", param_hint="--backend")
    if address and workers:
        raise click.UsageError(
            "--workers sizes the local Ray; with --address the cluster's CPUs plan"
        )
    tasks = make_tasks(list(configs), variants, methods, seed, save_dose)
    summary = run_batch(
        tasks,
        out,
        backend=backend,
        address=address,
        workers=workers,
        connect_timeout_s=connect_timeout_s,
        cache_dir=cache_folder(cache),
        retry_failed=retry_failed,
        echo=lambda line: click.echo(line, err=True),
    )
    click.echo(format_summary(summary))
    click.echo(f"wrote {out} (logs in {out.name}.logs/)", err=True)
    sys.exit(summary.exit_code)


def _levels(text: str | None, what: str):  # type: ignore[no-untyped-def]
    from ..studies.specs import parse_levels

    return None if text is None else parse_levels(text, what)


@click.command("escalate")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rx", required=True, help="Prescriptions, Gy: start:stop:step or a,b,c.")
@click.option("--strength-u", help="Seed strengths, U: start:stop:step or a,b,c.")
@click.option("--pitch-mm", help="Seed pitches along the needles, mm.")
@click.option("--max-needles", help="Needle-count limits, e.g. 4,6,8.")
@out_option(True, "Folder for escalation.h5, escalation.csv and escalation.png.")
@click.option("--seed", type=SEED, help="Random seed (default: the config's).")
@click.option("--chains-per-level", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--iterations", type=click.IntRange(min=1), help="Default: the config's.")
@cache_option
@backend_option
def escalate_cmd(
    config: Path,
    rx: str,
    strength_u: str | None,
    pitch_mm: str | None,
    max_needles: str | None,
    out: Path,
    seed: int | None,
    chains_per_level: int,
    iterations: int | None,
    cache: Path | None,
    backend: str,
) -> None:
    """Plan CONFIG at every prescription level (and strength, pitch, needle limit): the
    achievable target dose and what it costs the organs."""
    from ..plan_config import load_plan_spec
    from ..studies.escalate import escalate, escalation_figure, write_table
    from ..studies.specs import parse_levels

    levels = parse_levels(rx, "--rx")
    strengths = _levels(strength_u, "--strength-u")
    pitches = _levels(pitch_mm, "--pitch-mm")
    needles = _levels(max_needles, "--max-needles")
    if needles is not None and not np.all(needles == np.round(needles)):
        raise click.BadParameter("needle limits must be whole numbers", param_hint="--max-needles")
    spec = load_plan_spec(config)
    writable_folder(out, "--out")  # before the sweep, not after it
    table = escalate(
        spec,
        echo_backend(backend),
        levels,
        strengths_u=strengths,
        pitches_mm=pitches,
        needle_limits=needles,
        seed=seed,
        chains_per_level=chains_per_level,
        iterations=iterations,
        cache_dir=cache_folder(cache),
        progress=True,
    )
    attrs = {
        "config": str(config),
        "case": spec.name,
        "seed": seed if seed is not None else spec.optimizer.seed,
        "rx": rx,
    }
    written = write_table(table, out, attrs)
    written.append(escalation_figure(table, spec, out / "escalation.png"))
    with pd_options():
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    click.echo(f"wrote {', '.join(p.name for p in written)} in {out}/", err=True)


def pd_options():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", 40)


@click.command("tune")
@config_paths
@out_option(True, "Folder for tune.db (default storage), trials.csv, best.json, pareto.csv/png.")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--objective",
    type=click.Choice(["plan", "pareto"]),
    default="plan",
    show_default=True,
    help="plan: annealer hyperparameters; pareto: goal weights, coverage against organ dose.",
)
@click.option("--storage", help="Optuna storage URL (default: sqlite:///OUT/tune.db).")
@click.option("--study", "study_name", help="Study name (default: seedopt-OBJECTIVE).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Sampler and plan seed.")
@cache_option
@backend_option
def tune_cmd(
    configs: tuple[Path, ...],
    out: Path,
    trials: int,
    objective: str,
    storage: str | None,
    study_name: str | None,
    seed: int,
    cache: Path | None,
    backend: str,
) -> None:
    """Tune the optimizer over CONFIGS with Optuna, or trace the coverage / organ-dose
    Pareto front (--objective pareto)."""
    from ..studies.specs import load_specs
    from ..studies.tune import tune

    specs = [spec for _, spec in load_specs(list(configs))]
    if storage is not None and "://" not in storage:
        raise click.BadParameter(
            f"{storage!r} is not a storage URL (e.g. sqlite:///tune.db)", param_hint="--storage"
        )
    study = tune(
        specs,
        echo_backend(backend),
        out,
        trials=trials,
        objective=objective,
        storage=storage,
        study_name=study_name,
        seed=seed,
        cache_dir=cache_folder(cache),
    )
    if objective == "plan":
        click.echo(
            f"best objective {study.best_value:.3f} (trial {study.best_trial.number}): "
            + ", ".join(f"{k}={v:.4g}" for k, v in study.best_params.items())
        )
    else:
        click.echo(f"Pareto front: {len(study.best_trials)} of {len(study.trials)} trials")
        for t in sorted(study.best_trials, key=lambda t: t.values[0]):
            click.echo(
                f"  trial {t.number:3}: D90 {t.values[0]:6.1f} % of Rx, organ "
                f"{t.values[1]:6.1f} % of limit"
            )
    used = storage or f"sqlite:///{(out / 'tune.db').resolve()}"
    click.echo(f"study {study.study_name} in {used}; view: optuna-dashboard {used}", err=True)
