"""``seedopt template``: what the operating room needs to place a plan's needles: a printable
template (STL) for a freehand plan, the hole map for a coplanar-template plan."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..candidates.config import TemplateSpec
from ..errors import SeedoptError
from ..operating_room.template_options import TemplateOptions

if TYPE_CHECKING:
    from ..operating_room.planned_needles import PlannedNeedle
    from ..plan_dir import PlanDir
from .options import config_option

TEMPLATE_FILES = ("template.stl", "template.json", "template.png")
HOLE_MAP_FILES = ("hole_map.csv", "hole_map.json", "hole_map.png")


def _option_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """One ``--KEY`` flag per ``TemplateOptions`` field (its description, default and bounds
    in the help); the model validates them."""
    for name, field in reversed(TemplateOptions.model_fields.items()):
        lo = next(m.ge for m in field.metadata if hasattr(m, "ge"))
        hi = next(m.le for m in field.metadata if hasattr(m, "le"))
        command = click.option(
            f"--{name.replace('_', '-')}",
            name,
            type=float,
            default=None,
            help=f"{field.description} (default {field.default:g}; {lo:g} to {hi:g}).",
        )(command)
    return command


@click.command("template")
@click.argument("plan_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@config_option
@click.option("--render", is_flag=True, help="Also write template.png, a rendered view.")
@_option_flags
def template_cmd(plan_dir: Path, out: Path, config: Path | None, render: bool, **flags) -> None:
    """For the plan in PLAN_DIR: a freehand plan gets template.stl (binary STL, mm, patient
    coordinates: a plate on the skin over the entries, one guide channel per needle, three
    registration holes) and template.json (parameters and the checks measured on the mesh);
    a coplanar-template plan gets hole_map.csv, hole_map.json and hole_map.png (each used
    hole by column letter and row number, needle and seed depths from the template's face).
    The files in --out are replaced together (docs/operating-room.md)."""
    from ..operating_room import template_options
    from ..operating_room.planned_needles import planned_needles
    from ..plan_dir import PlanDir

    options = template_options({k: v for k, v in flags.items() if v is not None})
    planned = PlanDir.load(plan_dir, config)
    needles = planned_needles(planned.document)
    if not needles:
        raise SeedoptError(f"{plan_dir}/plan.json has no needles: there is nothing to guide")
    if isinstance(planned.spec.approach, TemplateSpec):
        _hole_map(planned, planned.spec.approach, needles, out)
    else:
        _printed_template(planned, needles, options, out, render)


def _printed_template(
    planned: PlanDir,
    needles: list[PlannedNeedle],
    options: TemplateOptions,
    out: Path,
    render: bool,
) -> None:
    import numpy as np

    from ..atomic import atomic_path
    from ..export import write_json
    from ..operating_room import build_template, check_template
    from ..operating_room.figures import template_figure
    from ..operating_room.skin import BodyField
    from ..output_set import OutputSet
    from ..pipeline import load_case

    entries = np.array([n.entry_mm for n in needles])
    tips = np.array([n.tip_mm for n in needles])
    with OutputSet(out, TEMPLATE_FILES) as outputs:
        case, _ = load_case(planned.spec)
        t0 = time.perf_counter()
        built = build_template(case, entries, tips, options)
        t_build = time.perf_counter() - t0
        checks = check_template(built, BodyField(case))
        t_check = time.perf_counter() - t0 - t_build
        doc = {
            "plan": str(planned.folder),
            "case": case.name,
            "units": "mm, patient coordinates (those of plan.json)",
            "options": options.model_dump()
            | {"channel_diameter_mm": 2 * options.channel_radius_mm},
            "plate_normal": built.frame.n.tolist(),
            "fiducial_holes_mm": np.round(built.fiducials_mm, 3).tolist(),
            "checks": checks,
            "seconds": {"build": round(t_build, 3), "checks": round(t_check, 3)},
        }
        with outputs.writing("template.stl") as folder, atomic_path(folder / "template.stl") as p:
            built.mesh.export(p, file_type="stl")
        with outputs.writing("template.json") as folder:
            write_json(folder / "template.json", doc)
        if render:
            with outputs.writing("template.png") as folder:
                title = f"{case.name}: template for {len(needles)} needles"
                template_figure(built.mesh, built.frame.n, title, folder / "template.png")
    m, u = checks["mesh"], checks["underside_to_skin_mm"]
    worst = max(checks["channels"], key=lambda c: c["axis_offset_mm"])
    click.echo(
        f"template for {len(needles)} needle(s): {m['triangles']} triangles, "
        f"{m['volume_mm3'] / 1000:.1f} cm3, watertight; channel axes within "
        f"{worst['axis_offset_mm']:.3f} mm and "
        f"{max(c['axis_angle_deg'] for c in checks['channels']):.3f} deg of the needles; "
        f"underside {u['min']:.2f}-{u['max']:.2f} mm off the skin "
        f"({t_build + t_check:.1f} s)"
    )
    written = TEMPLATE_FILES if render else TEMPLATE_FILES[:2]
    click.echo(f"wrote {', '.join(written)} in {out}/", err=True)


def _hole_map(
    planned: PlanDir, spec: TemplateSpec, needles: list[PlannedNeedle], out: Path
) -> None:
    from ..export import write_json
    from ..operating_room import hole_map, hole_map_document, hole_map_rows
    from ..operating_room.figures import hole_map_figure
    from ..output_set import OutputSet
    from ..pipeline import load_case

    with OutputSet(out, HOLE_MAP_FILES) as outputs:
        case, _ = load_case(planned.spec)
        holes = hole_map(case, spec, needles)
        rows = hole_map_rows(holes)
        with outputs.writing("hole_map.csv") as folder:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            (folder / "hole_map.csv").write_text(buf.getvalue())
        with outputs.writing("hole_map.json") as folder:
            write_json(folder / "hole_map.json", hole_map_document(spec, holes))
        with outputs.writing("hole_map.png") as folder:
            hole_map_figure(spec, holes, f"{case.name}: template hole map", folder / "hole_map.png")
    for r in rows:
        click.echo(
            f"{r['hole']:>5}  needle {r['needle']:>3}  depth {r['needle_depth_mm']:6.1f} mm  "
            f"{r['seeds']} seeds at {r['seed_depths_mm'].replace(';', ', ')} mm"
        )
    click.echo(f"wrote {', '.join(HOLE_MAP_FILES)} in {out}/", err=True)
