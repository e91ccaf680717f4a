"""The single-plan commands: sources, source-table, dose, commission, plan, init-case,
evaluate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from ..config_types import MAX_MAGNITUDE, MAX_MM
from ..errors import SeedoptError
from ..report import format_comparison, format_report
from ..sources import DEFAULT_HALF_LIFE_D, Source, get_model, known_models
from ..tables import read_point_table
from .options import (
    EXIT_GOALS_MISSED,
    SEED,
    backend_option,
    cache_folder,
    cache_option,
    echo_backend,
    formalism_option,
)

if TYPE_CHECKING:
    from ..plan_metrics import PlanMetrics


@click.command("sources")
def sources_cmd() -> None:
    """List the TG-43U1 consensus source models."""
    for mid in known_models():
        m = get_model(mid)
        click.echo(
            f"{m.model_id:9} Lambda={m.dose_rate_constant:.3f} cGy/h/U  "
            f"L={m.active_length_cm:.2f} cm  {m.description}  [{m.report}]"
        )


@click.command("source-table")
@click.argument("model")
@formalism_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write CSV: r_cm,theta_deg,dose_rate_cGy_per_h_per_U.",
)
@backend_option
def source_table_cmd(model: str, formalism: str, out: Path | None, backend: str) -> None:
    """Dose rate per unit air-kerma strength of MODEL on the consensus (r, theta) grid."""
    from ..commissioning import dose_rate_table, format_table, write_csv

    src_model = get_model(model)
    table = dose_rate_table(src_model, formalism, echo_backend(backend))
    click.echo(format_table(table, src_model))
    if out is not None:
        write_csv(table, out)
        click.echo(f"wrote {out}", err=True)


def _source(
    model: str, strength_u: float | None, activity_mci: float | None, half_life_d: float
) -> Source:
    m = get_model(model)
    if (strength_u is None) == (activity_mci is None):
        raise SeedoptError(
            "give the source strength as exactly one of --strength-u or --activity-mci"
        )
    if strength_u is not None:
        return Source(m, strength_u, half_life_d)
    assert activity_mci is not None
    return Source.from_activity(m, activity_mci, half_life_d)


@click.command("dose")
@click.option("--model", required=True, help="Source model id or alias (see `seedopt sources`).")
@click.option("--strength-u", type=float, help="Air-kerma strength per seed, U.")
@click.option("--activity-mci", type=float, help="Apparent activity per seed, mCi (1.270 U/mCi).")
@click.option("--half-life-d", type=float, default=DEFAULT_HALF_LIFE_D, show_default=True)
@click.option(
    "--seeds",
    "seeds_path",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV x_mm,y_mm,z_mm[,ux,uy,uz]: seed centres and needle directions (default +z).",
)
@click.option(
    "--points",
    "points_path",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV x_mm,y_mm,z_mm: dose points.",
)
@click.option("--days", type=float, help="Dose delivered by this day (default: permanent total).")
@click.option("--rate", is_flag=True, help="Initial dose rate in cGy/h instead of dose.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write CSV here.")
@formalism_option
@backend_option
def dose_cmd(
    model: str,
    strength_u: float | None,
    activity_mci: float | None,
    half_life_d: float,
    seeds_path: Path,
    points_path: Path,
    days: float | None,
    rate: bool,
    out: Path | None,
    formalism: str,
    backend: str,
) -> None:
    """Dose at points from a set of seeds (TG-43U1), e.g. for checks and post-implant work."""
    from ..dose import dose_at_points

    source = _source(model, strength_u, activity_mci, half_life_d)
    seed_table = read_point_table(seeds_path, "seeds", directions=True)
    seeds, axes = seed_table.xyz_mm, seed_table.directions
    points = read_point_table(points_path, "points").xyz_mm
    if days is not None and not (np.isfinite(days) and days >= 0):
        raise SeedoptError(f"--days must be >= 0, got {days}")
    values = dose_at_points(
        points,
        seeds,
        axes if axes is not None else [0.0, 0.0, 1.0],
        source,
        formalism=formalism,
        backend=echo_backend(backend),
        days=days,
        rate=rate,
    )
    unit = "dose_rate_cGy_per_h" if rate else "dose_gy"
    lines = [f"x_mm,y_mm,z_mm,{unit}"] + [
        f"{p[0]:g},{p[1]:g},{p[2]:g},{v:.6g}" for p, v in zip(points, values, strict=True)
    ]
    text = "\n".join(lines) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(
            f"wrote {out} ({len(values)} points, {len(seeds)} seeds, {source.model.model_id} "
            f"{source.air_kerma_strength_u:.4g} U)",
            err=True,
        )


@click.command("commission")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/commissioning"),
    show_default=True,
    help="Folder for tables and figures.",
)
@backend_option
def commission_cmd(out: Path, backend: str) -> None:
    """Commission every source model: tables, figures, and checks against the consensus data."""
    from ..commissioning import check_model, dose_rate_table, write_csv
    from ..figures import commissioning_figure

    b = echo_backend(backend)
    out.mkdir(parents=True, exist_ok=True)
    click.echo(
        f"{'model':9} {'Ddot(1cm,90)':>13} {'Lambda':>7} {'max|dgL|':>9} {'max|dF|':>9} "
        f"{'D(inf) 1U ref':>14}"
    )
    for mid in known_models():
        model = get_model(mid)
        for formalism in ("2d", "1d"):
            write_csv(dose_rate_table(model, formalism, b), out / f"{_slug(mid)}_{formalism}.csv")
        c = check_model(model, b)
        commissioning_figure(model, out / f"{_slug(mid)}.png", b)
        click.echo(
            f"{mid:9} {c.rate_at_reference:>13.4f} {model.dose_rate_constant:>7.3f} "
            f"{c.max_gL_error:>9.1e} {c.max_F_error:>9.1e} {c.total_dose_1u_ref_cgy:>11.2f} cGy"
        )
    click.echo(f"tables (CSV, 2D and 1D) and figures in {out}/", err=True)


@click.command("plan")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for plan.json, metrics.json, dose.h5 and figures.",
)
@click.option("--method", help="Optimizer (default: the config's, else hybrid).")
@click.option("--seed", type=SEED, help="Random seed >= 0 (default: the config's, else 0).")
@cache_option
@click.option("--no-cache", is_flag=True, help="Compute the dose matrix without the cache.")
@backend_option
def plan_cmd(
    config: Path,
    out: Path,
    method: str | None,
    seed: int | None,
    cache: Path | None,
    no_cache: bool,
    backend: str,
) -> None:
    """Plan CONFIG. Exit code 3 when the best plan misses a goal (the report says by how much).
    The files in --out are replaced together when the plan is written, never one by one."""
    from ..export import RESULT_FILES, write_outputs
    from ..output_set import OutputSet
    from ..plan_config import load_plan_spec
    from ..planning import plan_case

    spec = load_plan_spec(config).with_method(method, f"--method {method}")
    with OutputSet(out, RESULT_FILES) as outputs:  # locked and writable before any work
        b = echo_backend(backend)
        cache_dir = None if no_cache else cache_folder(cache)
        click.echo(f"planning {spec.name} ({spec.description})", err=True)
        plan = plan_case(spec, b, method=method, seed=seed, cache_dir=cache_dir, progress=True)
        for note in plan.metrics.notes:
            click.echo(f"seedopt: note: {note}", err=True)
        written = write_outputs(plan, outputs, config)
    click.echo(format_report(plan.metrics))
    click.echo(f"wrote {', '.join(written)} in {out}/", err=True)
    if not plan.goals_met:
        sys.exit(EXIT_GOALS_MISSED)


@click.command("init-case")
@click.option(
    "--ct",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of CT slices (left out: the grid comes from the structures, water).",
)
@click.option("--rtstruct", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--target",
    required=True,
    help='The target structure: its ROI name (case-insensitive), or "#N" for ROI number N.',
)
@click.option("--rx", "rx_gy", required=True, type=float, help="Prescription to D90, Gy.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--spacing-mm", default=2.0, show_default=True, help="Dose grid spacing.")
@click.option("--margin-mm", default=20.0, show_default=True, help="Grid beyond the target.")
@click.option(
    "--prior-dose",
    type=click.Path(dir_okay=False, path_type=Path),
    help="RT Dose of an earlier course (re-irradiation; docs/radiobiology.md).",
)
@click.option("--prior-fractions", type=int, help="Its number of fractions.")
@click.option(
    "--approach",
    type=click.Choice(["template", "freehand"]),
    default="template",
    show_default=True,
    help="Coplanar template, or freehand needles through an entry window on the skin.",
)
def init_case_cmd(
    ct: Path | None,
    rtstruct: Path,
    target: str,
    rx_gy: float,
    out: Path,
    spacing_mm: float,
    margin_mm: float,
    prior_dose: Path | None,
    prior_fractions: int | None,
    approach: str,
) -> None:
    """Write a complete, commented plan config from a structure set (and CT)."""
    from ..atomic import atomic_path
    from ..dicom.init_case import format_decisions, init_case

    if not (np.isfinite(rx_gy) and 0 < rx_gy <= MAX_MAGNITUDE):
        raise SeedoptError(
            f"--rx must be a positive dose in Gy (at most {MAX_MAGNITUDE:g}), got {rx_gy:g}"
        )
    if not (0.01 <= spacing_mm <= MAX_MM and 0 <= margin_mm <= MAX_MM):
        raise SeedoptError(
            f"--spacing-mm must be in [0.01, {MAX_MM:g}] mm and --margin-mm in [0, {MAX_MM:g}] mm"
        )
    text, decisions = init_case(
        rtstruct,
        target,
        rx_gy,
        out,
        ct,
        spacing_mm,
        margin_mm,
        prior_dose=prior_dose,
        prior_fractions=prior_fractions,
        approach=approach,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    click.echo(format_decisions(decisions))
    click.echo(f"wrote {out}; plan it with: seedopt plan {out} --out DIR", err=True)


def _read_implant(path: Path) -> tuple[np.ndarray, np.ndarray, int, float | None, str | None]:
    """Seeds from an RT Plan or a CSV: positions (mm), axes, needles, strength (U), model."""
    from ..dicom.files import has_preamble

    if has_preamble(path):
        from ..dicom import read_rtplan_seeds

        s = read_rtplan_seeds(path)
        if s.strength_u is None:
            click.echo(
                f"seedopt: note: {path.name} gives no source strength (ReferenceAirKermaRate, "
                "or SourceStrength in AIR_KERMA_RATE units): the config's is used unless "
                "--strength-u is given",
                err=True,
            )
        return s.positions_mm, s.axes, s.n_needles, s.strength_u, s.model_id
    table = read_point_table(path, "seeds", directions=True)
    axes = table.directions
    if axes is None:
        axes = np.tile([0.0, 0.0, 1.0], (len(table.xyz_mm), 1))
    return table.xyz_mm, axes, 0, None, None


def _implant_source(spec_source: Source, strength_u: float | None, model_id: str | None) -> Source:
    """The config's source, with the RT Plan's model and strength where it gives them."""
    model = spec_source.model
    if model_id is not None:
        try:
            model = get_model(model_id)
        except SeedoptError:
            click.echo(
                f"seedopt: note: seeds: source model {model_id!r} is not a consensus model; "
                f"using the config's {model.model_id}",
                err=True,
            )
    strength = strength_u if strength_u is not None else spec_source.air_kerma_strength_u
    return Source(model, strength, spec_source.half_life_d)


@click.command("evaluate")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--seeds",
    "seeds_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Seeds placed: an RT Plan, or CSV x_mm,y_mm,z_mm[,ux,uy,uz].",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--plan",
    "pre_plan",
    type=click.Path(file_okay=False, path_type=Path),
    help="The pre-plan's output folder: its metrics are reported beside the implant's.",
)
@click.option("--strength-u", type=float, help="Air-kerma strength per seed, U (overrides).")
@backend_option
def evaluate_cmd(
    config: Path,
    seeds_path: Path,
    out: Path,
    pre_plan: Path | None,
    strength_u: float | None,
    backend: str,
) -> None:
    """Post-implant dosimetry of the seeds actually placed, on CONFIG's case. The files in
    --out are replaced together, never one by one."""
    import dataclasses

    from ..export import RESULT_FILES, write_json
    from ..output_set import OutputSet
    from ..plan_config import load_plan_spec
    from ..planning import evaluate_implant

    spec = load_plan_spec(config)
    seeds, axes, n_needles, plan_strength, model_id = _read_implant(seeds_path)
    if not np.all(np.isfinite(seeds)):
        raise SeedoptError(f"seeds file {seeds_path}: coordinates must be finite")
    source = _implant_source(
        spec.source.build(), strength_u if strength_u is not None else plan_strength, model_id
    )
    pre = None if pre_plan is None else _read_pre_plan(pre_plan / "metrics.json")
    with OutputSet(out, RESULT_FILES) as outputs:  # locked and writable before any work
        b = echo_backend(backend)
        implant = evaluate_implant(spec, seeds, axes, n_needles, source, b)
        metrics = implant.metrics
        if implant.case.skin == implant.case.body:  # no body contour or CT: no skin to measure
            click.echo(
                f"seedopt: note: the skin role is the body {implant.case.body!r}: skin metrics "
                "are unavailable; target and organ metrics are computed",
                err=True,
            )
        if pre is not None and pre_plan is not None:
            if pre.target != metrics.target:
                raise SeedoptError(
                    f"--plan {pre_plan / 'metrics.json'}: target: the pre-plan's target is "
                    f"{pre.target!r}, this case's is {metrics.target!r}"
                )
            metrics = dataclasses.replace(metrics, pre_plan=(str(pre_plan), pre.structures))
        for note in metrics.notes:
            click.echo(f"seedopt: note: {note}", err=True)
        with outputs.writing("metrics.json") as folder:
            write_json(folder / "metrics.json", metrics.to_json())
        if implant.images is not None:
            from ..dicom import write_rtdose

            with outputs.writing("rtdose.dcm") as folder:
                write_rtdose(
                    implant.dose_gy,
                    implant.case.grid,
                    implant.images.study,
                    None,
                    folder / "rtdose.dcm",
                )
        written = outputs.names()
    click.echo(format_report(metrics))
    if pre is not None:
        click.echo(
            format_comparison({"structures": pre.structures}, {"structures": metrics.structures})
        )
    click.echo(f"wrote {', '.join(written)} in {out}/", err=True)
    if not metrics.goals_met:
        sys.exit(EXIT_GOALS_MISSED)


PRE_PLAN_MAX_BYTES = 16 * 2**20
"""The largest pre-plan metrics.json read (seedopt's are a few kB)."""


def _read_pre_plan(path: Path) -> PlanMetrics:
    """The pre-plan's metrics.json (``--plan``), read and checked (``PlanMetrics.from_json``):
    one error naming the file (and the key) when it cannot be read or is of another shape."""
    from ..plan_dir import read_json_file
    from ..plan_metrics import PlanMetrics

    where = f"--plan {path}"
    return PlanMetrics.from_json(read_json_file(path, where, PRE_PLAN_MAX_BYTES), where)


def _slug(model_id: str) -> str:
    return model_id.replace(".", "").replace("-", "")
