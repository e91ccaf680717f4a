"""The metrics tables a physicist reads on the terminal: a plan's report and the comparison of
a pre-plan with the implant (``seedopt plan``, ``evaluate``, the batch runner's logs)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .plan_metrics import Goal, PlanMetrics

COMPARED = ("D90_gy", "D100_gy", "V100_pct", "V150_pct", "V200_pct", "D0.1cc_gy", "D2cc_gy")


def format_comparison(pre: dict[str, Any], post: dict[str, Any]) -> str:
    """Pre-plan and post-implant metrics side by side (structures and metrics in both)."""
    lines = [f"{'structure':16} {'metric':9} {'pre-plan':>9} {'implant':>9} {'change':>8}"]
    for name, s in post["structures"].items():
        for key in COMPARED:
            a = pre["structures"].get(name, {}).get(key)
            b = s.get(key)
            if a is None or b is None or np.isnan(b):
                continue
            lines.append(f"{name:16} {key:9} {a:>9.1f} {b:>9.1f} {b - a:>+8.1f}")
    return "\n".join(lines)


def _gy(value: float, width: int = 8) -> str:
    """A dose (Gy) in ``width`` columns, ``n/a`` when it is not computable."""
    return f"{value:>{width}.1f}" if math.isfinite(value) else f"{'n/a':>{width}}"


def goal_status(g: Goal) -> str:
    """PASS, FAIL (by how much) or NOT EVALUATED (why): a goal's verdict as the tables show it."""
    if g.met:
        return "PASS"
    if not g.evaluated:
        return f"NOT EVALUATED ({g.reason})"
    return f"FAIL (misses by {g.miss_gy:.1f} Gy, {100 * g.miss_gy / g.limit:.1f} %)"


EQD2_PARTS = ("prior", "cumulative")
"""The EQD2 parts a re-irradiation adds to the implant's (metrics.json ``*_eqd2_<part>_gy``)."""


def eqd2_rows(m: PlanMetrics) -> list[tuple[str, str, dict[str, float]]]:
    """Each EQD2-limited metric: (structure, metric, {"physical": Gy, "implant": EQD2 Gy,
    and where a prior course is known "prior", "cumulative": EQD2 Gy}), from metrics.json's
    ``<metric>_eqd2_implant_gy`` keys."""
    rows = []
    for name, s in m.structures.items():
        for key in s:
            if key.endswith("_eqd2_implant_gy"):
                metric = key.removesuffix("_eqd2_implant_gy")
                values = {"physical": s[metric + "_gy"], "implant": s[key]}
                for part in EQD2_PARTS:
                    if f"{metric}_eqd2_{part}_gy" in s:
                        values[part] = s[f"{metric}_eqd2_{part}_gy"]
                rows.append((name, metric, values))
    return rows


def format_report(m: PlanMetrics) -> str:
    """The metrics table a physicist reads: target, organs, indices, goals with pass/fail
    (a goal whose value is not computable reads ``n/a  NOT EVALUATED (why)``, never PASS)."""
    t = m.target_metrics()
    i = m.indices
    lines = [
        f"method {m.method}: {m.n_seeds} seeds on {m.n_needles} needles, total "
        f"{m.total_strength_u:.2f} U; prescription {m.prescription_gy:g} Gy",
        f"target {m.target} ({t['volume_cc']:.1f} cc): D90 {t['D90_gy']:.1f} Gy, "
        f"D100 {t['D100_gy']:.1f} Gy, V100 {t['V100_pct']:.1f} %, V150 {t['V150_pct']:.1f} %, "
        f"V200 {t['V200_pct']:.1f} %",
        f"CI {i['CI']:.2f}  EI {i['EI']:.2f}  HI {i['HI']:.2f}",
        f"{'structure':16} {'cc':>7} {'Dmax':>8} {'D0.1cc':>8} {'D2cc':>8} {'Dmean':>8}  (Gy)",
    ]
    for name, s in m.structures.items():
        lines.append(
            f"{name:16} {s['volume_cc']:>7.1f} {_gy(s['Dmax_gy'])} "
            f"{_gy(s['D0.1cc_gy'])} {_gy(s['D2cc_gy'])} {_gy(s['Dmean_gy'])}"
        )
    for name, metric, values in eqd2_rows(m):
        parts = ", ".join(f"{part} {v:.1f}" for part, v in values.items())
        lines.append(f"{name} {metric} EQD2 (Gy): {parts}")
    for name, b in m.beyond_grid.items():
        outside = "unbounded" if math.isinf(b.outside_cc) else f"{b.outside_cc:.1f} cc"
        lines.append(
            f"{name}: {b.inside_cc:.1f} cc inside the dose grid, {outside} outside "
            f"(dose there not computed, at most {b.dose_outside_max_gy:.1f} Gy)"
        )
    lines.append("goals:")
    for g in m.goals:
        lines.append(f"  {g.name:40} {_gy(g.value)} Gy  {goal_status(g)}")
    times = ", ".join(f"{k} {v:.2f} s" for k, v in m.runtime_s.items())
    lines.append(f"time: {times}")
    return "\n".join(lines)
