"""Benchmark: the default method on cohort cases on each usable backend, GPU beside CPU in
one run (issue 17: GPU and CPU plans of the same quality).

    python benchmarks/bench_backends.py [--cases NAME,...|tiny] [--out DIR] [--timeout-s S]

For each case and each usable backend (the CPU always, the GPU when CuPy and a device
answer) one child process builds the case on that backend (on the GPU the dose matrix is
computed and kept on the device) and runs the default method (``hybrid``, default options)
with seed 0; on the CPU also with seed 1. The NumPy and CuPy random streams differ, so the
two backends' plans are not the same plan; they are of the same quality when the GPU's
objective is no higher than the CPU's by more than the tolerance

    max(1 % of f_cpu, 0.5 objective units, |f_cpu(seed 0) - f_cpu(seed 1)|):

the convergence goal's tolerance (issue 16, goal 2), or the CPU's own seed-to-seed spread
where that is wider (another random stream on the same backend differs that much). Writes
<out>/<date>-<machine>-backends.{json,md} (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _machine import RESULTS, machine, machine_line, result_stem, rows_out, run_child_rows
from bench_cohort import prepare_case
from bench_convergence import CASES
from cohort import select

DEFAULT = "hybrid"
REL_TOL, ABS_TOL = 0.01, 0.5
SEEDS = {"cpu": (0, 1), "gpu": (0,)}


def run_case(name: str, backend_name: str) -> None:
    """Child process: build ``name`` on the backend, plan it with the default, one JSON row
    per seed."""
    from seedopt.optimizer import get_optimizer, terms

    from seedopt.backend import select_backend

    backend, _ = select_backend(backend_name)
    out = rows_out()
    _, prepared, base = prepare_case(name, backend)
    problem = prepared.problem
    for seed in SEEDS[backend_name]:
        t = time.perf_counter()
        result = get_optimizer(DEFAULT).solve(problem, rng=seed)
        backend.synchronize()
        seconds = time.perf_counter() - t
        parts = terms(problem, result.x)
        row = {
            **base,
            "backend": backend_name,
            "seed": seed,
            "matrix_s": prepared.runtime_s["dose_matrix"],
            "fun": float(result.fun),
            "seconds": seconds,
            "seeds": int(parts.n_seeds),
            "needles": int(parts.n_needles),
            "D90_over_rx": float(parts.d90_gy) / problem.prescription_gy,
        }
        print(json.dumps(row), file=out)


def tolerance(cpu: list[dict]) -> float:
    """How much higher the GPU plan's f may be than the CPU's (seed 0) and be of the same
    quality (the module docstring)."""
    f0 = next(r["fun"] for r in cpu if r["seed"] == 0)
    spread = max(r["fun"] for r in cpu) - min(r["fun"] for r in cpu)
    return max(REL_TOL * abs(f0), ABS_TOL, spread)


def report(info: dict, args: argparse.Namespace, rows: list[dict], notes: list[str]) -> str:
    """The Markdown report: one line per case with both backends and the verdict."""
    gpu = info["gpu"] or f"none ({info['gpu_unavailable_reason']})"
    lines = [
        f"# The default method on each backend, {info['date']}",
        "",
        machine_line(info),
        f"Command: `python benchmarks/bench_backends.py --cases {args.cases}`",
        "",
        "Default method (`hybrid`, default options). CPU: seeds 0 and 1; GPU: seed 0. `s`: "
        "the optimizer's seconds (matrix excluded); tolerance: max(1 % of f, 0.5, the CPU's "
        "seed-to-seed spread).",
        "",
        "| case | candidates | points | CPU f (seed 0, 1) | GPU f | tolerance | same quality "
        "| CPU s | GPU s | CPU / GPU time | CPU / GPU matrix time | seeds CPU / GPU |",
        "|---|" + "---|" * 11,
    ]
    verdicts = []
    for name in dict.fromkeys(r["case"] for r in rows):
        cpu = [r for r in rows if r["case"] == name and r["backend"] == "cpu"]
        gpu_rows = [r for r in rows if r["case"] == name and r["backend"] == "gpu"]
        if not cpu:
            continue
        c0 = next(r for r in cpu if r["seed"] == 0)
        fs = ", ".join(f"{r['fun']:.3f}" for r in cpu)
        head = f"| {name} | {c0['n_candidates']} | {c0['n_points']} | {fs} |"
        if not gpu_rows:
            lines.append(f"{head} not run ({gpu}) |" + " |" * 7)
            continue
        g = gpu_rows[0]
        tol = tolerance(cpu)
        same = g["fun"] <= c0["fun"] + tol
        verdicts.append(same)
        lines.append(
            f"{head} {g['fun']:.3f} | {tol:.3f} | {'yes' if same else '**no**'} | "
            f"{c0['seconds']:.2f} | {g['seconds']:.2f} | {c0['seconds'] / g['seconds']:.1f} | "
            f"{c0['matrix_s'] / g['matrix_s']:.1f} | {c0['seeds']} / {g['seeds']} |"
        )
    lines.append("")
    if verdicts:
        lines.append(
            f"Same quality on {sum(verdicts)} of {len(verdicts)} cases planned on both backends."
        )
    else:
        lines.append(f"No case was planned on the GPU: {gpu}. No GPU figure is claimed.")
    lines += [f"* {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--timeout-s", type=float, default=600.0, help="per case and backend")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run_case(*args.one)
        return
    from seedopt.backend import gpu_unavailable_reason

    info = machine()
    backends = ["cpu"] + (["gpu"] if gpu_unavailable_reason() is None else [])
    rows: list[dict] = []
    notes: list[str] = []
    for c in select(args.cases):
        for b in backends:
            got, why = run_child_rows(
                [sys.executable, __file__, "--one", c.name, b], args.timeout_s
            )
            rows += got
            if why:
                notes.append(f"{c.name} on the {b}: {why}")
            for r in got:
                print(json.dumps({k: r[k] for k in ("case", "backend", "seed", "fun", "seconds")}))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / result_stem("backends").name
    stem.with_suffix(".json").write_text(
        json.dumps({"machine": info, "rows": rows, "notes": notes}, indent=2)
    )
    stem.with_suffix(".md").write_text(report(info, args, rows, notes))
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
