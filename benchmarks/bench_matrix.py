"""Benchmark: building the TG-43 dose-influence matrix (entries per second, peak memory).

    python benchmarks/bench_matrix.py [--sizes 50000x1000,200000x5000] [--repeats 3]

Each (backend, size) runs in a fresh child process so its peak memory is its own. On the
GPU the build time is compared with its memory-write floor: entries x bytes per entry /
device copy bandwidth measured in the same run (a copy of 2 GiB, read + write bytes). Goals
(issue 2): CPU >= 3e7 entries/s on the 2-core machine; GPU within 3x of its floor.
Writes benchmarks/results/<date>-<machine>-matrix.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
from _machine import machine, result_stem, rows_out, write_rows

DEFAULT_SIZES = "10000x1000,50000x1000,100000x2000,200000x5000"
CPU_GOAL = 3e7


def geometry(n_points: int, n_seeds: int):
    """Points on a grid around a target; seeds on parallel needles 1 cm apart (mm)."""
    rng = np.random.default_rng(0)
    points = rng.uniform(-60, 60, (n_points, 3))
    seeds = rng.uniform(-30, 30, (n_seeds, 3))
    axes = np.tile([0.2, 0.1, 1.0], (n_seeds, 1))
    return points, seeds, axes


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy bandwidth, GB/s (bytes read + written / time)."""
    import cupy

    a = cupy.empty(2**31 // 4, dtype=cupy.float32)
    b = cupy.empty_like(a)
    for _ in range(2):
        b[...] = a
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    reps = 10
    for _ in range(reps):
        b[...] = a
    stop.record()
    stop.synchronize()
    seconds = cupy.cuda.get_elapsed_time(start, stop) / 1e3 / reps
    return 2 * a.nbytes / seconds / 1e9


def one(backend_name: str, n: int, m: int, repeats: int, storage: str) -> dict:
    from seedopt.backend import select_backend
    from seedopt.dose import influence_matrix, matrix_nbytes
    from seedopt.sources import Source, get_model

    backend, _ = select_backend(backend_name)
    points, seeds, axes = geometry(n, m)
    source = Source(get_model("6711"), 0.6)
    times = []
    result: dict = {
        "backend": backend_name,
        "n_points": n,
        "n_seeds": m,
        "storage": storage,
        "matrix_mb": matrix_nbytes(n, m, storage) / 1e6,
    }
    if backend.is_gpu:
        import cupy

        pool = cupy.get_default_memory_pool()
        bw = copy_bandwidth_gbs()
        influence_matrix(points[:1000], seeds, axes, source, backend=backend)  # compile
        pool.free_all_blocks()
        for _ in range(repeats):
            backend.synchronize()
            t0 = time.perf_counter()
            A = influence_matrix(points, seeds, axes, source, backend=backend, storage=storage)
            backend.synchronize()
            times.append(time.perf_counter() - t0)
            del A
        floor = matrix_nbytes(n, m, storage) / (bw * 1e9)
        result.update(copy_bandwidth_gbs=bw, floor_s=floor, gpu_peak_mb=pool.total_bytes() / 1e6)
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            A = influence_matrix(points, seeds, axes, source, backend=backend, storage=storage)
            times.append(time.perf_counter() - t0)
            del A
    best, median = min(times), float(np.median(times))
    result.update(
        seconds_median=median,
        seconds_best=best,
        entries_per_s=n * m / median,
        peak_rss_mb_main=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
        peak_rss_mb_workers=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e3,
    )
    if backend.is_gpu:
        result["time_over_floor"] = median / result["floor_s"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default=DEFAULT_SIZES)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="cpu,gpu")
    ap.add_argument(
        "--one", nargs=4, metavar=("BACKEND", "N", "M", "STORAGE"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.one:
        b, n, m, storage = args.one
        out = rows_out()
        print(json.dumps(one(b, int(n), int(m), args.repeats, storage)), file=out)
        return
    from seedopt.backend import gpu_unavailable_reason

    info = machine()
    rows = []
    for backend in args.backends.split(","):
        if backend == "gpu" and gpu_unavailable_reason() is not None:
            print(f"gpu: skipped ({gpu_unavailable_reason()})", flush=True)
            continue
        for size in args.sizes.split(","):
            n, m = (int(x) for x in size.split("x"))
            for storage in ["float32", "float16"] if backend == "gpu" else ["float32"]:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--repeats",
                        str(args.repeats),
                        "--one",
                        backend,
                        str(n),
                        str(m),
                        storage,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                extra = (
                    f"  floor {row['floor_s'] * 1e3:.1f} ms, x{row['time_over_floor']:.2f} of floor"
                    if backend == "gpu"
                    else ""
                )
                print(
                    f"{backend} {n:>7} x {m:>5} {storage}: {row['entries_per_s']:.3g} entries/s "
                    f"({row['seconds_median']:.3f} s median of {args.repeats}), matrix "
                    f"{row['matrix_mb']:.0f} MB, peak RSS main {row['peak_rss_mb_main']:.0f} MB, "
                    f"workers {row['peak_rss_mb_workers']:.0f} MB{extra}",
                    flush=True,
                )
    stem = result_stem("matrix")
    write_rows(stem, info, rows)
    lines = [
        f"# Dose-influence matrix build, {info['date']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"GPU: {info['gpu'] or 'none (' + str(info['gpu_unavailable_reason']) + ')'}; "
        f"NumPy {info['numpy']}, Python {info['python']}.",
        "Command: `python benchmarks/bench_matrix.py`",
        "",
        "On the CPU the matrix is allocated in shared memory and written by forked workers: each "
        "worker's peak RSS counts the rows it wrote (matrix / workers) plus its tile temporaries; "
        "the main process holds only the inputs.",
        "",
        "| backend | points x seeds | storage | entries/s (median) | s (median) | matrix MB | "
        "peak RSS main MB | peak RSS worker MB | GPU time / floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['n_points']} x {r['n_seeds']} | {r['storage']} | "
            f"{r['entries_per_s']:.3g} | {r['seconds_median']:.3f} | {r['matrix_mb']:.0f} | "
            f"{r['peak_rss_mb_main']:.0f} | {r['peak_rss_mb_workers']:.0f} | "
            f"{r.get('time_over_floor', float('nan')):.2f} |"
        )
    cpu_rates = [
        r["entries_per_s"]
        for r in rows
        if r["backend"] == "cpu" and r["n_points"] * r["n_seeds"] >= 5e7
    ]
    if cpu_rates:
        lines += [
            "",
            f"CPU goal {CPU_GOAL:.0e} entries/s on matrices of 5e7+ entries: "
            f"{'met' if min(cpu_rates) >= CPU_GOAL else 'NOT met'} "
            f"(min {min(cpu_rates):.3g}, max {max(cpu_rates):.3g}).",
        ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
