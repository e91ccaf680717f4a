"""Benchmark: the whole planning loop on each backend, GPU against CPU in one run.

    python benchmarks/bench_device.py [--sizes 50000x1000,200000x5000,500000x10000]
                                      [--chains 32] [--iterations 2000] [--out DIR]

For each size (points x candidate seeds) and each usable backend, in a fresh child process:
a synthetic case (a target sphere sampled by ``points`` points, candidates on parallel needles
5-10 mm apart inside it, a 2000-point organ slab beside it with a D2cc limit), the TG-43
matrix built on the backend, ``anneal`` with the same chains and iterations, and the time to
convergence (the first iteration whose best objective is within 0.1 % of the final one). The
prescription is the D90 of every fourth candidate loaded, so a good plan exists.

On the GPU each heavy stage is compared with its floor, the bytes it must move over the
device copy bandwidth measured in the same run: the matrix build writes the matrix once; an
annealing step reads two matrix columns and reads and writes the float64 dose vector of every
chain. A size whose matrix cannot fit in half the free memory of a backend is skipped on that
backend, with the reason. Writes <out>/<date>-<machine>-device.{json,md} (default
benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _machine import RESULTS, machine, result_stem, rows_out, run_child, write_rows
from bench_matrix import copy_bandwidth_gbs

DEFAULT_SIZES = "50000x1000,200000x5000,500000x10000"
OAR_POINTS = 2000
TARGET_RADIUS_MM = 40.0


def synthetic_case(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Target points (n, 3), organ points, candidate seeds (m, 3) on needles along z and
    their needle index, in mm; and the volume of one point, cc."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    target = u * TARGET_RADIUS_MM * rng.random((n, 1)) ** (1 / 3)
    volume_cc = 4 / 3 * np.pi * (TARGET_RADIUS_MM / 10) ** 3
    pitch = (volume_cc * 1000 / m) ** (1 / 3) * 0.9  # lattice dense enough for m inside
    axis = np.arange(-TARGET_RADIUS_MM, TARGET_RADIUS_MM + 1e-9, pitch)
    lattice = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    inside = lattice[np.linalg.norm(lattice, axis=1) < TARGET_RADIUS_MM - 2]
    inside = inside[np.argsort(np.linalg.norm(inside, axis=1), kind="stable")][:m]
    seeds = inside[np.lexsort((inside[:, 2], inside[:, 1], inside[:, 0]))]
    _, needle = np.unique(seeds[:, :2].round(6), axis=0, return_inverse=True)
    oar = np.c_[
        rng.uniform(-30, 30, OAR_POINTS),
        rng.uniform(TARGET_RADIUS_MM + 3, TARGET_RADIUS_MM + 8, OAR_POINTS),
        rng.uniform(-30, 30, OAR_POINTS),
    ]
    return np.r_[target, oar], seeds, needle.ravel(), volume_cc / n


def one(backend_name: str, n: int, m: int, chains: int, iterations: int) -> dict:
    from seedopt.optimizer import HardLimit, PlanProblem, get_optimizer
    from seedopt.optimizer.objective import dose, dose_at_percent, dose_at_volume

    from seedopt.backend import select_backend
    from seedopt.dose import influence_matrix, matrix_nbytes
    from seedopt.sources import Source, get_model

    backend, _ = select_backend(backend_name)
    row: dict = {"backend": backend_name, "n_points": n, "n_candidates": m}
    need, free = matrix_nbytes(n + OAR_POINTS, m), backend.free_bytes()
    if need > free / 2:
        row["skipped"] = f"matrix {need / 2**30:.1f} GiB > half the free {free / 2**30:.1f} GiB"
        return row
    points, seeds, needle, voxel_cc = synthetic_case(n, m)
    source = Source(get_model("6711"), 0.6)
    bandwidth = copy_bandwidth_gbs() if backend.is_gpu else None
    if backend.is_gpu:  # compile the kernel outside the timed build
        influence_matrix(
            points[:1000], seeds, np.tile([0.0, 0.0, 1.0], (m, 1)), source, backend=backend
        )
    t0 = time.perf_counter()
    A = influence_matrix(points, seeds, np.tile([0.0, 0.0, 1.0], (m, 1)), source, backend=backend)
    backend.synchronize()
    t_matrix = time.perf_counter() - t0
    A_t, A_o = A[:n], A[n:]
    every_fourth = np.zeros(m, dtype=bool)
    every_fourth[::4] = True
    rx = float(dose_at_percent(dose(A_t, every_fourth), 90.0))
    oar_d2cc = float(dose_at_volume(dose(A_o, every_fourth), 2.0, voxel_cc))
    problem = PlanProblem(
        A_target=A_t,
        A_oar={"organ": A_o},
        voxel_cc=voxel_cc,
        prescription_gy=rx,
        hard=(HardLimit("organ", "D2cc", max(oar_d2cc, 1e-3)),),
        seed_needle=needle,
        n_needles=int(needle.max()) + 1,
    )
    t0 = time.perf_counter()
    res = get_optimizer("anneal").solve(problem, rng=0, chains=chains, iterations=iterations)
    backend.synchronize()
    t_anneal = time.perf_counter() - t0
    trace = res.extra["trace"]
    converged = int(np.argmax(trace <= trace[-1] * (1 + 1e-3)))
    rows = n + OAR_POINTS
    step_bytes = chains * rows * (2 * 4 + 2 * 8)  # two float32 columns; dose read + write
    row.update(
        matrix_s=t_matrix,
        anneal_s=t_anneal,
        converged_iteration=converged,
        anneal_to_convergence_s=t_anneal * converged / iterations,
        total_s=t_matrix + t_anneal,
        objective=res.fun,
        seeds=int(res.x.sum()),
        chains=chains,
        iterations=iterations,
        matrix_gb=need / 1e9,
    )
    if bandwidth is not None:
        row.update(
            bandwidth_gbs=bandwidth,
            matrix_over_floor=t_matrix / (need / (bandwidth * 1e9)),
            anneal_over_floor=t_anneal / (iterations * step_bytes / (bandwidth * 1e9)),
        )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default=DEFAULT_SIZES)
    ap.add_argument("--chains", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--timeout-s", type=float, default=3600.0, help="per size and backend")
    ap.add_argument(
        "--cpu-timeout-s",
        type=float,
        default=None,
        help="per size on the CPU (default --timeout-s): a CPU run stopped there still bounds "
        "the GPU / CPU ratio from below",
    )
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        b, n, m, c, i = args.one
        out = rows_out()
        print(json.dumps(one(b, int(n), int(m), int(c), int(i))), file=out)
        return
    from seedopt.backend import gpu_unavailable_reason

    info = machine()
    backends = ["cpu"] + (["gpu"] if gpu_unavailable_reason() is None else [])
    rows = []
    for size in args.sizes.split(","):
        n, m = (int(v) for v in size.split("x"))
        for b in backends:
            cmd = [sys.executable, __file__, "--one", b, str(n), str(m)]
            cmd += [str(args.chains), str(args.iterations)]
            row = {"backend": b, "n_points": n, "n_candidates": m}
            limit = args.cpu_timeout_s if b == "cpu" and args.cpu_timeout_s else args.timeout_s
            row.update(run_child(cmd, limit))
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_report(args, info, rows)


def write_report(args: argparse.Namespace, info: dict, rows: list[dict]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / result_stem("device").name
    write_rows(stem, info, rows)
    gpu = info["gpu"] or f"none ({info['gpu_unavailable_reason']})"
    lines = [
        f"# Planning loop on each backend, {info['date']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; GPU: {gpu}.",
        f"Command: `python benchmarks/bench_device.py --sizes {args.sizes} --chains "
        f"{args.chains} --iterations {args.iterations}`",
        "",
        "| backend | points x candidates | matrix s | anneal s | converged at | to convergence s "
        "| total s | objective | seeds | matrix / floor | anneal / floor |",
        "|---|" + "---|" * 10,
    ]
    by_size: dict[tuple[int, int], dict[str, dict]] = {}
    for r in rows:
        size = f"{r['n_points']} x {r['n_candidates']}"
        by_size.setdefault((r["n_points"], r["n_candidates"]), {})[r["backend"]] = r
        if "total_s" not in r:
            why = r.get("skipped") or r.get("error") or f"timed out after {r['timed_out_s']:.0f} s"
            lines.append(f"| {r['backend']} | {size} | not run: {why} |" + " |" * 8)
            continue
        lines.append(
            f"| {r['backend']} | {size} | {r['matrix_s']:.3f} | {r['anneal_s']:.3f} | "
            f"{r['converged_iteration']} | {r['anneal_to_convergence_s']:.3f} | "
            f"{r['total_s']:.3f} | {r['objective']:.3f} | {r['seeds']} | "
            f"{r.get('matrix_over_floor', float('nan')):.1f} | "
            f"{r.get('anneal_over_floor', float('nan')):.1f} |"
        )
    lines += ["", "GPU / CPU speed-up, measured in this run:", ""]
    for (n, m), pair in by_size.items():
        cpu, gpu_row = pair.get("cpu", {}), pair.get("gpu", {})
        if "total_s" in cpu and "total_s" in gpu_row:
            lines.append(
                f"* {n} x {m}: matrix {cpu['matrix_s'] / gpu_row['matrix_s']:.1f}x, anneal "
                f"{cpu['anneal_s'] / gpu_row['anneal_s']:.1f}x, total "
                f"{cpu['total_s'] / gpu_row['total_s']:.1f}x"
            )
        elif "timed_out_s" in cpu and "total_s" in gpu_row:
            lines.append(
                f"* {n} x {m}: total at least {cpu['timed_out_s'] / gpu_row['total_s']:.1f}x "
                f"(the CPU run was stopped after {cpu['timed_out_s']:.0f} s)"
            )
        else:
            lines.append(f"* {n} x {m}: not measured (a backend is missing or skipped)")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
