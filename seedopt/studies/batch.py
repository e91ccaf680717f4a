"""``seedopt batch``: many cases, several variants each, planned in parallel on Ray.

Each task (one case in one variant) runs ``planning.plan_case`` in a Ray worker; the driver
writes each finished task as its own part file, atomically (``results.write_part``), and
assembles ``results.h5`` from the parts at the end, atomically too. Killing the batch at any
moment leaves only complete parts; running the same command again skips every task whose
part holds a result of the same inputs (config, variant, method, seed), so a resumed batch
does each task exactly once. A task that raises is recorded with its error (status
"failed") and the others go on; failed tasks are kept on resume unless ``retry_failed``.
Every task is validated before any runs (``make_tasks``); the Ray it runs on is started and
cleaned up, or joined, by ``ray_session``.
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

from ..atomic import atomic_path, remove_stale_temporaries, writable_folder
from ..errors import SeedoptError
from ..plan_config import PlanSpec, load_plan_spec
from .ray_session import DEFAULT_CONNECT_TIMEOUT_S, ray_session, terminate_as_exit
from .results import assemble, read_part, summary_row, write_part
from .specs import load_variants, spec_digest, spec_with


@dataclass(frozen=True)
class Task:
    """One plan of a batch: a case's config in one variant, with method and seed."""

    key: str
    case: str
    variant: str
    config: str
    spec: PlanSpec  # validated, with the variant, the method and the seed applied
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


KEY_MAX = 200
"""The longest task key: it names a part file (with ``.h5`` and a temporary suffix)."""
MAX_LISTED = 10
"""The most problems one error line lists."""
RAY_RETRIES = 2
"""How often Ray runs a task again whose worker or node died (a task's own errors are
recorded, never retried)."""


def task_key(*parts: str) -> str:
    """``case__variant[__method]``, each part reduced to letters, digits, ``_ . -``; never
    starting with a dot (a hidden file would pass for a temporary one)."""
    key = "__".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", p) for p in parts)
    return re.sub(r"^\.", "-", key)


def make_tasks(
    configs: list[Path],
    variants_path: Path | None = None,
    methods: tuple[str, ...] = (),
    seed: int | None = None,
    save_dose: bool = False,
) -> list[Task]:
    """Every (case, variant, method) of a batch as a validated ``PlanSpec`` (the variant,
    the method and ``seed`` applied), before anything runs. Every problem found (a config
    that does not load, a bad override, an unknown method, options the method's model
    refuses, two tasks with one key) is reported at once, in one error."""
    from ..optimizer import get_optimizer

    if not configs:
        raise SeedoptError("give one or more plan configs")
    twice = sorted({m for m in methods if methods.count(m) > 1})
    if twice:
        raise SeedoptError(f"--method {', '.join(twice)} given more than once")
    variants = load_variants(variants_path)
    problems: list[str] = []
    unknown = set()
    for m in methods:  # once here, not once per task
        try:
            get_optimizer(m)
        except SeedoptError as exc:
            problems.append(f"--method {m}: {exc}")
            unknown.add(m)
    tasks = []
    for path in map(Path, configs):
        try:
            spec = load_plan_spec(path)
        except SeedoptError as exc:
            problems.append(str(exc))
            continue
        for vname, overrides in variants.items():
            where = f"{path}, variant {vname} ({variants_path})" if variants_path else str(path)
            try:
                vspec = spec_with(spec, overrides, where)
            except SeedoptError as exc:
                problems.append(str(exc))
                continue
            for m in methods or (vspec.optimizer.method,):
                if m in unknown:
                    continue
                try:  # the method's options validated against its model
                    mspec = vspec.with_method(m, f"{where}, method {m}")
                    if seed is not None:
                        mspec = spec_with(mspec, {"optimizer": {"seed": seed}}, f"{where}, --seed")
                except SeedoptError as exc:
                    problems.append(str(exc))
                    continue
                s = mspec.optimizer.seed
                tasks.append(
                    Task(
                        key=task_key(spec.name, vname, *([m] if len(methods) > 1 else [])),
                        case=spec.name,
                        variant=vname if len(methods) <= 1 else f"{vname}/{m}",
                        config=str(path),
                        spec=mspec,
                        method=m,
                        seed=s,
                        digest=spec_digest(mspec, m, s, save_dose),
                        save_dose=save_dose,
                    )
                )
    problems += _key_problems(tasks)
    if problems:
        listed = "; ".join(problems[:MAX_LISTED])
        more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        head = "" if len(problems) == 1 else f"{len(problems)} problems, no task run: "
        raise SeedoptError(head + listed + more)
    return tasks


