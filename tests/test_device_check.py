"""The prepared device check (``benchmarks/device_check.sh``, issue 17) on a machine without a
GPU: it skips every device stage with the reason, runs its CPU plumbing at tiny sizes with
``--smoke``, and writes at most the 8 files the device tool brings back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seedopt.backend import gpu_unavailable_reason

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import device_check  # noqa: E402

pytestmark = pytest.mark.skipif(
    gpu_unavailable_reason() is None, reason="a GPU is usable: the device check runs for real"
)


def check(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, str]:
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh"), str(tmp_path), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    summary = next(tmp_path.glob("*-device-check.md")).read_text()
    return r, summary


def test_without_a_gpu_every_device_stage_is_skipped_with_the_reason(tmp_path: Path) -> None:
    r, summary = check(tmp_path)
    assert r.returncode == 0, r.stderr
    why = gpu_unavailable_reason()
    assert f"device: none ({why})" in summary
    for stage in ("gpu-tests", "bench_device", "bench_sweep", "bench_backends"):
        assert f"| {stage} | skipped: no GPU ({why}) |" in summary
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".log", ".md"]


def test_smoke_runs_the_cpu_plumbing_and_fits_what_the_device_tool_returns(
    tmp_path: Path,
) -> None:
    r, summary = check(tmp_path, "--smoke")
    assert r.returncode == 0, r.stderr
    assert "| bench_device | ok |" in summary and "| bench_backends | ok |" in summary
    device = json.loads(next(tmp_path.glob("*-device.json")).read_text())
    assert [row["backend"] for row in device["rows"]] == ["cpu"]
    assert device["rows"][0]["total_s"] > 0
    backends = json.loads(next(tmp_path.glob("*-backends.json")).read_text())
    assert {(row["case"], row["seed"]) for row in backends["rows"]} == {
        ("tiny_chest_wall", 0),
        ("tiny_chest_wall", 1),
        ("tiny_vertebral", 0),
        ("tiny_vertebral", 1),
    }
    assert "No GPU figure is claimed" in next(tmp_path.glob("*-backends.md")).read_text()
    files = list(tmp_path.iterdir())
    assert len(files) <= 8 and all(p.is_file() for p in files)


def test_the_gpu_test_files_are_every_file_with_a_gpu_test() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "--collect-only", "-q", str(ROOT / "tests")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    files = {Path(line.split("::")[0]).name for line in r.stdout.splitlines() if "::" in line}
    assert files == set(device_check.GPU_TEST_FILES)


def test_stage_limits_fit_the_budget() -> None:
    stages = device_check.stages(Path("/tmp"), smoke=False, budget_s=450)
    assert sum(s.limit_s for s in stages) <= 450
    assert [s.name for s in stages] == [
        "device",
        "gpu-tests",
        "bench_device",
        "bench_sweep",
        "bench_backends",
    ]
