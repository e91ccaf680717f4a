"""Benchmark: the heuristics against a PROVEN optimum of the exact plan objective.

    python benchmarks/bench_optimality.py [--time-limit-s 120] [--seeds 0,1,2]

``milp`` with ``formulation="exact"`` (optimizer/exact.py) solves a model whose objective is
``objective`` itself, so when HiGHS proves optimality its value is the true optimum; when it
stops at the time limit its dual bound is still a proven lower bound. On synthetic problems
of growing size (``optimizer.synthetic``: needles x candidates per needle, target points) it
reports that optimum or bound, and the objective of ``hybrid`` (default options), ``anneal``
and ``lp`` as a ratio to it (or that the method refused the problem: no plan as good as the
rule-based loading, ``seedopt.optimizer.usable``). Writes
benchmarks/results/<date>-<machine>-optimality.{json,md}.
"""

from __future__ import annotations

import argparse
import json

from _machine import machine, result_stem, write_rows
from seedopt.optimizer import get_optimizer
from seedopt.optimizer.synthetic import RECTUM_LIMITS, synthetic_problem

from seedopt.errors import SeedoptError

SIZES = [(3, 4, 60), (4, 4, 80), (4, 5, 80), (6, 4, 100), (6, 6, 150)]
"""(needles, candidates per needle, target points) of the problems."""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--time-limit-s", type=float, default=120.0)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    info = machine()
    rows = []
    for needles, per, points in SIZES:
        for seed in map(int, args.seeds.split(",")):
            p = synthetic_problem(seed, RECTUM_LIMITS, points, needles=needles, per_needle=per)
            milp = get_optimizer("milp")  # run: its bound is the reference even when cut short
            exact = milp.run(
                p,
                None,
                milp.parse_options(
                    formulation="exact", mip_rel_gap=1e-6, time_limit_s=args.time_limit_s
                ),
            )
            proven = exact.status == 0
            ref = exact.fun if proven else exact.bound
            row = {
                "needles": needles,
                "candidates": needles * per,
                "points": points,
                "seed": seed,
                "proven": proven,
                "milp_fun": exact.fun,
                "milp_bound": exact.bound,
                "milp_s": exact.runtime_s,
            }
            for name in ("hybrid", "anneal", "lp"):
                try:
                    r = get_optimizer(name).solve(p, rng=seed)
                except SeedoptError as exc:
                    row.update({f"{name}_refused": str(exc), f"{name}_ratio": None})
                    continue
                row[f"{name}_fun"] = r.fun
                row[f"{name}_s"] = r.runtime_s
                row[f"{name}_ratio"] = r.fun / ref if ref else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    stem = result_stem("optimality")
    write_rows(stem, info, rows)
    lines = [
        f"# Heuristics against the proven optimum of the exact objective, {info['date']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores. Command: `python "
        f"benchmarks/bench_optimality.py --time-limit-s {args.time_limit_s:g} "
        f"--seeds {args.seeds}`",
        "",
        "Ratio = objective / proven optimum (MILP optimal) or / proven lower bound (MILP "
        "stopped at the time limit: the ratio then over-states the true gap).",
        "",
        "| candidates | points | seed | MILP | reference | MILP s | hybrid ratio | anneal ratio "
        "| lp ratio | hybrid s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = r["milp_fun"] if r["proven"] else r["milp_bound"]
        ratios = [
            "refused" if r[f"{n}_ratio"] is None else f"{r[f'{n}_ratio']:.4f}"
            for n in ("hybrid", "anneal", "lp")
        ]
        hybrid_s = f"{r['hybrid_s']:.1f}" if "hybrid_s" in r else "-"
        lines.append(
            f"| {r['candidates']} | {r['points']} | {r['seed']} | "
            f"{'optimal' if r['proven'] else 'time limit'} | {ref:.4f} | {r['milp_s']:.1f} | "
            f"{' | '.join(ratios)} | {hybrid_s} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
