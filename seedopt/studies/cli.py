"""The study commands of ``seedopt``: ``batch``, ``escalate`` and ``tune``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..cli import backend_option, cli

config_paths = click.argument(
    "configs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
cache_option = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Dose-matrix cache folder (default: $SEEDOPT_CACHE or ~/.cache/seedopt).",
)


def _cache(cache: Path | None) -> Path:
    from ..dose.cache import default_cache_dir

    return cache or default_cache_dir()


@cli.command("batch")
@config_paths
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="results.h5; parts and logs go beside it (OUT.parts/, OUT.logs/).",
)
@click.option(
    "--variants",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML mapping variant name -> config overrides (default: one variant, base).",
)
@click.option("--method", "methods", multiple=True, help="Optimizer; repeat for several.")
@click.option("--seed", type=int, help="Random seed of every task (default: each config's).")
@click.option("--address", help="Join this Ray cluster (default: an embedded local Ray).")
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
    workers: int | None,
    save_dose: bool,
    retry_failed: bool,
    cache: Path | None,
    backend: str,
) -> None:
    """Plan every CONFIG in every variant on Ray into OUT; run it again to resume.

    Exit code 0 when every plan meets its goals, 3 when one misses a goal, 4 when a task
    failed (the summary and OUT.logs/ say why)."""
    from .batch import format_summary, make_tasks, run_batch

    if backend not in ("auto", "cpu", "gpu"):
        raise click.BadParameter(f"unknown backend {backend!r}", param_hint="--backend")
    tasks = make_tasks(list(configs), variants, methods, seed, save_dose)
    summary = run_batch(
        tasks,
        out,
        backend=backend,
        address=address,
        workers=workers,
        cache_dir=_cache(cache),
        retry_failed=retry_failed,
        echo=lambda line: click.echo(line, err=True),
    )
    click.echo(format_summary(summary))
    click.echo(f"wrote {out} (logs in {out.name}.logs/)", err=True)
    sys.exit(summary.exit_code)
