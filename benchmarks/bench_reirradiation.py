"""Benchmark: re-irradiation plans on physical dose alone against plans on cumulative EQD2
(issue 18), on the built-in vertebral re-irradiation case and the cohort's vertebral and
head-and-neck cases with a generated prior course.

    python benchmarks/bench_reirradiation.py [--cases NAME,...] [--out DIR]

Prior courses (idealised box fields, a real RT Dose each on the case's phantom frame of
reference, 4 mm grid 20 mm wider than the case's; benchmarks/make_prior.py for the built-in
case): vertebral cases 30 Gy in 10 fractions over the target and the cord (20 mm margins);
head-and-neck cases 60 Gy in 30 fractions over the target (20 mm margins, the cord spared).
Both plans of a case use the default method with seed 0. The physical plan keeps the case's
own limits (cord D0.1cc <= 45 Gy, skin D2cc <= 70 Gy or the case's). The cumulative plan
limits the cord's D0.1cc to 50 Gy cumulative EQD2 (alpha/beta 2 Gy) and the skin's D2cc to
80 Gy cumulative EQD2 (alpha/beta 3 Gy). Both plans' cumulative metrics are evaluated on
the full dose grid. These limits illustrate the method; they are not a clinical protocol.
Writes <out>/<date>-<machine>-reirradiation.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _machine import RESULTS, machine, machine_line, result_stem
from cohort import BY_NAME

BUILTIN = "vertebral_reirradiation"
CASES = (BUILTIN, "vertebral_12", "vertebral_33", "vertebral_55", "head_neck_20", "head_neck_30")
CORD_EQD2_GY, SKIN_EQD2_GY = 50.0, 80.0
PRIOR = {"vertebral": (30.0, 10), "head_neck": (60.0, 30)}
"""Prior course per site: total dose (Gy) and fractions."""


def builtin_config() -> dict[str, Any]:
    path = resources.files("seedopt.configs").joinpath("cases", f"{BUILTIN}.yaml")
    data = yaml.safe_load(path.read_text())
    data["prior"]["dose"] = str(Path(str(path)).with_name(data["prior"]["dose"]))
    return data


def with_prior(name: str, folder: Path) -> dict[str, Any]:
    """A cohort case's config with a generated prior course written under ``folder``."""
    from seedopt.case import Case
    from seedopt.case.grid import Grid
    from seedopt.dicom.files import Study, save
    from seedopt.dicom.rtdose import build_rtdose
    from seedopt.plan_config import PlanSpec
    from seedopt.reirradiation import field_dose_gy, phantom_frame_uid

    c = BY_NAME[name]
    data = c.config()
    case = Case.from_spec(PlanSpec.model_validate(data), None)
    dose_gy, fractions = PRIOR[c.site]
    covered = [case.target] + ([case.cord] if c.site == "vertebral" and case.cord else [])
    pts = np.concatenate([case.grid.points_mm(case.masks[s] > 0) for s in covered])
    lo, hi = pts.min(axis=0) - 20.0, pts.max(axis=0) + 20.0
    g = case.grid
    g_lo = np.asarray(g.origin_mm) - 20.0
    g_hi = np.asarray(g.origin_mm) + (np.asarray(g.shape[::-1]) - 1) * g.spacing_mm + 20.0
    grid = Grid.covering(tuple(g_lo), tuple(g_hi), 4.0)
    field = field_dose_gy(grid.points_mm(), lo, hi, dose_gy, 4.0).reshape(grid.shape)
    study = Study(
        "seedopt^phantom",
        name,
        "",
        "",
        phantom_frame_uid(name + " study"),
        "1",
        "",
        "",
        "",
        "",
        phantom_frame_uid(name),
    )
    path = folder / f"{name}_prior.dcm"
    save(build_rtdose(field, grid, study, None), path)
    data["prior"] = {"dose": str(path), "fractions": fractions}
    return data


def cumulative(data: dict[str, Any], cord: str | None) -> dict[str, Any]:
    """The config with its cord and skin limits on cumulative EQD2."""
    out = copy.deepcopy(data)
    hard = [
        {
            "structure": "Skin",
            "metric": "D2cc",
            "max_gy": SKIN_EQD2_GY,
            "quantity": "eqd2_cumulative",
        }
    ]
    if cord:
        hard.insert(
            0,
            {
                "structure": cord,
                "metric": "D0.1cc",
                "max_gy": CORD_EQD2_GY,
                "quantity": "eqd2_cumulative",
            },
        )
    out["goals"] = {**out.get("goals", {}), "hard": hard}
    ab = {"default": 3.0, "GTV": 10.0}
    if cord:
        ab[cord] = 2.0
    out["radiobiology"] = {"alpha_beta_gy": ab}
    return out


