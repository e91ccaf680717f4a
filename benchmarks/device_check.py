"""The prepared device check (issue 17): every GPU measurement of the project in one run.

    bash benchmarks/device_check.sh [OUT_DIR]          # installs carried wheels, then this
    python benchmarks/device_check.py [--out DIR] [--budget-s 450] [--smoke]

Stages, each a child process with its own time limit, in this order:

1. ``device``: the GPU as CuPy reports it (name, compute capability, memory, driver and
   runtime versions, CuPy's version), or why no GPU is usable.
2. ``gpu-tests``: the GPU test suite (``pytest -m gpu`` over the files that hold GPU tests),
   its summary line.
3. ``bench_device``: the planning loop at three sizes (about 50k x 1k, 200k x 5k,
   500k x 10k points x candidates) on the GPU and the CPU of the same machine: matrix build,
   annealing, time to convergence, total, each GPU stage over its floor from the copy
   bandwidth measured in the same run, the GPU / CPU ratios.
4. ``bench_sweep``: a 1,000-plan dose-escalation sweep of one case on the GPU.
5. ``bench_backends``: the default method on six cohort cases on the GPU with the CPU rows
   beside them.

Without a GPU, stages 2-5 are skipped, each with the reason, and the check ends in seconds
(``--smoke`` runs stages 3 and 5 on the CPU at tiny sizes instead, to test the plumbing).
Everything goes to ``<out>/<date>-<machine>-*``: the stages' own JSON and Markdown files and
``device-check.md`` (the summary: each stage's status, seconds and last lines) beside
``device-check.log`` (every stage's whole output). At most 8 files, so that the device
tool brings all of them back. Exit status 0 when every stage that ran succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
GPU_TEST_FILES = (
    "test_anneal_kernels.py",
    "test_gpu_path.py",
    "test_influence.py",
    "test_kernels.py",
    "test_tg43_physics.py",
)
"""The test files that hold ``gpu``-marked tests (``tests/test_device_check.py`` checks that
this list is complete)."""

DEVICE_INFO = r"""
import json
from seedopt.backend import gpu_unavailable_reason
why = gpu_unavailable_reason()
info = {"gpu_unavailable_reason": why}
if why is None:
    import cupy
    rt = cupy.cuda.runtime
    p = rt.getDeviceProperties(0)
    name = p["name"].decode() if isinstance(p["name"], bytes) else str(p["name"])
    free, total = rt.memGetInfo()
    info.update(name=name, compute_capability=f"{p['major']}.{p['minor']}",
                multiprocessors=p["multiProcessorCount"], memory_gib=round(total / 2**30, 1),
                free_gib=round(free / 2**30, 1), driver_version=rt.driverGetVersion(),
                runtime_version=rt.runtimeGetVersion(), cupy=cupy.__version__)
