"""``seedopt batch``: many cases, several variants each, planned in parallel on Ray.

Each task (one case in one variant) runs ``planning.plan_case`` in a Ray worker; the driver
writes each finished task as its own part file, atomically (``results.write_part``), and
assembles ``results.h5`` from the parts at the end, atomically too. Killing the batch at any
moment leaves only complete parts; running the same command again skips every task whose
part holds a result of the same inputs (config, variant, method, seed), so a resumed batch
does each task exactly once. A task that raises is recorded with its error (status
"failed") and the others go on; failed tasks are kept on resume unless ``retry_failed``.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SeedoptError
from .results import assemble, read_part, summary_row, write_part
from .specs import load_specs, load_variants, spec_digest, spec_with


@dataclass(frozen=True)
class Task:
    """One plan of a batch: a case's config in one variant, with method and seed."""

    key: str
    case: str
    variant: str
    config: str
    spec: dict[str, Any]  # the validated PlanSpec as JSON data (variant applied)
    method: str | None
    seed: int
    digest: str
    save_dose: bool


@dataclass
class BatchSummary:
    """What a batch did: every task's record, and which ran now or came from parts."""

    records: list[dict[str, Any]]
    ran: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    workers: int = 0

    def count(self, status: str) -> int:
        rows = [summary_row(r["attrs"]) for r in self.records]
        if status == "feasible":
            return sum(r["status"] == "ok" and r["goals_met"] == 1 for r in rows)
        if status == "missed":
            return sum(r["status"] == "ok" and r["goals_met"] == 0 for r in rows)
        return sum(r["status"] == status for r in rows)

    @property
    def exit_code(self) -> int:
        """0 every task feasible, 3 a plan misses a goal, 4 a task failed."""
        if self.count("failed"):
            return 4
        return 3 if self.count("missed") else 0


