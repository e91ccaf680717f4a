"""The metrics tables a physicist reads on the terminal: a plan's report and the comparison of
a pre-plan with the implant (``seedopt plan``, ``evaluate``, the batch runner's logs)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import SeedoptError

COMPARED = ("D90_gy", "D100_gy", "V100_pct", "V150_pct", "V200_pct", "D0.1cc_gy", "D2cc_gy")


def pre_plan_structures(data: Any, source: str, target: str) -> dict[str, dict[str, Any]]:
    """The structures of a pre-plan's metrics (``data``, read from the file ``source``),
    checked before they are compared with an implant whose target is ``target``: an object
    whose ``target`` is ``target`` and whose ``structures`` map names to objects of metrics,
    each compared metric (``COMPARED``) absent, null or a finite number, the target's
    ``D90_gy`` a number. Anything else is one error naming the file and the key."""
    if not isinstance(data, dict):
        raise SeedoptError(
            f"{source}: expected an object (the metrics.json of seedopt plan), "
            f"got {_json_type(data)}"
        )
    for key in ("target", "structures"):
        if key not in data:
            raise SeedoptError(f"{source}: {key}: missing (not the metrics.json of seedopt plan?)")
    structures = data["structures"]
    if not isinstance(structures, dict):
        raise SeedoptError(
            f"{source}: structures: expected an object of structures, got {_json_type(structures)}"
        )
    if data["target"] != target:
        raise SeedoptError(
            f"{source}: target: the pre-plan's target is {data['target']!r}, this case's is "
            f"{target!r}"
        )
    for name, metrics in structures.items():
        if not isinstance(metrics, dict):
            raise SeedoptError(
                f"{source}: structures.{name}: expected an object of metrics, "
                f"got {_json_type(metrics)}"
            )
        for key in COMPARED:
            value = metrics.get(key)
            if value is not None and not _finite_number(value):
                raise SeedoptError(
                    f"{source}: structures.{name}.{key}: expected a finite number or null, "
                    f"got {_json_type(value)} {value!r:.40}"
                )
    if target not in structures:
        raise SeedoptError(f"{source}: structures.{target}: missing (the target)")
    if structures[target].get("D90_gy") is None:
        raise SeedoptError(f"{source}: structures.{target}.D90_gy: missing (the target's D90)")
    return structures


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def format_comparison(pre: dict[str, dict[str, Any]], post: dict[str, Any]) -> str:
    """Pre-plan and post-implant metrics side by side (structures and metrics in both);
    ``pre`` the pre-plan's structures, checked by ``pre_plan_structures``."""
    lines = [f"{'structure':16} {'metric':9} {'pre-plan':>9} {'implant':>9} {'change':>8}"]
    for name, s in post["structures"].items():
        for key in COMPARED:
            a = pre.get(name, {}).get(key)
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
