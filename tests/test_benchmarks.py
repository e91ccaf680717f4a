"""The benchmark harnesses run end to end in quick mode (their numbers are not tested here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def test_device_benchmark_plans_every_size_on_every_usable_backend(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_device.py"),
            "--sizes",
            "3000x120,4000x160",
            "--iterations",
            "60",
            "--chains",
            "4",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    (report,) = tmp_path.glob("*-device.json")
    rows = json.loads(report.read_text())["rows"]
    assert [(row["n_points"], row["backend"]) for row in rows if row["backend"] == "cpu"] == [
        (3000, "cpu"),
        (4000, "cpu"),
    ]
    for row in rows:
        assert row["total_s"] >= row["matrix_s"] > 0 and row["seeds"] > 0
        assert 0 <= row["converged_iteration"] <= 60
    md = report.with_suffix(".md").read_text()
    assert "| cpu | 3000 x 120 |" in md and "GPU / CPU speed-up" in md