def _key(*parts: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", p) for p in parts)


def make_tasks(
    configs: list[Path],
    variants_path: Path | None = None,
    methods: tuple[str, ...] = (),
    seed: int | None = None,
    save_dose: bool = False,
) -> list[Task]:
    """Every (case, variant, method) of a batch, validated before anything runs."""
    variants = load_variants(variants_path)
    tasks = []
    for path, spec in load_specs(configs):
        for vname, overrides in variants.items():
            vspec = spec_with(spec, overrides, f"{variants_path}: variant {vname}")
            for method in methods or (None,):
                s = vspec.optimizer.seed if seed is None else seed
                m = method or vspec.optimizer.method
                vspec.with_method(m, f"{path}: variant {vname}: --method {m}")  # before any run
                key = _key(spec.name, vname, *([m] if len(methods) > 1 else []))
                tasks.append(
                    Task(
                        key=key,
                        case=spec.name,
                        variant=vname if len(methods) <= 1 else f"{vname}/{m}",
                        config=str(path),
                        spec=vspec.model_dump(mode="json"),
                        method=m,
                        seed=s,
                        digest=spec_digest(vspec, m, s, save_dose),
                        save_dose=save_dose,
                    )
                )
    return tasks


def _task_attrs(task: Task) -> dict[str, Any]:
    return {
        "key": task.key,
        "case": task.case,
        "variant": task.variant,
        "config": task.config,
        "method": task.method or "",
        "seed": task.seed,
        "digest": task.digest,
    }


def _failure(error: str) -> dict[str, Any]:
    return {
        "status": "failed",
        "error": error,
        "goals_met": 0,
        "n_goals_missed": -1,
        "plan_s": float("nan"),
        "metrics_json": "",
    }


def plan_task(task: Task, backend_request: str, cache_dir: str | None) -> dict[str, Any]:
    """Run one task (in a Ray worker): its record (``attrs``, ``arrays``) and its log text.
    Never raises for a bad case: the error goes into the record."""
    from ..backend import select_backend
    from ..plan_config import PlanSpec
    from ..planning import plan_case
    from ..report import format_report

    start = time.perf_counter()
    attrs = _task_attrs(task)
    arrays: dict[str, np.ndarray] = {}
    log = [
        f"{task.key}: {task.config}, variant {task.variant}, seed {task.seed}, "
        f"pid {os.getpid()} on {os.uname().nodename}"
    ]
    try:
        spec = PlanSpec.model_validate(task.spec)
        backend, why = select_backend(backend_request)
        log.append(why)
        t = time.perf_counter()
        plan = plan_case(
            spec,
            backend,
            method=task.method,
            seed=task.seed,
            cache_dir=Path(cache_dir) if cache_dir else None,
        )
        plan_s = time.perf_counter() - t
        attrs.update(
            status="ok",
            error="",
            goals_met=int(plan.metrics.goals_met),
            n_goals_missed=plan.metrics.n_goals_missed,
            plan_s=plan_s,
            metrics_json=json.dumps(plan.metrics.to_json()),
        )
        arrays = {
            "seeds_mm": plan.seeds_mm,
            "seed_axes": plan.seed_axes,
            "loaded_index": np.flatnonzero(plan.loaded).astype(np.int64),
            "needles": np.asarray(plan.used_needles(), dtype=np.int64),
        }
        if task.save_dose:
            arrays["dose_gy"] = plan.dose_gy
        log.append(format_report(plan.metrics))
    except Exception as exc:  # a failing case is recorded, the batch goes on
        attrs.update(_failure(f"{type(exc).__name__}: {exc}"))
        log.append(traceback.format_exc())
    attrs["task_s"] = time.perf_counter() - start
    return {"attrs": attrs, "arrays": arrays, "log": "\n".join(log) + "\n"}


def _start_ray(address: str | None, workers: int | None) -> bool:
    """Connect to Ray: ``address`` (an existing cluster), else the session's Ray if one is
    initialised, else an embedded local one with ``workers`` CPUs (default: every core).
    True when this call started it (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SeedoptError(f"cannot join the Ray cluster at {address}: {exc}") from None
    else:
        ray.init(num_cpus=workers or os.cpu_count(), object_store_memory=512 * 2**20, **kwargs)
    return True


def _remove_stale_temps(parts: Path) -> None:
    """Temporary part files left by a killed batch (their writer's pid is gone)."""
    for tmp in parts.glob(".*.tmp-*"):
        pid = int(tmp.name.rsplit("-", 1)[-1]) if tmp.name.rsplit("-", 1)[-1].isdigit() else 0
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, ValueError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass


def run_batch(
    tasks: list[Task],
    out: Path,
    *,
    backend: str = "auto",
    address: str | None = None,
    workers: int | None = None,
    cache_dir: Path | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> BatchSummary:
    """Plan ``tasks`` on Ray into ``out`` (results.h5), resuming from ``out``'s parts.

    GPU tasks (``backend`` gpu, or auto on a cluster with GPUs) ask Ray for one GPU each,
    so one runs per GPU; CPU tasks ask for one CPU each. Returns the summary of all tasks.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    logs = out.with_name(out.name + ".logs")
    parts.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(parts)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for task in tasks:
        record = read_part(parts, task.key, task.digest)
        if record is None or (retry_failed and record["attrs"].get("status") != "ok"):
            todo.append(task)
        else:
            records[task.key] = record
    summary = BatchSummary([], resumed=sorted(records))
    if summary.resumed:
        echo(f"resuming: {len(summary.resumed)} of {len(tasks)} tasks already done in {parts}/")
    if todo:
        summary.workers = _run_on_ray(
            todo,
            parts,
            logs,
            records,
            summary,
            backend,
            address,
            workers,
            cache_dir,
            bar=lambda: tqdm(
                total=len(tasks),
                initial=len(records),
                desc="batch",
                unit="plan",
                disable=not progress,
                dynamic_ncols=True,
            ),
        )
    summary.records = [records[t.key] for t in tasks]
    assemble(out, summary.records)
    summary.wall_s = time.perf_counter() - start
    return summary


def _run_on_ray(
    todo: list[Task],
    parts: Path,
    logs: Path,
    records: dict[str, dict[str, Any]],
    summary: BatchSummary,
    backend: str,
    address: str | None,
    workers: int | None,
    cache_dir: Path | None,
    bar: Callable[[], Any],
) -> int:
    """Submit ``todo`` and write each result as it arrives; returns the task slots Ray had."""
    import ray

    started = _start_ray(address, workers)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if backend == "gpu" and gpus == 0:
            raise SeedoptError("--backend gpu: the Ray cluster has no GPU")
        use_gpu = backend in ("gpu", "auto") and gpus > 0
        remote = ray.remote(plan_task).options(
            num_cpus=1, num_gpus=1 if use_gpu else 0, max_retries=0
        )
        worker_backend = "gpu" if use_gpu else "cpu"
        cache = str(cache_dir) if cache_dir else None
        pending = {remote.remote(t, worker_backend, cache): t for t in todo}
        progress = bar()  # after Ray has started, so the ETA counts plans only
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except Exception as exc:  # the worker died (killed, out of memory)
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                record = {
                    "attrs": {**_task_attrs(task), **_failure(error), "task_s": float("nan")},
                    "arrays": {},
                    "log": f"{task.key}: the Ray task failed:\n{exc}\n",
                }
            (logs / f"{task.key}.log").write_text(record.pop("log"))
            write_part(parts, record)
            records[task.key] = record
            summary.ran.append(task.key)
            progress.update(1)
        progress.close()
        return gpus if use_gpu else int(resources.get("CPU", 0))
    finally:
        if started:
            ray.shutdown()


def format_summary(summary: BatchSummary) -> str:
    """The table printed at the end of a batch: one row per task, then the totals."""
    rows = [summary_row(r["attrs"]) for r in summary.records]
    width = max([len(r["key"]) for r in rows] + [4])
    lines = [
        f"{'task':{width}} {'status':7} {'goals':>5} {'D90 Gy':>7} {'seeds':>5} "
        f"{'needles':>7} {'plan s':>7}"
    ]
    for r in rows:
        if r["status"] == "ok":
            goals = "met" if r["goals_met"] == 1 else f"-{int(r['n_goals_missed'])}"
            lines.append(
                f"{r['key']:{width}} {'ok':7} {goals:>5} {r['D90_gy']:>7.1f} "
                f"{int(r['n_seeds']):>5} {int(r['n_needles']):>7} {r['plan_s']:>7.2f}"
            )
        else:
            lines.append(f"{r['key']:{width}} {'FAILED':7} {r['error']}")
    times = [r["plan_s"] for r in rows if r["status"] == "ok"]
    median = f"{statistics.median(times):.2f} s" if times else "n/a"
    lines.append(
        f"{len(rows)} tasks: {summary.count('feasible')} feasible, "
        f"{summary.count('missed')} missed a goal, {summary.count('failed')} failed; "
        f"median plan time {median}; {len(summary.ran)} planned now, "
        f"{len(summary.resumed)} resumed; wall {summary.wall_s:.1f} s"
    )
    return "\n".join(lines)
