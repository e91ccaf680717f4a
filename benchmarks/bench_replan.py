"""Benchmark: intra-operative re-planning (issue 19) on the cohort's 30-60 cc cases.

    python benchmarks/bench_replan.py [--cases NAME,...] [--insertions 5] [--out DIR]

Each case is planned once with the default method (seed 0). Then, for each of
``--insertions`` sampled insertions (``seedopt.replan.simulated_insertion``: every needle
displaced under the 3D-printed-template error model of docs/robustness.md, tip 4.4 +- 2.9 mm,
angle 2.8 +- 1.7 deg, seed k of the sampler), with nothing deposited and, in a second run,
the deepest planned seed of every needle already deposited, the implant as inserted (the
plan's loading carried onto the displaced needles) is dosed and ``replan_case`` re-plans it
on the CPU. Rows: D90 and goals before and after, seeds, new needles, the re-plan's seconds
(candidates, dose matrix, search, dosimetry). Writes <out>/<date>-<machine>-replan.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _machine import RESULTS, machine, machine_line, result_stem
from cohort import BY_NAME

CASES = (
    "vertebral_33",
    "vertebral_55",
    "abdominal_wall_30",
    "chest_wall_45",
    "head_neck_reirradiated",
    "extremity_sarcoma_35",
    "trunk_sarcoma_60",
)


def run_case(name: str, insertions: int) -> list[dict]:
    from seedopt.backend import cpu_backend
    from seedopt.export import plan_document
    from seedopt.plan_config import PlanSpec
    from seedopt.planning import plan_case
    from seedopt.replan import replan_case, simulated_insertion
    from seedopt.robustness import ERROR_MODELS

    b = cpu_backend()
    spec = PlanSpec.model_validate(BY_NAME[name].config())
    t = time.perf_counter()
    plan = plan_case(spec, b, seed=0, cache_dir=None)
    plan_s = time.perf_counter() - t
    doc = plan_document(plan)
    rx = plan.metrics.goals[0].limit
    rows = []
    for deposited in (0, 1):
        for k in range(insertions):
            inserted = simulated_insertion(doc, ERROR_MODELS["template-3d-printed"], k, deposited)
            t = time.perf_counter()
            r = replan_case(spec, plan.case, None, plan.source, inserted, b, doc=doc)
            seconds = time.perf_counter() - t
            new = [d for d in r.decisions() if not d["inserted"]]
            rows.append(
                {
                    "case": name,
                    "volume_cc": BY_NAME[name].volume_cc,
                    "approach": spec.approach.kind,
                    "insertion": k,
                    "deposited_per_needle": deposited,
                    "plan_seeds": len(plan.seeds_mm),
                    "plan_needles": len(doc["needles"]),
                    "plan_s": plan_s,
                    "plan_goals": plan.goals_met,
                    "rx_gy": rx,
                    "d90_before_gy": r.before.goals[0].value,
                    "goals_before": r.before.goals_met,
                    "d90_after_gy": r.after.metrics.goals[0].value,
                    "goals_after": r.after.goals_met,
                    "seeds_after": len(r.after.seeds_mm),
                    "new_needles": len(new),
                    "withdrawn": sum(d["decision"].startswith("withdraw") for d in r.decisions()),
                    "seconds": seconds,
                    "phases_s": r.seconds,
                }
            )
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "phases_s"}), flush=True)
    return rows


def report(info: dict, args: argparse.Namespace, rows: list[dict]) -> str:
    lines = [
        "# Intra-operative re-planning on the cohort (issue 19)",
        "",
        machine_line(info),
        "",
        f"Command: `python benchmarks/bench_replan.py --insertions {args.insertions}`. Every",
        "needle displaced under the 3D-printed-template model (tip 4.4 +- 2.9 mm, angle",
        "2.8 +- 1.7 deg); deposited: the deepest planned seed of each needle already in.",
        "",
        "| case | cc | approach | plan meets goals | deposited | D90 before (% Rx) | "
        "goals before | D90 after (% Rx) | goals after | seeds plan -> after | new needles | "
        "withdrawn | s (max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["case"], r["deposited_per_needle"]) for r in rows}, key=str)
    for case, dep in keys:
        rs = [r for r in rows if r["case"] == case and r["deposited_per_needle"] == dep]
        rx = rs[0]["rx_gy"]

        def pct(key: str, rs: list[dict] = rs, rx: float = rx) -> str:
            v = np.array([r[key] for r in rs]) / rx * 100
            return f"{v.min():.0f}-{v.max():.0f}"

        lines.append(
            f"| {case} | {rs[0]['volume_cc']:g} | {rs[0]['approach']} | "
            f"{'yes' if rs[0]['plan_goals'] else 'no'} | {dep} | "
            f"{pct('d90_before_gy')} | {sum(r['goals_before'] for r in rs)}/{len(rs)} | "
            f"{pct('d90_after_gy')} | {sum(r['goals_after'] for r in rs)}/{len(rs)} | "
            f"{rs[0]['plan_seeds']} -> {min(r['seeds_after'] for r in rs)}-"
            f"{max(r['seeds_after'] for r in rs)} | "
            f"{min(r['new_needles'] for r in rs)}-{max(r['new_needles'] for r in rs)} | "
            f"{min(r['withdrawn'] for r in rs)}-{max(r['withdrawn'] for r in rs)} | "
            f"{max(r['seconds'] for r in rs):.1f} |"
        )
    s = np.array([r["seconds"] for r in rows])
    ok = sum(r["goals_after"] for r in rows)
    lines += [
        "",
        f"Re-plans: {len(rows)}; every goal met after: {ok}/{len(rows)} (before: "
        f"{sum(r['goals_before'] for r in rows)}/{len(rows)}); seconds median {np.median(s):.1f}, "
        f"max {s.max():.1f}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--insertions", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    info = machine()
    rows: list[dict] = []
    for name in args.cases.split(","):
        rows += run_case(name, args.insertions)
    stem = args.out / result_stem("replan").name
    stem.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    stem.with_suffix(".md").write_text(report(info, args, rows))
    print(report(info, args, rows))


if __name__ == "__main__":
    main()