print(json.dumps(info))
"""


@dataclass
class Stage:
    """One stage of the check: its command, time limit and outcome."""

    name: str
    command: list[str]
    limit_s: float
    needs_gpu: bool = True
    status: str = "not run"
    seconds: float = 0.0
    output: str = ""
    notes: list[str] = field(default_factory=list)

    def run(self, gpu_reason: str | None, cwd: Path) -> None:
        """Run the stage (or record why not), keeping its output."""
        if self.needs_gpu and gpu_reason is not None:
            self.status = f"skipped: no GPU ({gpu_reason})"
            return
        t = time.perf_counter()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            proc = subprocess.run(
                self.command,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.limit_s,
            )
            self.output = proc.stdout + proc.stderr
            self.status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            err = exc.stderr or b""
            self.output = (out.decode() if isinstance(out, bytes) else out) + (
                err.decode() if isinstance(err, bytes) else err
            )
            self.status = f"timed out after {self.limit_s:.0f} s"
        self.seconds = time.perf_counter() - t

    def tail(self, lines: int = 6) -> list[str]:
        """The last ``lines`` non-empty lines of the output."""
        return [ln for ln in self.output.splitlines() if ln.strip()][-lines:]


def stages(out: Path, smoke: bool, budget_s: float) -> list[Stage]:
    """The check's stages in order, with time limits that sum to at most ``budget_s``."""
    py, b, o = sys.executable, str(HERE), str(out)
    share = budget_s / 450.0  # the limits below are for a 450 s budget
    tests = [str(ROOT / "tests" / f) for f in GPU_TEST_FILES]
    pytest = f"{py} -m pytest -m gpu -q -p no:cacheprovider --rootdir {ROOT}".split()
    sizes = "20000x300" if smoke else "50000x1000,200000x5000,500000x10000"
    device = f"{py} {b}/bench_device.py --sizes {sizes} --out {o} --iterations "
    device += f"{300 if smoke else 2000} --timeout-s {60 * share:.0f} --cpu-timeout-s "
    device += f"{40 * share:.0f}"
    sweep = f"{py} {b}/bench_sweep.py --backend gpu --levels 1000 --separate 2 --out {o}"
    backends = f"{py} {b}/bench_backends.py --out {o} --timeout-s {40 * share:.0f}"
    backends += " --cases tiny" if smoke else ""
    return [
        Stage("device", [py, "-c", DEVICE_INFO], 20 * share, needs_gpu=False),
        Stage("gpu-tests", pytest + tests, 100 * share),
        Stage("bench_device", device.split(), 190 * share, needs_gpu=not smoke),
        Stage("bench_sweep", sweep.split(), 60 * share),
        Stage("bench_backends", backends.split(), 80 * share, needs_gpu=not smoke),
    ]


def device_line(stage: Stage) -> tuple[str, str | None]:
    """The summary's device line and the reason no GPU is usable (None when one is)."""
    try:
        info = json.loads(stage.tail(1)[0])
    except (IndexError, json.JSONDecodeError):
        return f"device: unknown ({stage.status})", f"the device stage {stage.status}"
    why = info.pop("gpu_unavailable_reason")
    if why is not None:
        return f"device: none ({why})", why
    return "device: " + ", ".join(f"{k} {v}" for k, v in info.items()), None


def summary(stamp: str, run: list[Stage], device: str, args: argparse.Namespace) -> str:
    """The Markdown summary of the check."""
    lines = [
        f"# Device check, {stamp}",
        "",
        f"Command: `bash benchmarks/device_check.sh` (`python benchmarks/device_check.py "
        f"--budget-s {args.budget_s:g}{' --smoke' if args.smoke else ''}`)",
        "",
        device,
        "",
        "| stage | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.1f} |" for s in run]
    for s in run:
        if s.output:
            lines += ["", f"## {s.name}: last lines", "", "```", *s.tail(), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--budget-s", type=float, default=450.0, help="all stages together")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU runs where no GPU is usable")
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    run = stages(args.out, args.smoke, args.budget_s)
    # every stage runs outside the checkout, so that an installed seedopt (the wheel the
    # device machine gets) is not shadowed by the checkout's seedopt/ folder
    cwd = Path(tempfile.gettempdir())
    first = run[0]
    first.run(None, cwd)
    device, gpu_reason = device_line(first)
    print(device, flush=True)
    for s in run[1:]:
        s.run(gpu_reason, cwd)
        print(f"{s.name}: {s.status} ({s.seconds:.1f} s)", flush=True)
    sys.path.insert(0, str(HERE))
    from _machine import result_stem

    stem = args.out / result_stem("device-check").name
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    stem.with_suffix(".md").write_text(summary(stamp, run, device, args))
    log = [f"===== {s.name}: {s.status}, {s.seconds:.1f} s\n{s.output}" for s in run]
    stem.with_suffix(".log").write_text("\n".join(log))
    print(f"wrote {stem}.md and .log")
    return 0 if all(s.status == "ok" or s.status.startswith("skipped") for s in run) else 1


if __name__ == "__main__":
    sys.exit(main())
