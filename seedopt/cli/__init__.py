"""Command line: ``seedopt COMMAND``. The CLI sits on top of the library: it imports
``seedopt``'s modules and nothing in the library imports it. Bad input gives one line on
stderr and exit code 2."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from .. import __version__
from ..errors import SeedoptError
from ..notes import Note
from ..output_set import os_reason
from . import commands, replan, report_cmd, robustness, studies, template
from .options import EXIT_BAD_INPUT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seedopt")
def cli() -> None:
    """seedopt: inverse planning for permanent I-125 seed brachytherapy (TG-43U1 dose)."""


for _command in (
    commands.sources_cmd,
    commands.source_table_cmd,
    commands.dose_cmd,
    commands.commission_cmd,
    commands.plan_cmd,
    commands.init_case_cmd,
    commands.evaluate_cmd,
    robustness.robustness_cmd,
    replan.replan_cmd,
    report_cmd.report_cmd,
    template.template_cmd,
    studies.batch_cmd,
    studies.escalate_cmd,
    studies.tune_cmd,
):
    cli.add_command(_command)


_show_warning = warnings.showwarning


def _show_note(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """A library ``Note`` as one line ``seedopt: note: ...``; other warnings as Python shows
    them."""
    if issubclass(category, Note):
        click.echo(f"seedopt: note: {message}", err=True)
    else:
        _show_warning(message, category, *args, **kwargs)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: one clear line and exit code 2 on bad input, never a traceback; notes
    as one line each."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", Note)
        warnings.showwarning = _show_note
        return _run(argv)


def _run(argv: list[str] | None) -> Any:
    try:
        return cli.main(args=argv, prog_name="seedopt", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("seedopt: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"seedopt: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except SeedoptError as exc:
        click.echo(f"seedopt: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a file system fault not met where it happened: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"seedopt: error: {where}{os_reason(exc)}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except MemoryError:
        click.echo(
            "seedopt: error: out of memory; use fewer points or seeds, float16 storage "
            "or a truncation radius",
            err=True,
        )
        sys.exit(EXIT_BAD_INPUT)
