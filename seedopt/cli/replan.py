"""``seedopt replan``: re-plan around the needles actually inserted (``seedopt.replan``)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import SeedoptError
from .options import EXIT_GOALS_MISSED, backend_option, echo_backend

if TYPE_CHECKING:
    from ..plan_metrics import Goal

REPLAN_FILES = ("replan.json", "replan.csv")


@click.command("replan")
@click.argument("case", type=click.Path(exists=False, path_type=Path))
@click.option(
    "--implanted",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The inserted needles: a CSV (needle, entry_x_mm..tip_z_mm[, "
    "deposited_from_tip_mm]) or an RT Plan of the seeds deposited (a needle per channel).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--plan",
    "plan_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The original plan's folder, when CASE is a config (CASE may be that folder).",
)
@click.option(
    "--min-gap-mm",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.0, 50.0),
    help="A new needle keeps this far from every inserted one.",
)
@click.option(
    "--time-limit-s",
    default=8.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600.0),
    help="The search's time limit.",
)
@backend_option
def replan_cmd(
    case: Path,
    implanted: Path,
    out: Path,
    plan_dir: Path | None,
    min_gap_mm: float,
    time_limit_s: float,
    backend: str,
) -> None:
    """Re-plan CASE (a plan folder, or a config) around the needles inserted: their deposited
    seeds kept, the seeds still to load re-optimized, the fewest new needles added. Prints
    what to do with each needle and the goals before and after; writes the new plan's files
    with replan.json and replan.csv, all together. Exit code 3 when a goal is still missed."""
    from ..export import RESULT_FILES, write_outputs
    from ..output_set import OutputSet
    from ..pipeline import load_case
    from ..plan_config import load_plan_spec
    from ..plan_dir import PlanDir
    from ..replan import read_inserted, replan_case

    doc: dict[str, Any] | None
    if case.is_dir():
        if plan_dir is not None:
            raise SeedoptError("--plan: CASE is already a plan folder")
        planned = PlanDir.load(case)
        spec, config, doc = planned.spec, planned.config, planned.document
    else:
        spec, config = load_plan_spec(case), case
        doc = None if plan_dir is None else PlanDir.load(plan_dir, case).document
    with OutputSet(out, RESULT_FILES + REPLAN_FILES) as outputs:
        b = echo_backend(backend)
        c, images = load_case(spec)
        inserted = read_inserted(implanted, c)
        r = replan_case(
            spec,
            c,
            images,
            spec.source.build(),
            inserted,
            b,
            doc=doc,
            min_gap_mm=min_gap_mm,
            time_limit_s=time_limit_s,
        )
        decisions = r.decisions()
        summary = {
            "case": spec.name,
            "implanted": str(implanted),
            "plan": None if doc is None else str(case if plan_dir is None else plan_dir),
            "seconds": r.seconds,
            "objective": {"start": r.objective_start, "after": r.objective_after},
            "new_needle_candidates_dropped": r.rc.dropped_new,
            "decisions": decisions,
            "before": r.before.to_json(),
            "after": r.after.metrics.to_json(),
        }
        write_outputs(r.after, outputs, config)
        with outputs.writing("replan.json") as folder:
            (folder / "replan.json").write_text(json.dumps(summary, indent=2) + "\n")
        with outputs.writing("replan.csv") as folder:
            (folder / "replan.csv").write_text(decisions_csv(decisions))
    click.echo(format_decisions(decisions))
    click.echo(format_goals(r.before.goals, r.after.metrics.goals))
    click.echo(f"re-planned in {r.seconds['total']:.1f} s; wrote the plan in {out}/", err=True)
    if not r.after.goals_met:
        sys.exit(EXIT_GOALS_MISSED)


def decisions_csv(decisions: list[dict]) -> str:
    """One row per needle: label, decision, counts and the seeds to load by distance from the
    tip (mm, separated by spaces)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["needle", "decision", "deposited", "planned_to_load", "load", "load_from_tip_mm"])
    for d in decisions:
        w.writerow(
            [
                d["needle"],
                d["decision"],
                d["deposited"],
                d["planned_to_load"],
                d["load"],
                " ".join(f"{a:g}" for a in d["load_from_tip_mm"]),
            ]
        )
    return buf.getvalue()


def format_decisions(decisions: list[dict]) -> str:
    """What to do with each needle, as the physicist reads it at the table (template holes by
    their printed labels, as the hole map and the implant report give them)."""
    from ..operating_room.hole_map import hole_label

    lines = [f"{'needle':8} {'decision':28} seeds to load, mm from the tip"]
    for d in decisions:
        where = ""
        if not d["inserted"]:
            e, t = d["entry_mm"], d["tip_mm"]
            where = f"  entry {_point(e)} -> tip {_point(t)}"
            if d["template_hole"] is not None:
                where = f"  template hole {hole_label(*d['template_hole'])}" + where
        depths = " ".join(f"{a:g}" for a in d["load_from_tip_mm"]) or "-"
        lines.append(f"{d['needle']:8} {d['decision']:28} {depths}{where}")
    return "\n".join(lines)


def _point(p: list[float]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in p) + ")"


def format_goals(before: Sequence[Goal], after: Sequence[Goal]) -> str:
    """Each goal's value as inserted (the original loading carried) and after the re-plan."""

    def cell(g: Goal) -> str:
        value = f"{g.value:9.1f}" if g.evaluated else f"{'n/a':>9}"
        return f"{value} {'ok' if g.met else 'NO':>2}"

    lines = [f"{'goal':44} {'as inserted':>12} {'re-planned':>12}"]
    for a, b in zip(before, after, strict=True):
        lines.append(f"{b.name:44} {cell(a)} {cell(b)}")
    return "\n".join(lines)
