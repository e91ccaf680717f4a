"""``seedopt robustness``: a plan's metrics under sampled needle-placement errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import numpy as np

from ..errors import SeedoptError
from .options import SEED, backend_option, config_option, echo_backend

OUTPUTS = ("robustness.json", "robustness.csv", "robustness.h5", "dvh_band.png")


@click.command("robustness")
@click.argument("plan_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@config_option
@click.option(
    "--approach",
    type=click.Choice(["template-3d-printed", "coplanar-template", "freehand"]),
    help="Error model (default: by the plan's approach; docs/robustness.md).",
)
@click.option("--tip-mm", nargs=2, type=float, help="Tip displacement: mean and SD, mm.")
@click.option("--angle-deg", nargs=2, type=float, help="Needle angle: mean and SD, degrees.")
@click.option("--spacing-mm", type=float, help="Each seed's error along its needle: SD, mm.")
@click.option("--scenarios", default=1000, show_default=True, help="Sampled placements.")
@click.option(
    "--seed", type=SEED, default=0, show_default=True, help="Random seed of the scenarios."
)
@backend_option
def robustness_cmd(
    plan_dir: Path,
    out: Path,
    config: Path | None,
    approach: str | None,
    tip_mm: tuple[float, float] | None,
    angle_deg: tuple[float, float] | None,
    spacing_mm: float | None,
    scenarios: int,
    seed: int,
    backend: str,
) -> None:
    """The plan in PLAN_DIR (its plan.json) under needle errors, on its case: the
    distribution of D90, V100, V150 and every hard-limited metric, the probability that each
    goal holds, a DVH band. The files in --out are replaced together."""
    import dataclasses

    from ..figures import dvh_band_figure
    from ..output_set import OutputSet
    from ..pipeline import load_case
    from ..plan_dir import PlanDir
    from ..robustness import APPROACH_MODEL, ERROR_MODELS, Implant, evaluate_robustness

    if not 1 <= scenarios <= 1_000_000:
        raise SeedoptError(f"--scenarios must be in [1, 1000000], got {scenarios}")
    planned = PlanDir.load(plan_dir, config)
    spec = planned.spec
    implant = Implant.from_plan_document(planned.document)
    name = approach or APPROACH_MODEL[spec.approach.kind]
    model = ERROR_MODELS[name]
    changes: dict[str, float] = {}
    if tip_mm is not None:
        changes.update(tip_mean_mm=tip_mm[0], tip_sd_mm=tip_mm[1])
    if angle_deg is not None:
        changes.update(angle_mean_deg=angle_deg[0], angle_sd_deg=angle_deg[1])
    if spacing_mm is not None:
        changes.update(spacing_sd_mm=spacing_mm)
    if changes:
        model, name = dataclasses.replace(model, **changes), f"{name} (overridden)"
    source = spec.source.build()
    with OutputSet(out, OUTPUTS) as outputs:
        b = echo_backend(backend)
        case, _ = load_case(spec)
        r = evaluate_robustness(
            spec,
            case,
            source,
            implant,
            model,
            model_name=name,
            scenarios=scenarios,
            seed=seed,
            backend=b,
        )
        summary = {"plan": str(plan_dir), "seed": seed, **r.summary()}
        with outputs.writing("robustness.json") as folder:
            (folder / "robustness.json").write_text(json.dumps(summary, indent=2))
        with outputs.writing("robustness.csv") as folder:
            (folder / "robustness.csv").write_text(_csv(r.rows()))
        with outputs.writing("robustness.h5") as folder:
            _h5(folder / "robustness.h5", r, summary)
        with outputs.writing("dvh_band.png") as folder:
            dvh_band_figure(
                r,
                r.planned_target_doses,
                r.goals[0][1],
                f"{case.name}: target DVH under needle errors ({scenarios} scenarios, {name})",
                folder / "dvh_band.png",
            )
    click.echo(format_summary(summary))
    click.echo(f"wrote {', '.join(OUTPUTS)} in {out}/", err=True)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _h5(path: Path, r, summary: dict) -> None:
    from ..atomic import atomic_h5

    with atomic_h5(path) as f:
        for k, v in r.values.items():
            f.create_dataset(f"metrics/{k}", data=np.asarray(v))
        f.create_dataset("all_goals", data=r.all_hold())
        f.attrs["summary_json"] = json.dumps(summary)


def format_summary(s: dict) -> str:
    """The table a physicist reads: each metric's 5/50/95 % and the plan's value, then each
    goal's probability."""
    m = s["model"]
    lines = [
        f"{s['scenarios']} scenarios, error model {m['name']}: tip {m['tip_mean_mm']:g} +- "
        f"{m['tip_sd_mm']:g} mm, angle {m['angle_mean_deg']:g} +- {m['angle_sd_deg']:g} deg, "
        f"seed spacing SD {m['spacing_sd_mm']:g} mm ({s['seconds']:.1f} s)",
        f"{'metric':28} {'planned':>8} {'5 %':>8} {'50 %':>8} {'95 %':>8}",
    ]
    for k, p in s["percentiles"].items():
        lines.append(f"{k:28} {s['nominal'][k]:8.1f} {p['5']:8.1f} {p['50']:8.1f} {p['95']:8.1f}")
    for k, p in s["probability"].items():
        lines.append(f"P({k}) = {100 * p:.1f} %")
    lines.append(f"P(every goal) = {100 * s['probability_all_goals']:.1f} %")
    k = s["strength_factor_90"]
    lines.append(
        "P(every goal) >= 90 % by scaling every seed's strength: "
        + (f"x {k:.3f}" if k is not None else "no factor does (a limit binds first, or EQD2)")
    )
    return "\n".join(lines)
