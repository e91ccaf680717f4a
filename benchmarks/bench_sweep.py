"""Benchmark: a dose-escalation sweep of many plans of one case in one annealing run.

    python benchmarks/bench_sweep.py [--case vertebral] [--levels 1000] [--rx 100:180]
                                     [--chains-per-level 4] [--iterations 2000]
                                     [--backend cpu|gpu|auto] [--separate 3] [--out DIR]

The case's dose matrix is built once; ``anneal.sweep`` then plans ``--levels`` prescriptions
spread evenly over ``--rx`` (Gy), ``--chains-per-level`` chains each, all chains moved
together. For comparison in the same run, the first ``--separate`` levels are also planned
one at a time by ``anneal`` with the same chains and iterations. Reports the matrix time, the
sweep time, plans per second, the time a 1,000-plan sweep takes at that rate (measured when
``--levels`` is 1000, else marked as scaled), and, per level of the comparison, the sweep's
objective against the separate run's. Issue 4's goal: 1,000 plans in under 60 s on an H100.
Writes <out>/<date>-<machine>-sweep.{json,md} (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from importlib import resources
from pathlib import Path

import numpy as np
from _machine import RESULTS, machine, result_stem, write_rows

GOAL_PLANS, GOAL_S = 1000, 60.0


def run(args: argparse.Namespace) -> dict:
    from seedopt.optimizer import get_optimizer

    from seedopt.backend import select_backend
    from seedopt.pipeline import prepare
    from seedopt.plan_config import load_plan_spec

    backend, why = select_backend(args.backend)
    spec = load_plan_spec(
        str(resources.files("seedopt.configs").joinpath("cases", f"{args.case}.yaml"))
    )
    prepared = prepare(spec, backend)  # the matrix time synchronized with the device
    problem = prepared.problem
    matrix_s = prepared.runtime_s["dose_matrix"]
    lo, hi = (float(v) for v in args.rx.split(":"))
    levels = np.linspace(lo, hi, args.levels)
    annealer = get_optimizer("anneal")
    options = {"iterations": args.iterations}
    t0 = time.perf_counter()
    plans = annealer.sweep(
        problem, levels, rng=0, chains_per_level=args.chains_per_level, **options
    )
    backend.synchronize()
    sweep_s = time.perf_counter() - t0
    separate = []
    for plan in plans[: args.separate]:
        rx = plan.extra["prescription_gy"]
        t0 = time.perf_counter()
        alone = annealer.solve(
            dataclasses.replace(problem, prescription_gy=rx),
            rng=0,
            chains=args.chains_per_level,
            **options,
        )
        separate.append(
            {
                "prescription_gy": rx,
                "sweep_objective": plan.fun,
                "separate_objective": alone.fun,
                "separate_s": time.perf_counter() - t0,
            }
        )
    rate = args.levels / sweep_s
    return {
        "case": args.case,
        "backend": backend.name,
        "backend_choice": why,
        "levels": args.levels,
        "rx_gy": [lo, hi],
        "chains_per_level": args.chains_per_level,
        "iterations": args.iterations,
        "n_points": int(
            problem.A_target.shape[0] + sum(a.shape[0] for a in problem.A_oar.values())
        ),
        "n_candidates": problem.n_candidates,
        "matrix_s": matrix_s,
        "sweep_s": sweep_s,
        "plans_per_s": rate,
        "s_per_1000_plans": GOAL_PLANS / rate,
        "measured_1000": args.levels == GOAL_PLANS,
        "seeds_first_last": [int(plans[0].x.sum()), int(plans[-1].x.sum())],
        "separate": separate,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--case", default="vertebral")
    ap.add_argument("--levels", type=int, default=GOAL_PLANS)
    ap.add_argument("--rx", default="100:180")
    ap.add_argument("--chains-per-level", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--separate", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    info = machine()
    row = run(args)
    print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / result_stem("sweep").name
    write_rows(stem, info, [row])
    gpu = info["gpu"] or f"none ({info['gpu_unavailable_reason']})"
    scaled = "" if row["measured_1000"] else " (scaled from this run's rate, not measured)"
    lines = [
        f"# Dose-escalation sweep, {info['date']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; GPU: {gpu}; "
        f"backend {row['backend']}.",
        f"Command: `python benchmarks/bench_sweep.py --case {args.case} --levels {args.levels} "
        f"--rx {args.rx} --chains-per-level {args.chains_per_level} --iterations "
        f"{args.iterations} --backend {args.backend} --separate {args.separate}`",
        "",
        f"* case {row['case']}: {row['n_points']} points x {row['n_candidates']} candidates; "
        f"matrix {row['matrix_s']:.2f} s (built once)",
        f"* {row['levels']} plans ({args.rx} Gy) in {row['sweep_s']:.1f} s: "
        f"{row['plans_per_s']:.2f} plans/s; 1,000 plans: {row['s_per_1000_plans']:.0f} s"
        f"{scaled} (goal on an H100: < {GOAL_S:.0f} s)",
        f"* seeds at the lowest and highest prescription: {row['seeds_first_last']}",
        "",
        "| Rx Gy | sweep objective | separate run objective | separate run s |",
        "|---|---|---|---|",
    ]
    for s in row["separate"]:
        lines.append(
            f"| {s['prescription_gy']:.1f} | {s['sweep_objective']:.3f} | "
            f"{s['separate_objective']:.3f} | {s['separate_s']:.1f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
