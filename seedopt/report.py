"""The metrics tables a physicist reads on the terminal: a plan's report and the comparison of
a pre-plan with the implant (``seedopt plan``, ``evaluate``, the batch runner's logs)."""

from __future__ import annotations

from typing import Any

import numpy as np

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


def format_report(m: dict[str, Any]) -> str:
    """The metrics table a physicist reads: target, organs, indices, goals with pass/fail."""
    t = m["structures"][m["target"]]
    lines = [
        f"method {m['method']}: {m['n_seeds']} seeds on {m['n_needles']} needles, total "
        f"{m['total_strength_u']:.2f} U; prescription {m['prescription_gy']:g} Gy",
        f"target {m['target']} ({t['volume_cc']:.1f} cc): D90 {t['D90_gy']:.1f} Gy, "
        f"D100 {t['D100_gy']:.1f} Gy, V100 {t['V100_pct']:.1f} %, V150 {t['V150_pct']:.1f} %, "
        f"V200 {t['V200_pct']:.1f} %",
        f"CI {m['indices']['CI']:.2f}  EI {m['indices']['EI']:.2f}  HI {m['indices']['HI']:.2f}",
        f"{'structure':16} {'cc':>7} {'Dmax':>8} {'D0.1cc':>8} {'D2cc':>8} {'Dmean':>8}  (Gy)",
    ]
    for name, s in m["structures"].items():
        lines.append(
            f"{name:16} {s['volume_cc']:>7.1f} {s['Dmax_gy']:>8.1f} "
            f"{s['D0.1cc_gy']:>8.1f} {s['D2cc_gy']:>8.1f} {s['Dmean_gy']:>8.1f}"
        )
    lines.append("goals:")
    for g in m["goals"]:
        status = (
            "PASS" if g["met"] else f"FAIL (misses by {g['miss']:.1f} Gy, {g['miss_pct']:.1f} %)"
        )
        lines.append(f"  {g['name']:40} {g['value']:8.1f} Gy  {status}")
    times = ", ".join(f"{k} {v:.2f} s" for k, v in m["runtime_s"].items())
    lines.append(f"time: {times}")
    return "\n".join(lines)
