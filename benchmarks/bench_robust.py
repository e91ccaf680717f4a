"""Benchmark: robust against nominal plans under needle errors (issue 19).

    python benchmarks/bench_robust.py [--cases NAME,...] [--scenarios K] [--measure mean|cvar]
        [--tail F] [--margin F] [--search-rows N] [--kicks N] [--time-s S] [--evaluate 300]
        [--out DIR]

(``--scenarios``, ``--measure``, ``--tail``, ``--margin``, ``--search-rows``, ``--kicks``,
``--time-s``: default ``RobustOptions``'s.)

Each case is planned twice with the default method (seed 0): nominal, and with
``optimizer.options.robust`` ({scenarios, measure, model: template-3d-printed}). Both plans
are then evaluated by ``robustness.evaluate_robustness`` on ``--evaluate`` fresh scenarios of
the same 3D-printed-template model (seed 12345, not the optimizer's scenarios). Rows:
P(D90 >= Rx), P(every goal), seeds, needles, V200, the planning time, and k90
(``Robustness.strength_factor``): the least factor on every seed's strength with which the
plan would meet every goal in 90 % of the same scenarios. Dose is linear in the strength, so
k90 of the nominal plan is the price of 90 % by scaling its dose alone, the reference the
robust plan's seed ratio is set against (about k90 x the seeds at the planned strength).
Writes <out>/<date>-<machine>-robust.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from _machine import RESULTS, machine, machine_line, result_stem
from cohort import BY_NAME

CASES = ("vertebral_33", "abdominal_wall_30", "extremity_sarcoma_35", "vertebral_55")
MODEL = "template-3d-printed"


def run_case(name: str, args: argparse.Namespace) -> list[dict]:
    from seedopt.backend import cpu_backend
    from seedopt.export import plan_document
    from seedopt.plan_config import PlanSpec
    from seedopt.planning import plan_case
    from seedopt.robustness import ERROR_MODELS, Implant, evaluate_robustness

    rows = []
    for robust in (False, True):
        data = copy.deepcopy(BY_NAME[name].config())
        opt = data.setdefault("optimizer", {})
        opt["method"] = "hybrid"
        if robust:
            opt.setdefault("options", {})["robust"] = {
                "scenarios": args.scenarios,
                "measure": args.measure,
                "tail": args.tail,
                "margin": args.margin,
                "search_rows": args.search_rows,
                "kicks": args.kicks,
                "time_s": args.time_s,
                "model": MODEL,
            }
        spec = PlanSpec.model_validate(data)
        t = time.perf_counter()
        plan = plan_case(spec, cpu_backend(), seed=0, cache_dir=None)
        seconds = time.perf_counter() - t
        r = evaluate_robustness(
            spec,
            plan.case,
            plan.source,
            Implant.from_plan_document(plan_document(plan)),
            ERROR_MODELS[MODEL],
            model_name=MODEL,
            scenarios=args.evaluate,
            seed=12345,
        )
        s = r.summary()
        target = plan.metrics.structures[plan.metrics.target]
        rows.append(
            {
                "case": name,
                "plan": "robust" if robust else "nominal",
                "goals_met": plan.goals_met,
                "seeds": len(plan.seeds_mm),
                "needles": len(plan.used_needles()),
                "d90_gy": target["D90_gy"],
                "v200_pct": target["V200_pct"],
                "p_d90": next(v for k, v in s["probability"].items() if k.startswith("D90")),
                "p_all": s["probability_all_goals"],
                "strength_factor_90": s["strength_factor_90"],
                "seconds": seconds,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _k(k: float | None) -> str:
    return "none" if k is None else f"{k:.2f}"


def report(info: dict, args: argparse.Namespace, rows: list[dict]) -> str:
    lines = [
        "# Robust against nominal plans under needle errors (issue 19)",
        "",
        machine_line(info),
        "",
        f"Command: `python benchmarks/bench_robust.py --cases {args.cases} --scenarios "
        f"{args.scenarios} --measure {args.measure} --tail {args.tail:g} --margin "
        f"{args.margin:g} --search-rows {args.search_rows} --kicks {args.kicks} --time-s "
        f"{args.time_s:g} --evaluate {args.evaluate}`. Robust: the default method with `robust: "
        f"{{scenarios: {args.scenarios}, measure: {args.measure}, tail: {args.tail:g}, margin: "
        f"{args.margin:g}, search_rows: {args.search_rows}, kicks: {args.kicks}, time_s: "
        f"{args.time_s:g}, model: {MODEL}}}`; "
        f"both plans evaluated on {args.evaluate} fresh scenarios of the {MODEL} model.",
        "",
        "| case | plan | goals met | seeds | needles | D90 (Gy) | V200 % | P(D90 >= Rx) | "
        "P(every goal) | k90 | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['plan']} | {'yes' if r['goals_met'] else 'no'} | {r['seeds']} | "
            f"{r['needles']} | {r['d90_gy']:.1f} | {r['v200_pct']:.1f} | {100 * r['p_d90']:.0f} % "
            f"| {100 * r['p_all']:.0f} % | {_k(r['strength_factor_90'])} | {r['seconds']:.1f} |"
        )
    lines.append("")
    for case in dict.fromkeys(r["case"] for r in rows):
        nom, rob = (
            next(r for r in rows if r["case"] == case and r["plan"] == p)
            for p in ("nominal", "robust")
        )
        lines.append(
            f"- {case}: P(every goal) {100 * nom['p_all']:.0f} % -> {100 * rob['p_all']:.0f} % for "
            f"{rob['seeds'] / nom['seeds']:.2f} x the seeds, {rob['needles'] - nom['needles']:+d} "
            f"needles, {rob['seconds'] / nom['seconds']:.1f} x the time; 90 % by scaling the "
            f"nominal plan's strength: x {_k(nom['strength_factor_90'])}."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    from seedopt.optimizer.robust import RobustOptions

    default = RobustOptions()
    ap.add_argument("--scenarios", type=int, default=default.scenarios)
    ap.add_argument("--measure", default=default.measure, choices=["mean", "cvar"])
    ap.add_argument("--tail", type=float, default=default.tail)
    ap.add_argument("--margin", type=float, default=default.margin)
    ap.add_argument("--search-rows", type=int, default=default.search_rows)
    ap.add_argument("--kicks", type=int, default=default.kicks)
    ap.add_argument("--time-s", type=float, default=default.time_s)
    ap.add_argument("--evaluate", type=int, default=300)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    info = machine()
    rows: list[dict] = []
    for name in args.cases.split(","):
        rows += run_case(name, args)
    stem = args.out / result_stem("robust").name
    stem.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    stem.with_suffix(".md").write_text(report(info, args, rows))
    print(report(info, args, rows))


if __name__ == "__main__":
    main()
