"""Benchmark: every optimizer on every built-in case, side by side, in one run.

    python benchmarks/bench_plan.py [--cases vertebral,chest_wall] [--methods clinical,hybrid]
                                    [--timeout-s 900]

Methods are registered optimizer names; ``clinical-strength`` is the clinical baseline with
the seed strength (not the count) scaled to D90 = Rx; ``hybrid@clinical`` and
``hybrid@clinical-strength`` plan with that baseline's D90 and organ values as their goals
(``matched_spec``), which is how the clinical-comparison goal is judged (``compare``). Their
objective column is that of their own goals.

Each (case, method) plans in a child process (so one slow method cannot stall the rest; it is
reported as timed out) with the dose-matrix cache shared. Reports D90 / prescription, V100,
V150, V200, CI, EI, HI, organ D0.1cc / D2cc, needles, seeds, total strength, goals met, the
objective and the time. Writes benchmarks/results/<date>-<machine>-plan.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from _machine import machine, result_stem, rows_out, run_child, write_rows

CASES = "vertebral,chest_wall,head_neck,cervical_node,trunk_sarcoma"
METHODS = (
    "clinical,clinical-strength,lp,anneal,hybrid,milp,hybrid@clinical,hybrid@clinical-strength"
)
DEFAULT = "hybrid"
BASELINES = ("clinical", "clinical-strength")


def _spec(case: str, method: str):
    """The built-in case's config; ``clinical-strength`` scales the strength."""
    from seedopt.plan_config import load_plan_spec

    spec = load_plan_spec(str(resources.files("seedopt.configs").joinpath("cases", f"{case}.yaml")))
    if method == "clinical-strength":
        options = {"scaling": "strength"}
        spec = spec.model_copy(
            update={"optimizer": spec.optimizer.model_copy(update={"options": options})}
        )
    return spec


def organ_tolerance_gy(value_gy: float) -> float:
    """How much higher an organ metric may be and still count as "no organ worse" (Gy)."""
    return max(0.01 * value_gy, 0.5)


def matched_spec(spec, baseline_metrics):
    """``spec`` with the baseline plan's D90 as the prescription (if higher) and each hard
    limit lowered to the baseline's value plus ``organ_tolerance_gy``: a plan meeting these
    goals has equal or better D90 and no organ worse than the baseline. The organ term is
    off (``organ_per_pct`` 0): the lowered limits already ask for "no organ worse", and the
    term, priced per percent of each limit above half of it, would grow with the lowering."""
    from seedopt.case.case import DERIVED_SKIN

    m = baseline_metrics
    tighter = []
    for lim in spec.hard_limits(spec.roles.skin.structure or DERIVED_SKIN):
        value = m.structures[lim.structure][f"{lim.metric}_gy"]
        if not math.isnan(value):
            lim = dataclasses.replace(
                lim, max_gy=min(lim.max_gy, value + organ_tolerance_gy(value))
            )
        tighter.append(lim)
    d90 = m.target_metrics()["D90_gy"]
    return spec.model_copy(
        update={
            "prescription_gy": max(spec.prescription_gy, d90),
            "goals": spec.goals.model_copy(
                update={
                    "hard": tighter,
                    "weights": dataclasses.replace(spec.goals.weights, organ_per_pct=0.0),
                }
            ),
        }
    )


