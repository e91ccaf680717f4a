"""Convergence study of the default method (issue 16, goal 2): on cohort cases of different
sizes, the default (``hybrid``, default options, at ``--default-seeds`` random seeds, default
4: seeds 0-3) against ``--effort`` times its budget (default 16) with ``--seeds`` random seeds
(default 4: seeds 0-3). The default at one seed is within on a case when its plan objective f
is within 1 % (or 0.5 objective units, whichever is larger) of the best f the long runs find.
Goal 2 asks it of the default at any seed, on at least 6 cases of different sizes: the study
passes when at every default seed the cases within have at least 6 different sizes; it also
says on which cases the default is within at every seed.

    python benchmarks/bench_convergence.py [--cases NAME,...|tiny] [--effort 16] [--seeds 4]
                                           [--default-seeds 4] [--options JSON] [--out DIR]
                                           [--timeout-s S]
    python benchmarks/bench_convergence.py --report benchmarks/results/<file>-convergence.json

Per case, one child process builds the case once (CPU, as ``bench_cohort.py`` does) and runs
the default and the long runs one after another, each timed alone. ``--options``: hybrid's
options for every run (the default: none; a test passes smaller budgets); the long runs
multiply its ``effort`` (1 when not given) by ``--effort``.
Each run's trace of the best f against elapsed seconds (``extra["trace_s"]``,
``extra["trace_f"]``; the final point alone where the method keeps none) is drawn per case.

Writes <out>/<date>-<machine>-convergence.{json,md,png} (default out: benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from _machine import RESULTS, machine, machine_line, result_stem, rows_out, run_child_rows
from bench_cohort import prepare_case
from cohort import select
from default_report import DEFAULT, Criterion, criteria_table

CASES = (
    "head_neck_02",
    "cervical_node_05",
    "vertebral_12",
    "vertebral_33",
    "trunk_sarcoma_60",
    "abdominal_wall_120",
)
"""The study's default cases: 2-120 cc, five sites, both approaches."""
REL_TOL = 0.01
ABS_TOL = 0.5
MIN_CASES = 6
TRACE_POINTS = 400
"""At most this many points of each trace kept in the results (evenly spaced, ends kept)."""
TIMEOUT_S = 7200.0


def thin(values: list[float], n: int = TRACE_POINTS) -> list[float]:
    """At most ``n`` of ``values``, evenly spaced, the first and last kept."""
    if len(values) <= n:
        return list(values)
    step = (len(values) - 1) / (n - 1)
    return [values[round(k * step)] for k in range(n)]


def run_case(
    name: str, effort: float, seeds: int, default_seeds: int, options: dict[str, Any]
) -> None:
    """Child process: the default runs and the long runs of one case, one JSON row each."""
    from seedopt.optimizer import get_optimizer, terms

    out = rows_out()
    _, prepared, base = prepare_case(name)
    problem = prepared.problem
    runs = [("default", seed, options) for seed in range(default_seeds)]
    long_options = {**options, "effort": effort * options.get("effort", 1.0)}
    runs += [("long", seed, long_options) for seed in range(seeds)]
    for kind, seed, opts in runs:
        t = time.perf_counter()
        result = get_optimizer(DEFAULT).solve(problem, rng=seed, **opts)
        seconds = time.perf_counter() - t
        parts = terms(problem, result.x)
        trace_s = result.extra.get("trace_s", [result.runtime_s])
        trace_f = result.extra.get("trace_f", [result.fun])
        row = {
            **base,
            "run": kind,
            "seed": seed,
            "options": opts,
            "fun": float(result.fun),
            "seconds": seconds,
            "seeds": int(parts.n_seeds),
            "needles": int(parts.n_needles),
            "D90_over_rx": float(parts.d90_gy) / problem.prescription_gy,
            "has_trace": "trace_s" in result.extra,
            "trace_s": thin([float(v) for v in trace_s]),
            "trace_f": thin([float(v) for v in trace_f]),
        }
        print(json.dumps(row), file=out)


def tolerance(best_f: float) -> float:
    """How far above the best long run's f the default may be: 1 % or 0.5 units."""
    return max(REL_TOL * abs(best_f), ABS_TOL)


def default_seeds(rows: list[dict]) -> list[int]:
    """The seeds of the default runs in ``rows``, in order."""
    return sorted({r["seed"] for r in rows if r["run"] == "default"})


def excesses(rows: list[dict]) -> dict[str, tuple[dict[str, float], float, dict]]:
    """Per case with default runs and at least one long run: (default seed -> its f above the
    best long f, that tolerance, the best long run's row)."""
    out = {}
    for c in dict.fromkeys(r["case"] for r in rows):
        mine = [r for r in rows if r["case"] == c]
        long = [r for r in mine if r["run"] == "long"]
        defaults = {r["seed"]: r["fun"] for r in mine if r["run"] == "default"}
        if defaults and long:
            best = min(long, key=lambda r: r["fun"])
            over = {seed: f - best["fun"] for seed, f in defaults.items()}
            out[c] = (over, tolerance(best["fun"]), best)
    return out


