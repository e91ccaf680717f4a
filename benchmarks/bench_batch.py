"""Benchmark: the batch runner's per-task overhead against the plan's own time, and plans
per hour.

    python benchmarks/bench_batch.py [--case chest_wall] [--tasks 8]
                                     [--iterations 300,3000,12000] [--chains 16]
                                     [--workers N] [--backend auto|cpu|gpu] [--out DIR]

For each iteration budget, ``--tasks`` copies of the case (each its own task, same seed) are
planned by ``seedopt.studies.run_batch`` on one embedded local Ray (started once, its start
time reported apart) with the dose matrix already in the cache. Per budget it reports the
plan's own time (``plan_case`` inside the worker), the time per task slot (batch wall time x
workers / tasks), the per-task overhead (time per slot minus plan time: scheduling, worker
start, moving results, writing the part files and results.h5), the in-worker overhead
(the worker's task time minus plan time) and plans per hour. Writes
<out>/<date>-<machine>-batch.{json,md} (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml
from _machine import RESULTS, machine, result_stem, write_rows


def run_level(
    config: dict, iterations: int, args: argparse.Namespace, tmp: Path, workers: int
) -> dict:
    from seedopt.studies import make_tasks, run_batch

    folder = tmp / f"it{iterations}-{args.tasks}"
    folder.mkdir()
    config = {
        **config,
        "optimizer": {
            "method": "anneal",
            "seed": 0,
            "options": {"iterations": iterations, "chains": args.chains},
        },
    }
    paths = []
    for k in range(args.tasks):
        path = folder / f"case{k}.yaml"
        path.write_text(yaml.safe_dump({**config, "name": f"{config['name']}-{k}"}))
        paths.append(path)
    t0 = time.perf_counter()
    summary = run_batch(
        make_tasks(paths),
        folder / "results.h5",
        backend=args.backend,
        cache_dir=tmp / "cache",
        progress=False,
        echo=lambda _: None,
    )
    wall = time.perf_counter() - t0
    attrs = [r["attrs"] for r in summary.records]
    failed = [a["error"] for a in attrs if a["status"] != "ok"]
    if failed:
        raise SystemExit(f"bench_batch: a task failed: {failed[0]}")
    plan = statistics.mean(a["plan_s"] for a in attrs)
    task = statistics.mean(a["task_s"] for a in attrs)
    slot = wall * workers / args.tasks
    return {
        "iterations": iterations,
        "chains": args.chains,
        "tasks": args.tasks,
        "workers": workers,
        "wall_s": wall,
        "plan_s_mean": plan,
        "task_s_mean": task,
        "slot_s": slot,
        "overhead_s_per_task": slot - plan,
        "overhead_pct_of_plan": 100 * (slot - plan) / plan,
        "in_worker_overhead_s": task - plan,
        "plans_per_hour": args.tasks / wall * 3600,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--case", default="chest_wall")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--iterations", default="300,3000,12000")
    ap.add_argument("--chains", type=int, default=16)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    import ray

    from seedopt.backend import cpu_backend
    from seedopt.plan_config import load_plan_spec
    from seedopt.planning import plan_case

    info = machine()
    source = resources.files("seedopt.configs").joinpath("cases", f"{args.case}.yaml")
    config = yaml.safe_load(source.read_text())
    levels = [int(v) for v in args.iterations.split(",")]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        plan_case(
            load_plan_spec(str(source)).model_copy(),
            cpu_backend(),
            method="anneal",
            cache_dir=tmp / "cache",
        )  # the dose matrix into the cache
        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        ray_start_s = time.perf_counter() - t0
        gpus = int(ray.cluster_resources().get("GPU", 0))
        workers = gpus if args.backend != "cpu" and gpus else args.workers
        t0 = time.perf_counter()  # the workers' first tasks import seedopt: kept apart
        run_level(config, 50, argparse.Namespace(**{**vars(args), "tasks": workers}), tmp, workers)
        warm_s = time.perf_counter() - t0
        rows = []
        for iterations in levels:
            row = {
                "case": args.case,
                "backend": args.backend,
                "ray_start_s": ray_start_s,
                "warmup_s": warm_s,
                **run_level(config, iterations, args, tmp, workers),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
        ray.shutdown()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / result_stem("batch").name
    write_rows(stem, info, rows)
    gpu = info["gpu"] or f"none ({info['gpu_unavailable_reason']})"
    lines = [
        f"# Batch runner overhead, {info['date']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; GPU: {gpu}; "
        f"backend {args.backend}; Ray {ray.__version__}, embedded local, {workers} workers "
        f"(started in {ray_start_s:.1f} s, then a warm-up batch of one 50-iteration task per "
        f"worker in {warm_s:.1f} s while the workers import seedopt; neither counted below).",
        f"Command: `python benchmarks/bench_batch.py --case {args.case} --tasks {args.tasks} "
        f"--iterations {args.iterations} --chains {args.chains} --workers {args.workers} "
        f"--backend {args.backend}`",
        "",
        "| iterations | tasks | wall s | plan s (mean) | s per task slot | overhead s/task "
        "| overhead % of plan | in-worker overhead s | plans/hour |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['iterations']} | {r['tasks']} | {r['wall_s']:.1f} | {r['plan_s_mean']:.2f} "
            f"| {r['slot_s']:.2f} | {r['overhead_s_per_task']:.2f} "
            f"| {r['overhead_pct_of_plan']:.0f} | {r['in_worker_overhead_s']:.3f} "
            f"| {r['plans_per_hour']:.0f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
