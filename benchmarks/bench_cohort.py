"""Benchmark suite: every method on every case of the cohort (``benchmarks/cohort.py``), side
by side, in one command and one report.

    python benchmarks/bench_cohort.py [--mode quick|full] [--cases all|tiny|NAME,...]
                                      [--methods clinical,lp,milp,anneal,anneal-gpu,hybrid]
                                      [--out DIR] [--timeout-s S]
    python benchmarks/bench_cohort.py --report benchmarks/results/<date>-<machine>.json

``make bench`` runs ``--mode quick`` (shorter annealing, LP repair and MILP budgets: about
15 minutes on a 2-core machine); ``make bench-full`` runs ``--mode full`` (the optimizers'
default budgets, a longer MILP). Per case, one child process builds the case, its candidates
and the dose-influence matrix once (CPU), then runs each method with the mode's options and
the random seed 0 and evaluates each plan on the full dose grid; ``anneal-gpu`` is the
annealer on the GPU backend (the matrix rebuilt there), reported as not run where no GPU is
usable. A method that refuses a case (no plan at least as good as the rule-based loading,
``seedopt.optimizer.usable``) gives a row with ``"refused"``: its one-line message, the
seconds it took and the bounds it proved. A case that outlives ``--timeout-s`` keeps the
rows it finished.

Quality numbers (everything but the times) are the same on every run: the seed is fixed,
the LP repair stops on a step count and the MILP on a node limit. The exception: an LP or
MILP row cut by its time limit (``time_limited`` in the JSON, marked in the report) depends
on how far HiGHS got in that time.

Gap to the best MILP bound: ``lp`` and ``milp`` solve the linear-penalty model of
``seedopt.optimizer.milp`` (1,000 target rows in quick mode, 2,000 in full) and HiGHS proves
a lower bound of its objective (the LP optimum, the MILP dual bound); every method's loading
is scored by that same model objective (``penalty_objective``), and the gap is (score - best
bound) / score. It is a gap in the model's objective, not in the plan objective every
optimizer minimises (D90, V150 and V200 are not linear).

Writes <out>/<date>-<machine>.{json,md} (``--mode full``: <date>-<machine>-full.*) and the
report's plots beside them (default out: benchmarks/results); ``--report`` redraws the report
and plots of a results file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _machine import RESULTS, machine, result_stem, rows_out, run_child_rows
from cohort import BY_NAME, select

if TYPE_CHECKING:
    from seedopt.optimizer.base import OptimizeResult
    from seedopt.optimizer.milp import PenaltyObjective

    from seedopt.planning import Plan

METHODS = ("clinical", "lp", "milp", "anneal", "anneal-gpu", "hybrid")
SEED = 0
MAX_POINTS = {"quick": 1000, "full": 2000}
"""Target rows of the LP / MILP model per mode (2000: their default), also the rows the gap
is scored on."""
MODES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "lp": {
            "time_limit_s": 10.0,
            "max_points": MAX_POINTS["quick"],
            "repair_steps": 30,
            "repair_time_s": 3600.0,
        },
        "milp": {"time_limit_s": 10.0, "node_limit": 50, "max_points": MAX_POINTS["quick"]},
        "anneal": {"chains": 16, "iterations": 1500},
    },
    "full": {
        "lp": {"time_limit_s": 120.0, "max_points": MAX_POINTS["full"], "repair_time_s": 3600.0},
        "milp": {"time_limit_s": 300.0, "node_limit": 2000, "max_points": MAX_POINTS["full"]},
        "anneal": {},
    },
}
"""Options of each method per mode ({}: the optimizer's defaults); hybrid takes lp's and
anneal's. The LP and MILP time limits are safety nets: a row they cut says so (its quality
numbers may differ between runs)."""
TIMEOUT_S = {"quick": 300.0, "full": 3600.0}
TIMING_KEYS = ("seconds", "setup_s")

PUBLISHED = (
    {
        "series": "vertebral metastases, CT-guided template implants (pre-plan)",
        "case": "vertebral_33",
        "values": "GTV 33 +/- 23 cc, about 55 seeds of 0.7 mCi; D90 131 +/- 20 Gy, V100 98.4 %, "
        "V150 92 %, V200 83 %, CI 0.40, EI 1.16, HI 0.12",
    },
    {
        "series": "soft-tissue sarcoma",
        "case": "trunk_sarcoma_60",
        "values": "median GTV 60 cc at 140 Gy: median 15 needles and 67 seeds",
    },
    {
        "series": "recurrent head and neck",
        "case": "head_neck_30",
        "values": "median GTV 29.5 cc: median 51 seeds",
    },
)
"""Context rows: published CT-guided I-125 series (as summarised in issue 7) and the cohort
case closest to each."""


def method_options(mode: str, method: str) -> dict[str, Any]:
    o = MODES[mode]
    if method == "hybrid":
        return {"lp_options": o["lp"], "anneal_options": o["anneal"]}
    return dict(o.get(method.removesuffix("-gpu"), {}))


def proven_bounds(result: OptimizeResult) -> dict[str, float]:
    """The lower bounds of the model objective that the method proved (also when its plan
    is refused: a bound holds whatever the plan)."""
    bounds = {}
    if result.method == "lp" and result.bound is not None:
        bounds["lp_relaxation"] = result.bound
    if result.method == "milp":
        bounds["lp_relaxation"] = result.extra.get("lp_relaxation")
        bounds["milp_dual"] = result.bound
    return {k: v for k, v in bounds.items() if v is not None}


def plan_row(
    plan: Plan, result: OptimizeResult, penalty: PenaltyObjective, organs: list[str]
) -> dict[str, Any]:
    """The numbers of one plan (metrics on the full dose grid) and its model score."""
    m = plan.metrics
    t = m.target_metrics()
    return {
        "status": result.status,
        "message": result.message,
        "time_limited": "time limit" in result.message.lower(),
        "target_cc": t["volume_cc"],
        "D90_gy": t["D90_gy"],
        "D90_over_rx": t["D90_gy"] / m.prescription_gy,
        "V100": t["V100_pct"],
        "V150": t["V150_pct"],
        "V200": t["V200_pct"],
        **m.indices,
        "limits": [
            {k: g.to_json()[k] for k in ("name", "value", "limit", "met", "miss")}
            for g in m.goals[1:]
        ],
        "organs": {
            n: {k: m.structures[n][k] for k in ("D0.1cc_gy", "D2cc_gy", "Dmax_gy")} for n in organs
        },
        "needles": m.n_needles,
        "seeds": m.n_seeds,
        "total_u": m.total_strength_u,
        "goals_met": m.goals_met,
        "objective": result.fun,
        "model_value": penalty.evaluate(result.x),
        "bounds": proven_bounds(result),
    }


def run_case(name: str, mode: str, methods: list[str]) -> None:
    """Child process: plan one case with every method, one JSON row per line."""
    from seedopt.optimizer import get_optimizer
    from seedopt.optimizer.milp import penalty_objective

    from seedopt.backend import cpu_backend, gpu_unavailable_reason, select_backend
    from seedopt.errors import SeedoptError
    from seedopt.pipeline import prepare
    from seedopt.plan_config import PlanSpec
    from seedopt.planning import finish_plan

    out = rows_out()
    c = BY_NAME[name]
    t = time.perf_counter()
    spec = PlanSpec.model_validate(c.config())
    cpu = cpu_backend()
    prepared = prepare(spec, cpu)
    case, candidates, problem = prepared.case, prepared.candidates, prepared.problem
    base = {
        "case": name,
        "site": c.site,
        "approach": c.approach,
        "reachable": c.reachable,
        "asked_cc": c.volume_cc,
        "prescription_gy": c.prescription_gy,
        "activity_mci": c.activity_mci,
        "grid_mm": c.grid_spacing_mm,
        "n_candidates": candidates.n_seeds,
        "n_candidate_needles": candidates.n_needles,
        "n_points": int(
            problem.A_target.shape[0] + sum(a.shape[0] for a in problem.A_oar.values())
        ),
        "setup_s": time.perf_counter() - t,
    }
    penalty = penalty_objective(problem, max_points=MAX_POINTS[mode])
    organs = [*spec.roles.oars, *([spec.roles.cord] if spec.roles.cord else []), case.skin]
    gpu_problem = None
    for method in methods:
        row = {**base, "method": method}
        run_on = problem
        if method == "anneal-gpu":
            why = gpu_unavailable_reason()
            if why is not None:
                print(json.dumps({**row, "skipped": f"no GPU: {why}"}), file=out)
                continue
            if gpu_problem is None:
                gpu = select_backend("gpu")[0]
                gpu_problem = prepare(spec, gpu, reuse=prepared).problem
            run_on = gpu_problem
        optimizer = get_optimizer(method.removesuffix("-gpu"))
        options = optimizer.parse_options(method_options(mode, method))
        t = time.perf_counter()
        result = optimizer.run(run_on, SEED, options)  # solve = run + check_usable
        try:
            optimizer.check_usable(run_on, result, options)
        except SeedoptError as exc:  # refused: no usable plan (optimizer.usable)
            seconds = time.perf_counter() - t
            row.update(refused=str(exc), seconds=seconds, bounds=proven_bounds(result))
            print(json.dumps(row), file=out)
            continue
        seconds = time.perf_counter() - t
        plan = finish_plan(prepared, result, cpu, {})
        row.update(plan_row(plan, result, penalty, organs), seconds=seconds)
        print(json.dumps(row), file=out)


def add_gaps(rows: list[dict]) -> None:
    """Each row's gap (%) to its case's best proven bound of the model objective."""
    best: dict[str, float] = {}
    for r in rows:
        for b in r.get("bounds", {}).values():
            best[r["case"]] = max(best.get(r["case"], -math.inf), b)
    for r in rows:
        if "model_value" not in r or r["case"] not in best:
            continue
        r["best_bound"] = best[r["case"]]
        v = r["model_value"]
        r["gap_pct"] = 100.0 * (v - best[r["case"]]) / v if math.isfinite(v) and v > 0 else None


def quality(rows: list[dict]) -> list[dict]:
    """The rows without their times: what two runs must agree on."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--cases", default="all")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--timeout-s", type=float, help="per case (default quick 300, full 3600)")
    ap.add_argument("--report", type=Path, help="only redraw the report and plots of this JSON")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        name, mode, methods = args.one
        run_case(name, mode, methods.split(","))
        return
    if args.report:
        data = json.loads(args.report.read_text())
        write_report(args.report.with_suffix(""), data["machine"], data["run"], data["rows"])
        return
    methods = args.methods.split(",")
    if unknown := set(methods) - set(METHODS):
        raise SystemExit(f"unknown method(s) {', '.join(sorted(unknown))}; known: {METHODS}")
    cases = select(args.cases)
    timeout = args.timeout_s or TIMEOUT_S[args.mode]
    info = machine()
    rows: list[dict] = []
    failures: dict[str, str] = {}
    start = time.perf_counter()
    for c in cases:
        cmd = [sys.executable, __file__, "--one", c.name, args.mode, ",".join(methods)]
        got, why = run_child_rows(cmd, timeout)
        rows += got
        if why:
            failures[c.name] = why
        for r in got:
            print(line(r), flush=True)
        if why:
            print(f"{c.name}: {why}", flush=True)
    wall_s = time.perf_counter() - start
    add_gaps(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / result_stem("full" if args.mode == "full" else "").name
    command = (
        f"python benchmarks/bench_cohort.py --mode {args.mode} --cases {args.cases} "
        f"--methods {args.methods}"
    )
    run = {
        "mode": args.mode,
        "command": command,
        "options": {m: method_options(args.mode, m) for m in methods},
        "seed": SEED,
        "max_points": MAX_POINTS[args.mode],
        "wall_s": wall_s,
        "failures": failures,
    }
    stem.with_suffix(".json").write_text(
        json.dumps({"machine": info, "run": run, "rows": rows}, indent=1)
    )
    write_report(stem, info, run, rows)
    print(f"wrote {stem}.json ({wall_s / 60:.1f} min)")


def write_report(stem: Path, info: dict, run: dict, rows: list[dict]) -> None:
    """``<stem>.md`` and its plots from a run's rows."""
    from cohort_report import plots, report

    figures = plots(rows, stem)
    stem.with_suffix(".md").write_text(report(info, run, rows, figures, PUBLISHED))
    print(f"wrote {stem}.md and {len(figures)} plots")


def line(r: dict) -> str:
    head = f"{r['case']:22} {r['method']:10}"
    if "skipped" in r:
        return f"{head} {r['skipped']}"
    if "refused" in r:
        return f"{head} refused after {r['seconds']:.1f} s: {r['refused']}"
    return (
        f"{head} D90/Rx {r['D90_over_rx']:.3f} V150 {r['V150']:5.1f} V200 {r['V200']:5.1f} "
        f"seeds {r['seeds']:3d} needles {r['needles']:3d} "
        f"{'met' if r['goals_met'] else 'MISSED':6} {r['seconds']:6.1f} s"
    )


if __name__ == "__main__":
    main()
