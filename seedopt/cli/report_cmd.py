"""``seedopt report``: the implant report of a finished plan, as a PDF and an HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import SeedoptError
from .options import config_option


@click.command("report")
@click.argument("plan_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The PDF (NAME.pdf); the HTML page NAME.html is written beside it.",
)
@config_option
@click.option(
    "--robustness",
    type=click.Path(file_okay=False, path_type=Path),
    help="A `seedopt robustness` output folder of this plan: its table is shown.",
)
@click.option("--implant-date", metavar="YYYY-MM-DD", help="Day of the implant (default: today).")
@click.option(
    "--calibration-date",
    metavar="YYYY-MM-DD",
    help="Date of the seeds' calibration: the report gives the strength they need on it.",
)
def report_cmd(
    plan_dir: Path,
    out: Path,
    config: Path | None,
    robustness: Path | None,
    implant_date: str | None,
    calibration_date: str | None,
) -> None:
    """The implant report of the plan in PLAN_DIR: case and prescription, source strength on
    the implant date, the needles in insertion order with their seeds and spacers, the goals,
    the DVH, isodose lines on slices through the target (and the re-irradiation and
    robustness tables when there are some). Writes --out (PDF) and the HTML page beside it,
    both or neither."""
    from ..atomic import atomic_path, writable_folder
    from ..implant_report import gather, parse_date
    from ..implant_report_render import write_html, write_pdf

    if out.suffix.lower() != ".pdf":
        raise SeedoptError(f"--out {out}: the report's name must end in .pdf")
    page = out.with_suffix(".html")
    report = gather(
        plan_dir,
        config,
        robustness,
        parse_date(implant_date, "--implant-date") if implant_date else None,
        parse_date(calibration_date, "--calibration-date") if calibration_date else None,
    )
    writable_folder(out.parent, f"--out {out}")
    try:
        # both files are complete on disk before either replaces its name
        with atomic_path(page) as html_tmp, atomic_path(out) as pdf_tmp:
            pages = write_pdf(report, pdf_tmp)
            write_html(report, html_tmp)
    except OSError as exc:
        raise SeedoptError(f"cannot write {out} and {page.name}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out} ({pages} pages) and {page}", err=True)