def one(case: str, method: str, cache: str) -> dict:
    """One plan. ``hybrid@BASELINE``: the default method with BASELINE's D90 and organ values
    as its goals (``matched_spec``), reported against the case's own prescription."""
    from seedopt.backend import cpu_backend
    from seedopt.pipeline import limited_outside
    from seedopt.plan_metrics import evaluate
    from seedopt.planning import plan_case

    name, _, baseline = method.partition("@")
    spec = _spec(case, name)
    goal_spec = spec
    if baseline:
        base = plan_case(
            _spec(case, baseline), cpu_backend(), method="clinical", cache_dir=Path(cache)
        )
        goal_spec = matched_spec(spec, base.metrics)
    t0 = time.perf_counter()
    plan = plan_case(goal_spec, cpu_backend(), method=name.split("-")[0], cache_dir=Path(cache))
    seconds = time.perf_counter() - t0
    m = plan.metrics
    if baseline:  # the plan's metrics against the case's own prescription and limits
        outside = limited_outside(spec, plan.case, plan.images)
        own = evaluate(
            spec,
            plan.case,
            plan.images,
            plan.dose_gy,
            plan.seeds_mm,
            plan.seed_axes,
            m.n_needles,
            plan.source,
            m.method,
            outside,
        )
        m = dataclasses.replace(
            m, **{k: getattr(own, k) for k in ("prescription_gy", "structures", "indices", "goals")}
        )
    t = m.target_metrics()
    oars = {g.name: g.value for g in m.goals[1:]}
    return {
        "case": case,
        "method": method,
        "target_cc": t["volume_cc"],
        "D90_over_rx": t["D90_gy"] / m.prescription_gy,
        "V100": t["V100_pct"],
        "V150": t["V150_pct"],
        "V200": t["V200_pct"],
        **m.indices,
        "oar_limits": oars,
        "needles": m.n_needles,
        "seeds": m.n_seeds,
        "total_u": m.total_strength_u,
        "goals_met": m.goals_met,
        "objective": m.objective,
        "seconds": seconds,
        "n_candidates": m.optimizer.n_candidate_seeds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", default=CASES)
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--timeout-s", type=float, default=900.0)
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        out = rows_out()
        print(json.dumps(one(*args.one)), file=out)
        return
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for case in args.cases.split(","):
            for method in args.methods.split(","):
                cmd = [sys.executable, __file__, "--one", case, method, cache]
                row = {"case": case, "method": method, **run_child(cmd, args.timeout_s)}
                rows.append(row)
                print(_line(row), flush=True)
    stem = result_stem("plan")
    write_rows(stem, info, rows)
    lines = [
        f"# Planning benchmark, {info['date']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; backend cpu. "
        f"Command: `python benchmarks/bench_plan.py --cases {args.cases} --methods {args.methods}`",
        "",
        "| case | method | D90/Rx | V100 | V150 | V200 | CI | EI | HI | needles | seeds | "
        "total U | goals | objective | s |",
        "|---|" * 1 + "---|" * 14,
    ]
    for r in rows:
        if "D90_over_rx" not in r:
            status = (
                f"timed out after {r['timed_out_s']:.0f} s" if "timed_out_s" in r else r["error"]
            )
            lines.append(f"| {r['case']} | {r['method']} | {status} |" + " |" * 13)
            continue
        lines.append(
            f"| {r['case']} | {r['method']} | {r['D90_over_rx']:.3f} | {r['V100']:.1f} | "
            f"{r['V150']:.1f} | {r['V200']:.1f} | {r['CI']:.2f} | {r['EI']:.2f} | {r['HI']:.2f} | "
            f"{r['needles']} | {r['seeds']} | {r['total_u']:.1f} | "
            f"{'met' if r['goals_met'] else 'MISSED'} | {r['objective']:.2f} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        "`clinical`: the rule pattern with the seed count scaled at the config's strength; "
        "`clinical-strength`: the pattern with the strength scaled (its total U differs).",
        "",
        *compare(rows),
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and .md")


def compare(rows: list[dict]) -> list[str]:
    """The issue's goal, per case and clinical baseline: the default method planned to the
    baseline's D90 and organ values (``DEFAULT@baseline``; plain ``DEFAULT`` where that row
    was not run) against the baseline."""
    out = [
        f"## {DEFAULT} against the clinical baselines",
        "",
        "Goal: at equal or better D90 (within 0.1 %), >= 15 % fewer seeds or >= 10 points "
        "lower V200, and no organ-limit metric higher by more than 1 % (or 0.5 Gy). "
        f"`{DEFAULT}@BASELINE` plans with BASELINE's D90 as the prescription and each organ "
        "limit lowered to BASELINE's value plus that tolerance (`matched_spec`); its metrics "
        "are reported against the case's own prescription.",
        "",
        "| case | baseline | plan | D90/Rx (base, plan) | seeds (base, plan, change) | "
        "V200 (base, plan, change) | organs worse | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["case"], r["method"]): r for r in rows if "D90_over_rx" in r}
    for case in dict.fromkeys(r["case"] for r in rows):
        for base in BASELINES:
            b = by.get((case, base))
            name = f"{DEFAULT}@{base}" if (case, f"{DEFAULT}@{base}") in by else DEFAULT
            d = by.get((case, name))
            if d is None or b is None:
                continue
            fewer = 100.0 * (1.0 - d["seeds"] / b["seeds"])
            lower = b["V200"] - d["V200"]
            worse = [
                k
                for k, v in d["oar_limits"].items()
                if v > (bv := b["oar_limits"].get(k, v)) + organ_tolerance_gy(bv)
            ]
            d90_ok = d["D90_over_rx"] >= max(1.0, b["D90_over_rx"]) * (1 - 1e-3)
            met = d90_ok and (fewer >= 15.0 or lower >= 10.0) and not worse
            out.append(
                f"| {case} | {base} | {name} | {b['D90_over_rx']:.3f}, {d['D90_over_rx']:.3f} | "
                f"{b['seeds']}, {d['seeds']}, {-fewer:+.0f} % | "
                f"{b['V200']:.1f}, {d['V200']:.1f}, {-lower:+.1f} | {', '.join(worse) or 'none'} | "
                f"{'met' if met else 'NOT met'} |"
            )
    return out


def _line(r: dict) -> str:
    if "D90_over_rx" not in r:
        return f"{r['case']:14} {r['method']:17} {r.get('timed_out_s', r.get('error'))}"
    return (
        f"{r['case']:14} {r['method']:17} D90/Rx {r['D90_over_rx']:.3f} V150 {r['V150']:5.1f} "
        f"V200 {r['V200']:5.1f} seeds {r['seeds']:3d} needles {r['needles']:2d} "
        f"{'met' if r['goals_met'] else 'MISSED'} obj {r['objective']:8.2f} {r['seconds']:6.1f} s"
    )


if __name__ == "__main__":
    main()
