"""What machine a benchmark ran on, recorded beside every result, and the harness pieces
the benchmark scripts share (child processes, the results file)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import TextIO

import numpy as np

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, object]:
    cpu = platform.processor() or "unknown CPU"
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.+)", info).group(1).strip()  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = float("nan")
    from seedopt.backend import gpu_unavailable_reason

    gpu = None
    if gpu_unavailable_reason() is None:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gpu": gpu,
        "gpu_unavailable_reason": gpu_unavailable_reason(),
    }


def machine_line(info: dict) -> str:
    """The report line of ``machine()``'s record: CPU, cores, memory, GPU, Python, NumPy."""
    gpu = info["gpu"] or f"none ({info['gpu_unavailable_reason']})"
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; GPU: {gpu}; "
        f"Python {info['python']}, NumPy {info['numpy']}."
    )


def result_stem(name: str = "") -> Path:
    """benchmarks/results/<date>-<machine>[-<name>] (no suffix)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    m = machine()
    kind = (m["gpu"] or f"cpu{m['cores']}").replace(" ", "-")
    day = _dt.date.today().isoformat()
    return RESULTS / "-".join(part for part in (day, kind, name) if part)


def run_child(cmd: list[str], timeout_s: float) -> dict:
    """Run a benchmark child process that prints its row as JSON on its last stdout line
    (through ``rows_out``): that row, or ``{"timed_out_s": timeout_s}``, or
    ``{"error": its last stderr line}``."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"timed_out_s": timeout_s}
    except subprocess.CalledProcessError as exc:
        return {"error": exc.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def rows_out() -> TextIO:
    """A child's channel for its JSON rows: the process's standard output. From here on file
    descriptor 1 points at standard error, so what native code prints there (HiGHS writes some
    MIP diagnostics straight to it) cannot land between the rows."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def run_child_rows(cmd: list[str], timeout_s: float) -> tuple[list[dict], str | None]:
    """Run a child that prints one JSON row per line as it goes (through ``rows_out``): the
    rows it printed, and None or why it stopped early (timed out: the rows before are kept;
    or its last stderr line when it failed)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        rows: list[dict] = []
        reader = threading.Thread(
            target=lambda: rows.extend(json.loads(line) for line in proc.stdout if line.strip()),
            daemon=True,
        )
        reader.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            reader.join()
            return rows, f"timed out after {timeout_s:.0f} s"
        reader.join()
        if proc.returncode != 0:
            err.seek(0)
            lines = err.read().strip().splitlines()
            return rows, lines[-1] if lines else f"exit status {proc.returncode}"
    return rows, None


def write_rows(stem: Path, info: dict, rows: list[dict]) -> None:
    """Write ``<stem>.json``: the machine and the benchmark's rows."""
    stem.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
