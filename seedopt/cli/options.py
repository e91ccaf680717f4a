"""Options and helpers shared by the ``seedopt`` commands."""

from __future__ import annotations

from pathlib import Path

import click

from ..backend import Backend, select_backend
from ..config_types import MAX_SEED

EXIT_BAD_INPUT = 2
EXIT_GOALS_MISSED = 3


class SeedType(click.ParamType):
    """A random seed: a whole number from 0 to ``MAX_SEED``, as ``optimizer.seed``."""

    name = "seed"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        try:
            seed: int | None = int(str(value), 10)
        except ValueError:
            seed = None
        if seed is None or not 0 <= seed <= MAX_SEED:
            self.fail(f"{value}: a seed is a whole number from 0 to {MAX_SEED}", param, ctx)
        return seed


SEED = SeedType()


def echo_backend(request: str) -> Backend:
    """The backend ``request`` selects, saying on stderr which one and why."""
    backend, message = select_backend(request)
    click.echo(message, err=True)
    return backend


backend_option = click.option(
    "--backend",
    default="auto",
    show_default=True,
    metavar="[auto|cpu|gpu]",
    help="Where to compute dose: auto takes the GPU when CuPy and a device answer.",
)
cache_option = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Dose-matrix cache folder (default: $SEEDOPT_CACHE or ~/.cache/seedopt).",
)


def cache_folder(cache: Path | None) -> Path:
    """The dose-matrix cache folder: ``--cache``, else the default."""
    from ..dose.cache import default_cache_dir

    return cache or default_cache_dir()


formalism_option = click.option(
    "--formalism",
    default="2d",
    show_default=True,
    metavar="[2d|1d]",
    help="TG-43U1 2D line source (F(r,theta)) or 1D (phi_an(r)).",
)
config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The case's config (default: the one plan.json records, if unchanged since).",
)