def case_criteria(rows: list[dict]) -> list[Criterion]:
    """Per case with default runs and at least one long run: the default's f within the
    tolerance of the best long run's f at every default seed."""
    judged = excesses(rows)
    out = []
    for c in dict.fromkeys(r["case"] for r in rows):
        if c not in judged:
            out.append(Criterion(c, "the default or every long run is missing", None))
            continue
        over, tol, best = judged[c]
        best_f = best["fun"]
        first = next(r for r in rows if r["case"] == c)
        fs = ", ".join(f"{best_f + e:.3f}" for _, e in sorted(over.items()))
        seconds = sorted(r["seconds"] for r in rows if r["case"] == c and r["run"] == "default")
        out.append(
            Criterion(
                f"{c} ({first['asked_cc']:g} cc, {first['n_candidates']} candidates)",
                f"default f {fs} (seeds {', '.join(map(str, sorted(over)))}; median "
                f"{seconds[len(seconds) // 2]:.1f} s), best long f {best_f:.3f} (seed "
                f"{best['seed']}, {best['seconds']:.1f} s): worst {max(over.values()):+.3f}, "
                f"tolerance {tol:.3f}",
                max(over.values()) <= tol,
                {
                    "default_f": best_f + max(over.values()),
                    "best_f": best_f,
                    "excess": max(over.values()),
                    "tol": tol,
                    "cc": first["asked_cc"],
                },
            )
        )
    return out


def seed_criteria(rows: list[dict]) -> list[Criterion]:
    """Per default seed: the cases where the default at that seed is within, at least 6
    different sizes among them (None: fewer than 6 sizes judged at all)."""
    judged = excesses(rows)
    sizes = {c: next(r["asked_cc"] for r in rows if r["case"] == c) for c in judged}
    out = []
    for seed in default_seeds(rows):
        at = [c for c, (over, _, _) in judged.items() if seed in over]
        within = [c for c in at if judged[c][0][seed] <= judged[c][1]]
        n_sizes = len({sizes[c] for c in within})
        enough = len({sizes[c] for c in at}) >= MIN_CASES
        out.append(
            Criterion(
                f"the default at seed {seed}: within on at least {MIN_CASES} cases of "
                "different sizes",
                f"{len(within)} of {len(at)} cases within, {n_sizes} sizes"
                + ("" if enough else f" (fewer than {MIN_CASES} sizes studied: not judged)"),
                n_sizes >= MIN_CASES if enough else None,
                {"within": len(within), "cases": len(at), "sizes": n_sizes},
            )
        )
    return out


def overall(per_seed: list[Criterion]) -> Criterion:
    """Goal 2 (the default at any seed): every default seed within on at least 6 cases of
    different sizes."""
    judged = [c for c in per_seed if c.passed is not None]
    return Criterion(
        f"goal 2: the default within {100 * REL_TOL:g} % or {ABS_TOL:g} of the best long run "
        f"on at least {MIN_CASES} cases of different sizes, at any seed",
        f"{sum(bool(c.passed) for c in judged)} of {len(per_seed)} default seeds"
        + ("" if judged else " (not judged)"),
        all(c.passed for c in judged) if judged else None,
    )


def runs_table(rows: list[dict]) -> list[str]:
    out = [
        "| case | run | seed | f | s | seeds | needles | D90/Rx | trace points |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['case']} | {r['run']} | {r['seed']} | {r['fun']:.3f} | {r['seconds']:.1f} | "
            f"{r['seeds']} | {r['needles']} | {r['D90_over_rx']:.3f} | "
            f"{len(r['trace_s']) if r['has_trace'] else 'none (final point)'} |"
        )
    return out


