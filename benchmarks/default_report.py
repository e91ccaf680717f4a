"""The default-options benchmark's report (``bench_cohort.py --mode default``): issue 16's
goal 1 (better than the count-scaled rule on every case) and goal 3 (fast) judged from the
rows, the per-case table against the rule with each plan's gap to the case's lower bound, and
a fit of the default's time against the problem's size. It only reads the rows."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _machine import machine_line
from cohort_report import METHOD_ORDER, _fmt, _limits, not_run

DEFAULT = "hybrid"
"""The default method (``seedopt.optimizer.DEFAULT_OPTIMIZER``)."""
RULE = "clinical"
"""The count-scaled clinical rule every plan is compared with."""
NEEDLE_RATIO = 0.75
SEED_RATIO = 0.95
ORGAN_TOLERANCE_GY = 1.0
MEDIAN_TIME_S = 10.0
LARGEST_CASE = "trunk_sarcoma_600"
LARGEST_TIME_S = 60.0


@dataclass(frozen=True)
class Criterion:
    """One criterion of a goal: what it asks, what was measured and whether it holds
    (``passed`` None: this run has no rows to judge it on). ``values``: the numbers behind
    ``measured``."""

    asks: str
    measured: str
    passed: bool | None
    values: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "NOT JUDGED"}[self.passed]
        return f"| {self.asks} | {self.measured} | **{verdict}** |"


def _by_case(rows: list[dict], method: str) -> dict[str, dict]:
    return {r["case"]: r for r in rows if r["method"] == method and "D90_over_rx" in r}


def goal1(rows: list[dict]) -> list[Criterion]:
    """Goal 1 against the rule: over the reachable cases with both plans, total needles and
    seeds of the default at most 0.75x and 0.95x the rule's, median V150 and V200 no higher,
    no limited organ metric above the rule's + 1 Gy where the rule meets that limit, every
    goal met; and on every case, each limit the rule breaks met by the default where any
    other method meets it."""
    default, rule = _by_case(rows, DEFAULT), _by_case(rows, RULE)
    reachable_cases = list(dict.fromkeys(r["case"] for r in rows if r["reachable"]))
    both = [c for c in reachable_cases if c in default and c in rule]
    of = f"{len(both)} of {len(reachable_cases)} reachable cases"
    out = []
    for key, most in (("needles", NEEDLE_RATIO), ("seeds", SEED_RATIO)):
        mine = sum(default[c][key] for c in both)
        theirs = sum(rule[c][key] for c in both)
        ratio = mine / theirs if theirs else math.nan
        out.append(
            Criterion(
                f"total {key} default / rule <= {most:g}",
                f"{mine} / {theirs} = {_fmt(ratio, '.3f')} ({of})",
                ratio <= most if both else None,
                {"default": mine, "rule": theirs, "ratio": ratio},
            )
        )
    for key in ("V150", "V200"):
        mine = statistics.median(default[c][key] for c in both) if both else math.nan
        theirs = statistics.median(rule[c][key] for c in both) if both else math.nan
        out.append(
            Criterion(
                f"median {key} default <= rule",
                f"{_fmt(mine, '.1f')} % vs {_fmt(theirs, '.1f')} % ({of})",
                mine <= theirs if both else None,
                {"default": mine, "rule": theirs},
            )
        )
    compared, above = 0, []
    for c in both:
        mine = {lim["name"]: lim for lim in default[c]["limits"]}
        for lim in rule[c]["limits"]:
            if not lim["met"]:
                continue
            compared += 1
            excess = mine[lim["name"]]["value"] - lim["value"]
            if excess > ORGAN_TOLERANCE_GY:
                above.append(f"{c} {lim['name'].split(' <=')[0]} +{excess:.1f} Gy")
    out.append(
        Criterion(
            f"no organ metric above the rule's + {ORGAN_TOLERANCE_GY:g} Gy where the rule meets "
            "the limit",
            f"{len(above)} of {compared} limits above" + (f": {'; '.join(above)}" if above else ""),
            not above if compared else None,
            {"compared": compared, "above": len(above)},
        )
    )
    met = [c for c in both if default[c]["goals_met"]]
    missed = [c for c in both if c not in met]
    out.append(
        Criterion(
            "every goal met on the reachable cases",
            f"{len(met)} of {len(both)}" + (f" (missed: {', '.join(missed)})" if missed else ""),
            not missed if both else None,
            {"met": len(met), "cases": len(both)},
        )
    )
    out.append(_broken_by_rule(rows, default, rule))
    return out


def _broken_by_rule(rows: list[dict], default: dict[str, dict], rule: dict[str, dict]) -> Criterion:
    """Each limit the rule breaks that another method meets: the default meets it too."""
    judged, failed = 0, []
    for c, r in rule.items():
        if c not in default:
            continue
        for lim in r["limits"]:
            if lim["met"]:
                continue
            others = [
                o["method"]
                for o in rows
                if o["case"] == c
                and o["method"] not in (RULE, DEFAULT)
                and "limits" in o
                and any(x["name"] == lim["name"] and x["met"] for x in o["limits"])
            ]
            if not others:
                continue
            judged += 1
            if not next(x["met"] for x in default[c]["limits"] if x["name"] == lim["name"]):
                failed.append(f"{c} {lim['name']} (met by {', '.join(others)})")
    measured = f"{judged - len(failed)} of {judged}"
    return Criterion(
        "where the rule breaks a limit and another method meets it, the default meets it",
        measured + (f"; not met: {'; '.join(failed)}" if failed else ""),
        not failed if judged else None,
        {"judged": judged, "failed": len(failed)},
    )


@dataclass(frozen=True)
class Fit:
    """Least-squares ``log t = a + sum(exponent_k log(size_k))`` over ``n`` rows (natural
    logs); ``r2`` of the fit in log space."""

    n: int
    a: float
    exponents: dict[str, float]
    r2: float


def fit_time(rows: list[dict], sizes: tuple[str, ...]) -> Fit | None:
    """The fit of the rows' ``seconds`` against their ``sizes`` (row keys), None with fewer
    rows than unknowns + 1."""
    use = [r for r in rows if r["seconds"] > 0]
    if len(use) < len(sizes) + 2:
        return None
    X = np.column_stack([np.ones(len(use))] + [np.log([r[k] for r in use]) for k in sizes])
    y = np.log([r["seconds"] for r in use])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    residual = float(np.sum((y - X @ coef) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else math.nan
    return Fit(len(use), float(coef[0]), dict(zip(sizes, map(float, coef[1:]), strict=True)), r2)


FITS = (("n_candidates", "n_points"), ("n_candidates",), ("n_points",))


def goal3(rows: list[dict]) -> list[Criterion]:
    """Goal 3: the default's median optimizer time over the run's cases at most 10 s, at most
    60 s on the 600 cc case."""
    default = _by_case(rows, DEFAULT)
    times = [r["seconds"] for r in default.values()]
    median = statistics.median(times) if times else math.nan
    out = [
        Criterion(
            f"median optimizer time of the default <= {MEDIAN_TIME_S:g} s",
            f"{_fmt(median, '.1f')} s over {len(times)} cases",
            median <= MEDIAN_TIME_S if times else None,
            {"median_s": median, "cases": len(times)},
        )
    ]
    big = default.get(LARGEST_CASE)
    out.append(
        Criterion(
            f"optimizer time of the default on {LARGEST_CASE} <= {LARGEST_TIME_S:g} s",
            f"{big['seconds']:.1f} s" if big else "not in this run",
            big["seconds"] <= LARGEST_TIME_S if big else None,
            {"seconds": big["seconds"]} if big else {},
        )
    )
    return out


def criteria_table(criteria: list[Criterion]) -> list[str]:
    return ["| criterion | measured | verdict |", "|---|---|---|", *(c.line() for c in criteria)]


def _methods(rows: list[dict]) -> list[str]:
    seen = {r["method"] for r in rows}
    first = [m for m in (RULE, DEFAULT) if m in seen]
    return first + [m for m in METHOD_ORDER if m in seen and m not in first]


def _ratio(r: dict, rule: dict | None, key: str) -> str:
    if rule is None or r["method"] == RULE or not rule[key]:
        return str(r[key])
    return f"{r[key]} ({r[key] / rule[key]:.2f})"


def every_case(rows: list[dict]) -> list[str]:
    """One line per case and method, the rule first: needles and seeds (x the rule's), V150,
    V200, the limited organ metrics, D90/Rx, goals, time, the plan objective f and the gaps
    of f and of the seed and needle cost to the case's bound."""
    rule = _by_case(rows, RULE)
    out = [
        "| case | cc | method | needles (x rule) | seeds (x rule) | V150 | V200 | "
        "organ metrics (Gy, value/limit) | D90/Rx | goals | s | f | f gap % | "
        "seeds+needles gap % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    methods = _methods(rows)
    cases = list(dict.fromkeys(r["case"] for r in rows))
    for c in cases:
        mine = sorted((r for r in rows if r["case"] == c), key=lambda r: methods.index(r["method"]))
        for r in mine:
            cc = r.get("target_cc", r["asked_cc"])
            head = f"| {c}{'' if r['reachable'] else ' (unreachable)'} | {cc:.1f} | {r['method']} |"
            if "D90_over_rx" not in r:
                out.append(f"{head} {not_run(r)} |" + " |" * 10)
                continue
            out.append(
                f"{head} {_ratio(r, rule.get(c), 'needles')} | {_ratio(r, rule.get(c), 'seeds')} | "
                f"{r['V150']:.1f} | {r['V200']:.1f} | {_limits(r)} | {r['D90_over_rx']:.3f} | "
                f"{'met' if r['goals_met'] else 'MISSED'} | "
                f"{r['seconds']:.1f}{' T' if r['time_limited'] else ''} | {r['objective']:.3f} | "
                f"{_fmt(r.get('f_gap_pct'), '.1f')} | {_fmt(r.get('seed_needle_gap_pct'), '.1f')} |"
            )
    return out


def bounds_table(rows: list[dict], bounds: dict[str, dict]) -> list[str]:
    """The bound of each case: of f, of the seed and needle cost and the fewest seeds of the
    loadings reaching D90 >= Rx (or that none does), its time and message; or that there is
    none."""
    out = [
        "| case | f >= | seeds+needles cost >= | seeds >= | s | note |",
        "|---|---|---|---|---|---|",
    ]
    for c in dict.fromkeys(r["case"] for r in rows):
        b = bounds.get(c)
        if b is None or "unavailable" in b:
            why = "not computed in this run" if b is None else b["unavailable"]
            out.append(f"| {c} | bound: not available ({why}) | | | | |")
            continue
        cost = _fmt(b["seed_needle_lb"], ".3f") if b["rx_reachable"] else "no D90 >= Rx at all"
        out.append(
            f"| {c} | {_fmt(b['objective_lb'], '.3f')} | {cost} | "
            f"{b['min_seeds'] if b['min_seeds'] is not None else '-'} | {b['seconds']:.1f} | "
            f"{b['message']} |"
        )
    return out


def gap_summary(rows: list[dict]) -> list[str]:
    """Per method: the median gaps to the bound and on how many cases a bound exists."""
    out = [
        "| method | plans | median f gap % | max f gap % | median seeds+needles gap % | "
        "cases with a bound of f |",
        "|---|---|---|---|---|---|",
    ]
    for m in _methods(rows):
        mine = _by_case(rows, m).values()
        gaps = [r["f_gap_pct"] for r in mine if r.get("f_gap_pct") is not None]
        sn = [r["seed_needle_gap_pct"] for r in mine if r.get("seed_needle_gap_pct") is not None]
        out.append(
            f"| {m} | {len(mine)} | {_fmt(statistics.median(gaps) if gaps else None, '.1f')} | "
            f"{_fmt(max(gaps) if gaps else None, '.1f')} | "
            f"{_fmt(statistics.median(sn) if sn else None, '.1f')} | {len(gaps)} |"
        )
    return out


def timing_table(rows: list[dict], bounds: dict[str, dict]) -> list[str]:
    """Per case: candidates, points and every method's optimizer time (and the bound's)."""
    methods = _methods(rows)
    out = [
        "| case | candidates | points | " + " | ".join(f"{m} s" for m in methods) + " | bound s |",
        "|---|---|---|" + "---|" * (len(methods) + 1),
    ]
    for c in dict.fromkeys(r["case"] for r in rows):
        mine = {r["method"]: r for r in rows if r["case"] == c}
        first = next(iter(mine.values()))
        times = [_fmt(mine[m].get("seconds") if m in mine else None, ".1f") for m in methods]
        b = bounds.get(c, {})
        out.append(
            f"| {c} | {first['n_candidates']} | {first['n_points']} | {' | '.join(times)} | "
            f"{_fmt(b.get('seconds'), '.1f')} |"
        )
    return out


def fits_table(rows: list[dict]) -> list[str]:
    """Per method: the exponents of ``log t = a + b log(candidates) + c log(points)`` and of
    the single-variable fits, each with its R^2 in log space."""
    out = [
        "| method | cases | joint fit: b (candidates), c (points) | R^2 | b alone | R^2 | "
        "c alone | R^2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in _methods(rows):
        mine = list(_by_case(rows, m).values())
        cells = []
        for sizes in FITS:
            f = fit_time(mine, sizes)
            if f is None:
                cells += ["too few cases", "-"]
                continue
            cells += [", ".join(_fmt(f.exponents[k]) for k in sizes), _fmt(f.r2)]
        out.append(f"| {m} | {len(mine)} | {' | '.join(cells)} |")
    return out


def report(
    info: dict, run: dict, rows: list[dict], bounds: dict[str, dict], figures: list[Path]
) -> str:
    """The Markdown report of one default-options run."""
    cases = list(dict.fromkeys(r["case"] for r in rows))
    options = "; ".join(f"`{m}` {o or 'defaults'}" for m, o in run["options"].items())
    g1, g3 = goal1(rows), goal3(rows)
    lines = [
        f"# Default-options cohort benchmark (issue 16, goals 1, 3, 4), {info['date']}",
        "",
        machine_line(info),
        f"Command: `{run['command']}`; {len(cases)} cases, wall time "
        f"{run['wall_s'] / 60:.1f} min, at most {run['timeout_s']:.0f} s per case. Random seed "
        f"{run['seed']}.",
        f"Options: {options}. The default method is `{DEFAULT}`; the rule is `{RULE}` "
        "(count-scaled: needles 1 cm apart, peripheral loading, the fewest seeds reaching "
        "D90 >= Rx).",
        "",
        "Metrics come from the full dose grid of each plan; `f` is the plan objective the "
        "optimizers minimise (on the problem's points), `s` the optimizer time (the case and "
        "its matrix are built once per case, before any method). `f gap %`: 100 (f - lb) / f "
        "to the case's proven lower bound lb of f; `seeds+needles gap %`: the same for the "
        "plan's seed and needle cost (seeds x per_seed + needles x per_needle) and its bound over "
        "the loadings reaching D90 >= Rx (so only for plans that reach it on the problem's "
        "points). "
        "`(x rule)`: the ratio to the rule's plan of the case. `T`: HiGHS stopped at its time "
        "limit.",
        "",
    ]
    if run["failures"]:
        lines += ["Cases that did not finish every method:", ""]
        lines += [f"- {c}: {why}" for c, why in run["failures"].items()]
        lines.append("")
    lines += [
        "## Goal 1: better than the rule, on every case",
        "",
        "Totals and medians over the reachable cases on which both the default and the rule "
        "planned; organ metrics compared limit by limit.",
        "",
        *criteria_table(g1),
        "",
        "## Goal 3: fast",
        "",
        *criteria_table(g3),
        "",
        "Time against size: least-squares fits of the optimizer time (natural logs) over the "
        "cases of this run. Candidates and points grow together over the cohort, so the "
        "two-variable exponents are less certain than the single-variable ones.",
        "",
        *fits_table(rows),
        "",
        *timing_table(rows, bounds),
        "",
        "## Goal 4: the distance to optimal",
        "",
        *gap_summary(rows),
        "",
        *bounds_table(rows, bounds),
        "",
    ]
    lines += [f"![{f.stem}]({f.name})" for f in figures]
    lines += ["", "## Every case against the rule", "", *every_case(rows), ""]
    return "\n".join(lines) + "\n"