def _key_problems(tasks: list[Task]) -> list[str]:
    """Keys too long for a file name, and keys two tasks share (compared ignoring case,
    as file systems on macOS and Windows do)."""
    problems = []
    seen: dict[str, Task] = {}
    for t in tasks:
        if len(t.key.encode()) > KEY_MAX:
            problems.append(
                f"{t.config}: task key {t.key[:40]}... is longer than {KEY_MAX} "
                "bytes; use a shorter case name"
            )
        other = seen.setdefault(t.key.casefold(), t)
        if other is not t:
            keys = repr(t.key) if t.key == other.key else f"{other.key!r} and {t.key!r}"
            same = "the same key" if t.key == other.key else "keys equal but for case"
            problems.append(
                f"{_describe(other)} and {_describe(t)} map to {same}, {keys} (a task key "
                "names its part file and its result): rename one case"
            )
    return problems


def _describe(t: Task) -> str:
    return f"{t.config} (case {t.case!r}, variant {t.variant})"


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
        backend, why = select_backend(backend_request)
        log.append(why)
        t = time.perf_counter()
        plan = plan_case(
            task.spec,
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


def _output_folders(out: Path) -> tuple[Path, Path]:
    """``OUT.parts/`` and ``OUT.logs/``, created and writable, or one error naming them."""
    if out.is_dir():
        raise SeedoptError(f"--out {out} is a folder; give the results file, e.g. {out}/results.h5")
    parts = out.with_name(out.name + ".parts")
    logs = out.with_name(out.name + ".logs")
    for folder in (parts, logs):
        writable_folder(folder, f"--out {out}")
    return parts, logs


def run_batch(
    tasks: list[Task],
    out: Path,
    *,
    backend: str = "auto",
    address: str | None = None,
    workers: int | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    cache_dir: Path | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> BatchSummary:
    """Plan ``tasks`` on Ray into ``out`` (results.h5), resuming from ``out``'s parts.

    GPU tasks (``backend`` gpu, or auto on a cluster with GPUs) ask Ray for one GPU each,
    so one runs per GPU; CPU tasks ask for one CPU each. A cluster at ``address`` that does
    not answer within ``connect_timeout_s`` seconds is an error. Ray started here is shut
    down (its processes and files removed) however the batch ends (``ray_session``); SIGTERM
    and SIGHUP end the batch as an exit with code 128 + signal. Returns the summary of all
    tasks.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    out = Path(out)
    parts, logs = _output_folders(out)
    for folder in (parts, logs):
        remove_stale_temporaries(folder)
    remove_stale_temporaries(out.parent, out.name)
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
        try:
            with ray_session(address, workers, connect_timeout_s), terminate_as_exit():
                summary.workers = _run_on_ray(
                    todo,
                    parts,
                    logs,
                    records,
                    summary,
                    backend,
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
        except SystemExit:
            echo(
                f"stopped: {len(records)} of {len(tasks)} tasks done in {parts}/; run the "
                "same command again to resume"
            )
            raise
    summary.records = [records[t.key] for t in tasks]
    try:
        assemble(out, summary.records)
    except OSError as exc:
        raise SeedoptError(f"cannot write {out}: {exc} (the parts are kept; run again)") from None
    summary.wall_s = time.perf_counter() - start
    return summary


def _run_on_ray(
    todo: list[Task],
    parts: Path,
    logs: Path,
    records: dict[str, dict[str, Any]],
    summary: BatchSummary,
    backend: str,
    cache_dir: Path | None,
    bar: Callable[[], Any],
) -> int:
    """Submit ``todo`` to the Ray of this process and write each result as it arrives;
    returns the task slots Ray had."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if backend == "gpu" and gpus == 0:
        raise SeedoptError("--backend gpu: the Ray cluster has no GPU")
    use_gpu = backend in ("gpu", "auto") and gpus > 0
    remote = ray.remote(plan_task).options(
        num_cpus=1, num_gpus=1 if use_gpu else 0, max_retries=RAY_RETRIES
    )
    worker_backend = "gpu" if use_gpu else "cpu"
    cache = str(cache_dir) if cache_dir else None
    pending = {remote.remote(t, worker_backend, cache): t for t in todo}
    progress = bar()  # after Ray has started, so the ETA counts plans only
    try:
        while pending:
            # a timeout, so that signals reach the main thread within a second
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if not ready:
                continue
            task = pending.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except Exception as exc:  # the worker or its node died, RAY_RETRIES + 1 times
                first = (str(exc).strip().splitlines() or [""])[0]
                record = {
                    "attrs": {
                        **_task_attrs(task),
                        **_failure(f"{type(exc).__name__}: {first}"),
                        "task_s": float("nan"),
                    },
                    "arrays": {},
                    "log": f"{task.key}: the Ray task failed:\n{exc}\n",
                }
            try:
                with atomic_path(logs / f"{task.key}.log") as tmp:
                    tmp.write_text(record.pop("log"))
                write_part(parts, record)
            except OSError as exc:
                raise SeedoptError(
                    f"cannot write the result of task {task.key} in {parts}: {exc} "
                    "(finished parts are kept; run the same command again to resume)"
                ) from None
            records[task.key] = record
            summary.ran.append(task.key)
            progress.update(1)
    finally:
        progress.close()
    return gpus if use_gpu else int(resources.get("CPU", 0))


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
