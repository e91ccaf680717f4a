"""Benchmark suite: every method on every case of the cohort (``benchmarks/cohort.py``), side
by side, in one command and one report.

    python benchmarks/bench_cohort.py [--mode quick|full|default] [--cases all|tiny|NAME,...]
                                      [--methods clinical,lp,milp,anneal,anneal-gpu,hybrid,bound]
                                      [--options JSON] [--out DIR] [--timeout-s S]
    python benchmarks/bench_cohort.py --report benchmarks/results/<date>-<machine>.json

``make bench`` runs ``--mode quick`` (shorter annealing, LP repair and MILP budgets: about
15 minutes on a 2-core machine); ``make bench-full`` runs ``--mode full`` (the optimizers'
default budgets, a longer MILP); ``make bench-default`` runs ``--mode default``: every
method at its default options, the lower bound of the plan objective per case, and the
report of issue 16's goals 1 and 3 against the count-scaled rule (``default_report.py``).
Per case, one child process builds the case, its candidates and the dose-influence matrix
once (CPU), then runs each method with the mode's options and the random seed 0 and
evaluates each plan on the full dose grid; ``anneal-gpu`` is the annealer on the GPU backend
(the matrix rebuilt there), reported as not run where no GPU is usable; a method that
refuses the problem (no plan as good as the rule-based loading, ``seedopt.optimizer.usable``)
gives a row with ``"refused"``: its one-line message, its seconds and the bounds it proved.
``bound`` (default mode's list; any mode may name it) is
``seedopt.optimizer.bound.lower_bound`` of the case: each row then carries the gap of its
plan objective and of its seed and needle cost to that bound. A case that outlives
``--timeout-s`` keeps the rows it finished.

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

Writes <out>/<date>-<machine>.{json,md} (``--mode full``: <date>-<machine>-full.*,
``--mode default``: <date>-<machine>-default.*) and the report's plots beside them (default
out: benchmarks/results); ``--report`` redraws the report and plots of a results file.
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
    from seedopt.optimizer.base import OptimizeResult, PlanProblem
    from seedopt.optimizer.milp import PenaltyObjective

    from seedopt.backend import Backend
    from seedopt.pipeline import PreparedCase
    from seedopt.plan_config import PlanSpec
    from seedopt.planning import Plan

METHODS = ("clinical", "lp", "milp", "anneal", "anneal-gpu", "hybrid")
BOUND = "bound"
"""The pseudo-method that computes the case's lower bound of the plan objective."""
MODE_METHODS = {
    "quick": METHODS,
    "full": METHODS,
    "default": ("clinical", "hybrid", BOUND, "anneal", "lp", "milp"),
}
"""What ``--methods`` defaults to per mode (the default mode: the rule and the default method
first, so a case cut by its time limit keeps them)."""
SEED = 0
MAX_POINTS = {"quick": 1000, "full": 2000, "default": 2000}
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
    "default": {},
}
"""Options of each method per mode (none named: the optimizer's defaults; hybrid runs at its
defaults in every mode). The LP and MILP time limits are safety nets: a row they cut says so
(its quality numbers may differ between runs)."""
TIMEOUT_S = {"quick": 300.0, "full": 3600.0, "default": 900.0}
STEMS = {"quick": "", "full": "full", "default": "default"}
"""The name part of each mode's results files."""
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