def physical(data: dict[str, Any]) -> dict[str, Any]:
    """The config planned on physical dose: a cohort case's own limits, the built-in case's
    default ones (cord D0.1cc <= 45 Gy, skin D2cc <= 70 Gy); the prior kept for evaluation."""
    out = copy.deepcopy(data)
    hard = out.get("goals", {}).get("hard", [])
    if any(h.get("quantity", "physical") != "physical" for h in hard):
        del out["goals"]
    return out


def row(name: str, kind: str, data: dict[str, Any], evaluate_with: dict[str, Any]) -> dict:
    """Plan ``data`` and evaluate its cumulative cord and skin metrics with the cumulative
    config ``evaluate_with``."""
    from seedopt.backend import cpu_backend
    from seedopt.metrics import Structure
    from seedopt.plan_config import PlanSpec
    from seedopt.planning import plan_case
    from seedopt.reirradiation import limited_volume

    spec = PlanSpec.model_validate(data)
    t = time.perf_counter()
    plan = plan_case(spec, cpu_backend(), cache_dir=None)
    seconds = time.perf_counter() - t
    judge = PlanSpec.model_validate(evaluate_with)
    out = {
        "case": name,
        "plan": kind,
        "D90_gy": plan.metrics.structures[plan.case.target]["D90_gy"],
        "prescription_gy": plan.metrics.prescription_gy,
        "seeds": plan.metrics.n_seeds,
        "needles": plan.metrics.n_needles,
        "optimizer_s": plan.result.runtime_s,
        "plan_s": seconds,
        "goals_met": plan.metrics.goals_met,
    }
    for lim in judge.hard_limits(plan.case.skin):
        vol = limited_volume(judge, plan.case, plan.source, lim, plan.dose_gy)
        s = Structure.from_mask(vol, plan.case.masks[lim.structure], plan.case.grid.voxel_cc)
        value = s.dose_at_volume_cc(float(lim.metric[1:-2]))
        out[f"{lim.structure} {lim.metric} cumulative"] = value
        out[f"{lim.structure} {lim.metric} limit"] = lim.max_gy
    return out


def report(info: dict, args: argparse.Namespace, rows: list[dict]) -> str:
    lines = [
        f"# Re-irradiation: physical-dose plans against cumulative-EQD2 plans, {info['date']}",
        "",
        machine_line(info),
        f"Command: `python benchmarks/bench_reirradiation.py --cases {args.cases}`",
        "",
        (__doc__ or "").split("\n\n")[2].replace("\n", " "),
        "",
        "| case | plan | D90 / Rx | cord D0.1cc cum. EQD2 (limit) | skin D2cc cum. EQD2 (limit) "
        "| seeds | needles | optimizer s | own goals met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cord = next((k for k in r if k.endswith("D0.1cc cumulative")), None)
        cells = []
        for key in (cord, "Skin D2cc cumulative"):
            if key is None:
                cells.append("-")
                continue
            limit = r[key.replace("cumulative", "limit")]
            flag = "" if r[key] <= limit * (1 + 1e-6) else " **over**"
            cells.append(f"{r[key]:.1f} ({limit:g}){flag}")
        lines.append(
            f"| {r['case']} | {r['plan']} | {r['D90_gy'] / r['prescription_gy']:.3f} | "
            f"{cells[0]} | {cells[1]} | {r['seeds']} | {r['needles']} | "
            f"{r['optimizer_s']:.1f} | {'yes' if r['goals_met'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            if name == BUILTIN:  # its own cumulative cord limit; judged with the skin's too
                data = builtin_config()
                judge = cumulative(data, data["roles"]["cord"])
                judge["radiobiology"] = data["radiobiology"]
                plans = [("physical", physical(data)), ("cumulative EQD2", data)]
            else:
                data = with_prior(name, Path(tmp))
                judge = cumulative(data, data["roles"].get("cord"))
                plans = [("physical", physical(data)), ("cumulative EQD2", judge)]
            for kind, config in plans:
                r = row(name, kind, config, judge)
                rows.append(r)
                print(json.dumps(r), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / result_stem("reirradiation").name
    stem.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    stem.with_suffix(".md").write_text(report(info, args, rows))
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
