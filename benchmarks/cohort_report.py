"""The cohort benchmark's report: Markdown tables and matplotlib plots from its rows
(``bench_cohort.py`` writes the rows; this module only reads them)."""

from __future__ import annotations

import math
import statistics
import zlib
from pathlib import Path
from typing import Any

from _machine import machine_line

METHOD_ORDER = ("clinical", "lp", "milp", "anneal", "anneal-gpu", "hybrid")


def _planned(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "D90_over_rx" in r]


def _methods(rows: list[dict]) -> list[str]:
    seen = {r["method"] for r in rows}
    return [m for m in METHOD_ORDER if m in seen]


def _median(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def not_run(r: dict) -> str:
    """Why a row has no plan: the method was not run (``skipped``) or refused the problem."""
    return f"not run: {r['skipped']}" if "skipped" in r else f"refused: {r['refused']}"


def plots(rows: list[dict], stem: Path) -> list[Path]:
    """D90 / Rx per method; optimizer time against target volume (log axes); seeds and
    needles per method. PNGs beside ``stem``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    planned = _planned(rows)
    methods = _methods(planned)
    if not planned:
        return []
    out = []

    def strip(ax: Any, key: str) -> None:
        for k, m in enumerate(methods):
            for r in (r for r in planned if r["method"] == m):
                jitter = ((zlib.crc32(r["case"].encode()) % 11) - 5) * 0.03  # same every run
                ax.plot(
                    k + jitter,
                    r[key],
                    "o" if r["reachable"] else "x",
                    color="C0" if r["reachable"] else "C3",
                    ms=5,
                    alpha=0.8,
                )
        ax.set_xticks(range(len(methods)), methods)

    fig, ax = plt.subplots(figsize=(7, 4))
    strip(ax, "D90_over_rx")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_ylabel("target D90 / prescription")
    ax.set_title("D90 / Rx per method (x: organ limits make Rx unreachable)")
    out.append(_save(fig, stem, "d90"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, m in enumerate(methods):
        pts = sorted((r["target_cc"], max(r["seconds"], 1e-3)) for r in planned if r["method"] == m)
        ax.plot(*zip(*pts, strict=True), "o-", ms=4, lw=0.8, color=f"C{k}", label=m)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("target volume (cc)")
    ax.set_ylabel("optimizer time (s)")
    ax.set_title("time against case size")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", lw=0.3)
    out.append(_save(fig, stem, "time"))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    strip(a1, "seeds")
    a1.set_yscale("log")
    a1.set_ylabel("seeds")
    strip(a2, "needles")
    a2.set_yscale("log")
    a2.set_ylabel("needles")
    fig.suptitle("seeds and needles per method (one point per case)")
    out.append(_save(fig, stem, "seeds-needles"))
    return out


def _save(fig: Any, stem: Path, name: str) -> Path:
    import matplotlib.pyplot as plt

    path = stem.parent / f"{stem.name}-{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _limits(r: dict) -> str:
    return "; ".join(
        f"{lim['name'].split(' <=')[0]} {lim['value']:.1f}/{lim['limit']:g}"
        + ("" if lim["met"] else " MISSED")
        for lim in r["limits"]
    )


def summary(rows: list[dict]) -> list[str]:
    """One line per method over the cohort."""
    planned = _planned(rows)
    cases = sorted({r["case"] for r in rows})
    clinical = {r["case"]: r for r in planned if r["method"] == "clinical"}
    out = [
        "| method | cases planned | goals met (reachable cases) | median D90/Rx | median V150 | "
        "median V200 | median CI | median seeds / clinical | median needles / clinical | "
        "median gap % | total s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in _methods(rows):
        mine = [r for r in planned if r["method"] == m]
        refused = sum("refused" in r for r in rows if r["method"] == m)
        if not mine:
            why = next(not_run(r) for r in rows if r["method"] == m)
            why = f"{refused} refused" if refused else why
            out.append(f"| {m} | 0 of {len(cases)} ({why}) |" + " |" * 9)
            continue
        reach = [r for r in mine if r["reachable"]]
        ratio_s = [r["seeds"] / clinical[r["case"]]["seeds"] for r in mine if r["case"] in clinical]
        ratio_n = [
            r["needles"] / clinical[r["case"]]["needles"] for r in mine if r["case"] in clinical
        ]
        out.append(
            f"| {m} | {len(mine)} of {len(cases)}{f' ({refused} refused)' if refused else ''} | "
            f"{sum(r['goals_met'] for r in reach)} of "
            f"{len(reach)} | {_fmt(_median([r['D90_over_rx'] for r in mine]), '.3f')} | "
            f"{_fmt(_median([r['V150'] for r in mine]), '.1f')} | "
            f"{_fmt(_median([r['V200'] for r in mine]), '.1f')} | "
            f"{_fmt(_median([r['CI'] for r in mine]))} | {_fmt(_median(ratio_s))} | "
            f"{_fmt(_median(ratio_n))} | "
            f"{_fmt(_median([r.get('gap_pct') for r in mine]), '.1f')} | "
            f"{sum(r['seconds'] for r in mine):.0f} |"
        )
    return out


def every_case(rows: list[dict]) -> list[str]:
    out = [
        "| case | cc | Rx Gy | method | D90/Rx | V100 | V150 | V200 | CI | EI | HI | "
        "limits (Gy, value/limit) | needles | seeds | s | gap % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cc = r.get("target_cc", r["asked_cc"])
        head = f"| {r['case']} | {cc:.1f} | {r['prescription_gy']:g} | {r['method']} |"
        if "D90_over_rx" not in r:
            out.append(f"{head} {not_run(r)} |" + " |" * 11)
            continue
        out.append(
            f"{head} {r['D90_over_rx']:.3f} | {r['V100']:.1f} | {r['V150']:.1f} | "
            f"{r['V200']:.1f} | {r['CI']:.2f} | {r['EI']:.2f} | {_fmt(r['HI'])} | {_limits(r)} | "
            f"{r['needles']} | {r['seeds']} | "
            f"{r['seconds']:.1f}{' T' if r['time_limited'] else ''} | "
            f"{_fmt(r.get('gap_pct'), '.1f')} |"
        )
    return out


def unreachable(rows: list[dict]) -> list[str]:
    """What each method gives up on the cases where the goals cannot all hold."""
    out = [
        "| case | method | D90/Rx | goals missed (by how much) |",
        "|---|---|---|---|",
    ]
    for r in _planned(rows):
        if r["reachable"]:
            continue
        missed = [
            f"{lim['name']}: {lim['value']:.1f} Gy (+{lim['miss']:.1f} Gy, "
            f"{100 * lim['miss'] / lim['limit']:.0f} %)"
            for lim in r["limits"]
            if not lim["met"]
        ]
        if r["D90_over_rx"] < 1 - 1e-6:
            missed.insert(0, f"D90 {100 * (1 - r['D90_over_rx']):.1f} % below Rx")
        out.append(
            f"| {r['case']} | {r['method']} | {r['D90_over_rx']:.3f} | "
            f"{'; '.join(missed) or 'none: every goal met, the case is reachable after all'} |"
        )
    return out


def context(rows: list[dict], published: tuple[dict, ...]) -> list[str]:
    out = [
        "| published series | their numbers | cohort case | method | GTV cc | D90 Gy | V100 | "
        "V150 | V200 | CI | EI | HI | needles | seeds (mCi) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in published:
        mine = [r for r in _planned(rows) if r["case"] == p["case"]]
        for k, r in enumerate(mine):
            lead = f"| {p['series']} | {p['values']} |" if k == 0 else "| | |"
            out.append(
                f"{lead} {r['case']} ({r['prescription_gy']:g} Gy) | {r['method']} | "
                f"{r['target_cc']:.1f} | {r['D90_gy']:.0f} | {r['V100']:.1f} | {r['V150']:.1f} | "
                f"{r['V200']:.1f} | {r['CI']:.2f} | {r['EI']:.2f} | {_fmt(r['HI'])} | "
                f"{r['needles']} | {r['seeds']} ({r['activity_mci']:g}) |"
            )
        if not mine:
            out.append(
                f"| {p['series']} | {p['values']} | {p['case']} (not in this run) |" + " |" * 11
            )
    return out


def report(
    info: dict, run: dict, rows: list[dict], figures: list[Path], published: tuple[dict, ...]
) -> str:
    """The Markdown report of one benchmark run."""
    cases = list(dict.fromkeys(r["case"] for r in rows))
    options = "; ".join(f"`{m}` {o or 'defaults'}" for m, o in run["options"].items())
    lines = [
        f"# Cohort benchmark ({run['mode']} mode), {info['date']}",
        "",
        machine_line(info),
        f"Command: `{run['command']}`; {len(cases)} cases, wall time "
        f"{run['wall_s'] / 60:.1f} min. Random seed {run['seed']}.",
        f"Options: {options}.",
        "",
        "D90/Rx, V100/V150/V200 (% of the target), CI, EI, HI and the organ metrics come from "
        "the full dose grid of each plan. `s`: optimizer time (the case, candidates and matrix "
        "are built once per case, before any method). `gap %`: the plan's score under the "
        f"linear-penalty model of the LP/MILP ({run['max_points']:,} target rows) above the "
        "best lower bound "
        "HiGHS proved for that model on the case (LP optimum or MILP dual bound), as a "
        "percentage of the score; a gap in the model's objective, not in the plan objective. "
        "`T`: HiGHS stopped at its time limit (LP or MILP): that row's numbers depend on how far "
        "it got and may differ between runs; every other row repeats exactly.",
        "",
    ]
    if run["failures"]:
        lines += ["Cases that did not finish every method:", ""]
        lines += [f"- {c}: {why}" for c, why in run["failures"].items()]
        lines.append("")
    lines += ["## Every method over the cohort", "", *summary(rows), ""]
    lines += [f"![{f.stem}]({f.name})" for f in figures]
    lines += ["", "## Every case", "", *every_case(rows), ""]
    lines += [
        "## Unreachable by design: what each method gives up",
        "",
        "The organ limits cannot hold with D90 >= Rx on these cases; the best plan meets "
        "what it can and the report says by how much the rest are missed.",
        "",
        *unreachable(rows),
        "",
        "## Published series beside the cohort",
        "",
        "Context only: the published plans are clinical (hand or vendor-TPS) plans of real "
        "patients with their own prescriptions and organ limits; the cohort case is the "
        "synthetic case closest in site and size.",
        "",
        *context(rows, published),
        "",
    ]
    return "\n".join(lines) + "\n"