def method_options(
    mode: str, method: str, overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The options ``method`` runs with in ``mode``, with ``overrides[method]`` on top (the
    ``--options`` of a run: smaller budgets for a test of the harness)."""
    chosen = MODES[mode].get(method.removesuffix("-gpu"), {})
    return {**chosen, **(overrides or {}).get(method, {})}


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
    plan: Plan,
    result: OptimizeResult,
    penalty: PenaltyObjective,
    organs: list[str],
    problem: PlanProblem,
) -> dict[str, Any]:
    """The numbers of one plan (metrics on the full dose grid), its model score, its seed and
    needle cost (the objective's part that ``problem.soft`` prices them at) and its D90
    shortfall on the problem's target rows (where the bound of that cost holds: none)."""
    from seedopt.optimizer import terms

    m = plan.metrics
    soft = problem.soft
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
        "seed_needle_cost": soft.per_seed * m.n_seeds + soft.per_needle * m.n_needles,
        "rx_shortfall_pct": float(terms(problem, result.x).shortfall_pct),
        "model_value": penalty.evaluate(result.x),
        "bounds": proven_bounds(result),
    }


def bound_row(problem: PlanProblem) -> dict[str, Any]:
    """The case's lower bound of the plan objective (``seedopt.optimizer.bound``), or why
    there is none. ``rx_reachable`` False: no loading reaches D90 >= Rx under the model, and
    ``seed_needle_lb`` is None (the bound's infinity)."""
    from seedopt.errors import SeedoptError

    try:
        from seedopt.optimizer.bound import lower_bound
    except ImportError:
        return {"unavailable": "seedopt.optimizer.bound is not available"}
    try:
        b = lower_bound(problem)
    except SeedoptError as exc:
        return {"unavailable": str(exc)}

    def finite(v: float | None) -> float | None:
        return float(v) if v is not None and math.isfinite(v) else None

    return {
        "objective_lb": finite(b.objective_lb),
        "seed_needle_lb": finite(b.seed_needle_lb),
        "rx_reachable": b.seed_needle_lb != math.inf,
        "min_seeds": b.min_seeds,
        "message": b.message,
        "seconds": b.runtime_s,
    }


def prepare_case(
    name: str, backend: Backend | None = None
) -> tuple[PlanSpec, PreparedCase, dict[str, Any]]:
    """Build cohort case ``name`` on ``backend`` (default the CPU: case, candidates,
    dose-influence matrix): its config, the prepared case and the fields every row of the
    case starts with."""
    from seedopt.backend import cpu_backend
    from seedopt.pipeline import prepare
    from seedopt.plan_config import PlanSpec

    c = BY_NAME[name]
    t = time.perf_counter()
    spec = PlanSpec.model_validate(c.config())
    prepared = prepare(spec, backend or cpu_backend())
    candidates, problem = prepared.candidates, prepared.problem
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
    return spec, prepared, base


def check_options(mode: str, methods: list[str], overrides: dict[str, dict[str, Any]]) -> None:
    """Exit with the message if a method's options (with ``overrides``) do not validate, before
    any case is built."""
    from seedopt.optimizer import optimizer_class

    from seedopt.errors import SeedoptError

    if unknown := set(overrides) - set(methods):
        raise SystemExit(f"--options for method(s) not run: {', '.join(sorted(unknown))}")
    for m in methods:
        if m != BOUND:
            try:
                optimizer_class(m.removesuffix("-gpu")).parse_options(
                    method_options(mode, m, overrides)
                )
            except SeedoptError as exc:
                raise SystemExit(f"--options: {exc}") from None


def run_case(
    name: str, mode: str, methods: list[str], overrides: dict[str, dict[str, Any]]
) -> None:
    """Child process: plan one case with every method, one JSON row per line."""
    from seedopt.optimizer import get_optimizer
    from seedopt.optimizer.milp import penalty_objective

    from seedopt.backend import cpu_backend, gpu_unavailable_reason, select_backend
    from seedopt.errors import SeedoptError
    from seedopt.pipeline import prepare
    from seedopt.planning import finish_plan

    out = rows_out()
    spec, prepared, base = prepare_case(name)
    case, problem, cpu = prepared.case, prepared.problem, cpu_backend()
    penalty = penalty_objective(problem, max_points=MAX_POINTS[mode])
    organs = [*spec.roles.oars, *([spec.roles.cord] if spec.roles.cord else []), case.skin]
    gpu_problem = None
    for method in methods:
        row = {**base, "method": method}
        if method == BOUND:
            print(json.dumps({**row, **bound_row(problem)}), file=out)
            continue
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
        options = optimizer.parse_options(method_options(mode, method, overrides))
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
        row.update(plan_row(plan, result, penalty, organs, problem), seconds=seconds)
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


def plan_gap_pct(value: float, lb: float | None) -> float | None:
    """100 (value - lb) / value: the gap of a plan's value to a lower bound, as
    ``PlanBound.gap`` states it (None: no bound, or a value that is not positive)."""
    if lb is None or not math.isfinite(value) or value <= 0:
        return None
    return 100.0 * (value - lb) / value


def add_bound_gaps(rows: list[dict], bounds: dict[str, dict]) -> None:
    """Each planned row's gap (%) of its plan objective ``f_gap_pct`` and of its seed and
    needle cost ``seed_needle_gap_pct`` to its case's bound (``bounds``: case -> bound row);
    the latter only for plans reaching D90 >= Rx on the problem's rows (what it bounds)."""
    for r in rows:
        b = bounds.get(r["case"], {})
        if "objective" not in r or "unavailable" in b or not b:
            continue
        r["f_gap_pct"] = plan_gap_pct(r["objective"], b["objective_lb"])
        covered = r["rx_shortfall_pct"] <= 0
        lb = b["seed_needle_lb"] if covered else None
        r["seed_needle_gap_pct"] = plan_gap_pct(r["seed_needle_cost"], lb)


def quality(rows: list[dict]) -> list[dict]:
    """The rows without their times: what two runs must agree on."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--cases", default="all")
    ap.add_argument("--methods", help="comma-separated (default: the mode's list, MODE_METHODS)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--timeout-s", type=float, help="per case (default TIMEOUT_S of the mode)")
    ap.add_argument("--report", type=Path, help="only redraw the report and plots of this JSON")
    ap.add_argument(
        "--options",
        type=json.loads,
        default={},
        help="JSON {method: {option: value}} on top of the mode's options (e.g. smaller "
        'budgets: \'{"milp": {"node_limit": 5}}\')',
    )
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        name, mode, methods = args.one
        run_case(name, mode, methods.split(","), args.options)
        return
    if args.report:
        data = json.loads(args.report.read_text())
        write_report(
            args.report.with_suffix(""),
            data["machine"],
            data["run"],
            data["rows"],
            data.get("bounds", {}),
        )
        return
    methods = args.methods.split(",") if args.methods else list(MODE_METHODS[args.mode])
    if unknown := set(methods) - {*METHODS, BOUND}:
        known = ", ".join((*METHODS, BOUND))
        raise SystemExit(f"unknown method(s) {', '.join(sorted(unknown))}; known: {known}")
    check_options(args.mode, methods, args.options)
    cases = select(args.cases)
    timeout = args.timeout_s or TIMEOUT_S[args.mode]
    info = machine()
    rows: list[dict] = []
    failures: dict[str, str] = {}
    start = time.perf_counter()
    for c in cases:
        cmd = [sys.executable, __file__, "--one", c.name, args.mode, ",".join(methods)]
        cmd += ["--options", json.dumps(args.options)]
        got, why = run_child_rows(cmd, timeout)
        rows += got
        if why:
            failures[c.name] = why
        for r in got:
            print(line(r), flush=True)
        if why:
            print(f"{c.name}: {why}", flush=True)
    wall_s = time.perf_counter() - start
    bounds = {r["case"]: r for r in rows if r["method"] == BOUND}
    rows = [r for r in rows if r["method"] != BOUND]
    add_gaps(rows)
    add_bound_gaps(rows, bounds)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / result_stem(STEMS[args.mode]).name
    command = (
        f"python benchmarks/bench_cohort.py --mode {args.mode} --cases {args.cases} "
        f"--methods {','.join(methods)}"
        + (f" --options '{json.dumps(args.options)}'" if args.options else "")
    )
    run = {
        "mode": args.mode,
        "command": command,
        "options": {m: method_options(args.mode, m, args.options) for m in methods if m != BOUND},
        "seed": SEED,
        "max_points": MAX_POINTS[args.mode],
        "wall_s": wall_s,
        "timeout_s": timeout,
        "failures": failures,
    }
    stem.with_suffix(".json").write_text(
        json.dumps({"machine": info, "run": run, "rows": rows, "bounds": bounds}, indent=1)
    )
    write_report(stem, info, run, rows, bounds)
    print(f"wrote {stem}.json ({wall_s / 60:.1f} min)")


def write_report(stem: Path, info: dict, run: dict, rows: list[dict], bounds: dict) -> None:
    """``<stem>.md`` and its plots from a run's rows (the default mode: the goals' report of
    ``default_report``)."""
    from cohort_report import plots, report

    figures = plots(rows, stem)
    if run["mode"] == "default":
        import default_report

        text = default_report.report(info, run, rows, bounds, figures)
    else:
        text = report(info, run, rows, figures, PUBLISHED)
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.md and {len(figures)} plots")


def line(r: dict) -> str:
    head = f"{r['case']:22} {r['method']:10}"
    if r["method"] == BOUND:
        if "unavailable" in r:
            return f"{head} bound: not available ({r['unavailable']})"
        return (
            f"{head} f >= {r['objective_lb']}, seeds+needles >= {r['seed_needle_lb']}, "
            f"min seeds {r['min_seeds']} ({r['seconds']:.1f} s): {r['message']}"
        )
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