def plot(rows: list[dict], path: Path) -> Path | None:
    """One panel per case: the best f against elapsed seconds of each default run (black, a
    line style per seed) and of each long run, the default's tolerance band above the best
    long f shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in rows))
    if not cases:
        return None
    cols = min(3, len(cases))
    nrows = math.ceil(len(cases) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, c in zip(axes.flat, cases, strict=False):
        mine = [r for r in rows if r["case"] == c]
        long = [r for r in mine if r["run"] == "long"]
        for r in mine:
            is_default = r["run"] == "default"
            ax.step(
                [max(s, 1e-3) for s in r["trace_s"]],
                r["trace_f"],
                where="post",
                marker="" if r["has_trace"] else "o",
                color="k" if is_default else f"C{r['seed']}",
                ls=("-", "--", ":", "-.")[r["seed"] % 4] if is_default else "-",
                lw=1.8 if is_default else 0.9,
                label=f"{'default' if is_default else 'long'}, seed {r['seed']}",
            )
        best = min(r["fun"] for r in long or mine)
        if long:
            ax.axhspan(best, best + tolerance(best), color="C2", alpha=0.15, lw=0)
        top = max(r["fun"] for r in mine) + 10 * tolerance(best)  # the early f off the panel
        ax.set_ylim(best - tolerance(best), min(top, max(f for r in mine for f in r["trace_f"])))
        times = [s for r in mine for s in r["trace_s"] if s > 0]
        if times and max(times) > 10 * min(times):  # log time where it spans a decade
            ax.set_xscale("log")
        ax.set_title(f"{c} ({mine[0]['asked_cc']:g} cc)", fontsize=9)
        ax.set_xlabel("seconds")
        ax.set_ylabel("best objective f")
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(cases) :]:
        ax.set_visible(False)
    fig.suptitle("objective against time: the default and the long runs (band: tolerance)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(info: dict, run: dict, rows: list[dict], figure: Path | None) -> str:
    """The Markdown report of one study."""
    per_case = case_criteria(rows)
    per_seed = seed_criteria(rows)
    lines = [
        f"# Convergence of the default method (issue 16, goal 2), {info['date']}",
        "",
        machine_line(info),
        f"Command: `{run['command']}`; wall time {run['wall_s'] / 60:.1f} min.",
        f"Default: `{DEFAULT}` with options {run['options'] or 'defaults'}, seeds "
        f"{', '.join(map(str, default_seeds(rows)))}. "
        f"Long runs: {run['effort']:g}x the budget (`effort`), seeds 0-{run['seeds'] - 1}.",
        "",
        "f: the plan objective (lower is better); s: optimizer time (one run at a time). "
        "Tolerance: max(1 % of the best long f, 0.5).",
        "",
    ]
    if run["failures"]:
        lines += ["Cases that did not finish every run:", ""]
        lines += [f"- {c}: {why}" for c, why in run["failures"].items()]
        lines.append("")
    lines += [
        "## Goal 2",
        "",
        "Per case: the default within at every seed.",
        "",
        *criteria_table(per_case),
        "",
        "Per default seed, and the goal:",
        "",
        *criteria_table([*per_seed, overall(per_seed)]),
        "",
        *([f"![{figure.stem}]({figure.name})", ""] if figure else []),
        "## Every run",
        "",
        *runs_table(rows),
        "",
    ]
    return "\n".join(lines) + "\n"


def write_report(stem: Path, info: dict, run: dict, rows: list[dict]) -> None:
    figure = plot(rows, stem.with_suffix(".png"))
    stem.with_suffix(".md").write_text(report(info, run, rows, figure))
    print(f"wrote {stem}.md")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--effort", type=float, default=16.0, help="budget of the long runs (x)")
    ap.add_argument("--seeds", type=int, default=4, help="long runs per case (seeds 0..N-1)")
    ap.add_argument(
        "--default-seeds", type=int, default=4, help="default runs per case (seeds 0..N-1)"
    )
    ap.add_argument("--options", type=json.loads, default={}, help="JSON options of hybrid")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--timeout-s", type=float, default=TIMEOUT_S, help="per case")
    ap.add_argument("--report", type=Path, help="only redraw the report and figure of this JSON")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.effort <= 0 or args.seeds < 1 or args.default_seeds < 1:
        raise SystemExit("--effort must be positive, --seeds and --default-seeds at least 1")
    if args.one:
        run_case(args.one, args.effort, args.seeds, args.default_seeds, args.options)
        return
    if args.report:
        data = json.loads(args.report.read_text())
        write_report(args.report.with_suffix(""), data["machine"], data["run"], data["rows"])
        return
    cases = select(args.cases)
    info = machine()
    rows: list[dict] = []
    failures: dict[str, str] = {}
    start = time.perf_counter()
    for c in cases:
        cmd = [sys.executable, __file__, "--one", c.name, "--effort", str(args.effort)]
        cmd += ["--seeds", str(args.seeds), "--default-seeds", str(args.default_seeds)]
        cmd += ["--options", json.dumps(args.options)]
        got, why = run_child_rows(cmd, args.timeout_s)
        rows += got
        for r in got:
            print(
                f"{r['case']:22} {r['run']:8} seed {r['seed']} f {r['fun']:.3f} "
                f"{r['seconds']:.1f} s",
                flush=True,
            )
        if why:
            failures[c.name] = why
            print(f"{c.name}: {why}", flush=True)
    command = (
        f"python benchmarks/bench_convergence.py --cases {args.cases} --effort {args.effort:g} "
        f"--seeds {args.seeds} --default-seeds {args.default_seeds}"
    )
    if args.options:
        command += f" --options '{json.dumps(args.options)}'"
    run = {
        "command": command,
        "effort": args.effort,
        "seeds": args.seeds,
        "default_seeds": args.default_seeds,
        "options": args.options,
        "wall_s": time.perf_counter() - start,
        "failures": failures,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / result_stem("convergence").name
    stem.with_suffix(".json").write_text(
        json.dumps({"machine": info, "run": run, "rows": rows}, indent=1)
    )
    write_report(stem, info, run, rows)
    print(f"wrote {stem}.json ({run['wall_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
