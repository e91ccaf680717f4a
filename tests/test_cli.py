"""The `seedopt` command as a user runs it: outputs, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seedopt.dose import dose_at_points
from seedopt.sources import Source, get_model


def seedopt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seedopt", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [
        ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("backend:")
    ]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("seedopt: error: ")
    assert "Traceback" not in result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def dose_cli(
    seeds: Path, points: Path, strength: tuple[str, ...] = ("--strength-u", "0.5")
) -> subprocess.CompletedProcess[str]:
    """`seedopt dose` for a 6711 source of the given strength options."""
    return seedopt(
        "dose", "--model", "6711", *strength, "--seeds", str(seeds), "--points", str(points)
    )


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_source_table_csv_has_exactly_the_documented_columns(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    r = seedopt("source-table", "6711", "--out", str(out), "--backend", "cpu")
    assert r.returncode == 0, r.stderr
    assert "cGy h^-1 U^-1" in r.stdout and "0.965" in r.stdout
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["r_cm", "theta_deg", "dose_rate_cGy_per_h_per_U"]
    table = {(float(a), float(b)): float(c) for a, b, c in rows[1:]}
    assert table[(1.0, 90.0)] == pytest.approx(0.965, rel=1e-5)
    m = get_model("6711")
    assert len(table) == len(np.unique(np.r_[m.gL_r_cm, m.F_r_cm, m.phi_an_r_cm])) * 11


def test_source_table_in_1d_is_isotropic(tmp_path: Path) -> None:
    out = tmp_path / "t1.csv"
    r = seedopt("source-table", "IAI-125A", "--formalism", "1d", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = np.array([[float(x) for x in row] for row in list(csv.reader(out.open()))[1:]])
    for radius in np.unique(rows[:, 0]):
        assert np.ptp(rows[rows[:, 0] == radius, 2]) == 0.0


def test_auto_backend_says_which_it_took() -> None:
    r = seedopt("source-table", "2301")
    assert r.returncode == 0
    assert r.stderr.startswith("backend: ")


def test_dose_command_matches_the_library(tmp_path: Path) -> None:
    seeds = write_csv(
        tmp_path / "s.csv",
        "x_mm,y_mm,z_mm,ux,uy,uz",
        ["0,0,0,0,0,1", "10,0,0,0,1,1", "0,10,5,1,0,0"],
    )
    points = write_csv(tmp_path / "p.csv", "x_mm,y_mm,z_mm", ["5,5,5", "-20,3,0", "0,0,30"])
    out = tmp_path / "d.csv"
    r = seedopt(
        "dose",
        "--model",
        "I25.S06",
        "--activity-mci",
        "0.6",
        "--seeds",
        str(seeds),
        "--points",
        str(points),
        "--out",
        str(out),
        "--backend",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    got = np.array([float(row["dose_gy"]) for row in csv.DictReader(out.open())])
    want = dose_at_points(
        [[5, 5, 5], [-20, 3, 0], [0, 0, 30]],
        [[0, 0, 0], [10, 0, 0], [0, 10, 5]],
        [[0, 0, 1], [0, 1, 1], [1, 0, 0]],
        Source.from_activity(get_model("I25.S06"), 0.6),
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_unknown_model_lists_the_known_ones() -> None:
    one_line_error(
        seedopt("source-table", "9011"),
        r"unknown source model '9011'; known models: 6711, 2301, I25.S06, IAI-125A",
    )


def test_unknown_backend() -> None:
    one_line_error(
        seedopt("source-table", "6711", "--backend", "tpu"),
        r"unknown backend 'tpu'; choose one of auto, cpu, gpu",
    )


def test_gpu_backend_without_a_usable_gpu_says_why() -> None:
    from seedopt.backend import gpu_unavailable_reason

    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is usable here")
    one_line_error(
        seedopt("source-table", "6711", "--backend", "gpu"), r"--backend gpu cannot run here: "
    )


@pytest.mark.parametrize(
    ("strength", "pattern"),
    [
        (["--strength-u", "0"], "positive number of U"),
        (["--strength-u", "-0.5"], "positive number of U"),
        (["--activity-mci", "0"], "positive number of mCi"),
        ([], "exactly one of --strength-u or --activity-mci"),
    ],
)
def test_non_positive_strength(tmp_path: Path, strength: list[str], pattern: str) -> None:
    seeds = write_csv(tmp_path / "s.csv", "x_mm,y_mm,z_mm", ["0,0,0"])
    one_line_error(
        dose_cli(seeds, seeds, tuple(strength)),
        pattern,
    )


def test_nan_coordinates(tmp_path: Path) -> None:
    seeds = write_csv(tmp_path / "s.csv", "x_mm,y_mm,z_mm", ["0,0,0"])
    points = write_csv(tmp_path / "p.csv", "x_mm,y_mm,z_mm", ["1,2,3", "nan,0,0"])
    one_line_error(
        dose_cli(seeds, points),
        r"points file .*p\.csv: line 3, column x_mm: nan is not finite",
    )


def test_zero_length_needle_direction(tmp_path: Path) -> None:
    seeds = write_csv(tmp_path / "s.csv", "x_mm,y_mm,z_mm,ux,uy,uz", ["0,0,0,0,0,1", "5,0,0,0,0,0"])
    points = write_csv(tmp_path / "p.csv", "x_mm,y_mm,z_mm", ["1,2,3"])
    one_line_error(
        dose_cli(seeds, points),
        r"seeds file .*s\.csv: line 3: direction \(ux, uy, uz\) of zero length",
    )


def test_missing_file_and_missing_columns(tmp_path: Path) -> None:
    missing = tmp_path / "none.csv"
    one_line_error(dose_cli(missing, missing), r"cannot read seeds file")
    bad = write_csv(tmp_path / "b.csv", "x,y,z", ["0,0,0"])
    one_line_error(dose_cli(bad, bad), r"needs columns x_mm,y_mm,z_mm")


def test_unknown_option_and_formalism_are_one_line_errors() -> None:
    one_line_error(seedopt("source-table", "6711", "--colour"), r"No such option '--colour'")
    one_line_error(seedopt("source-table", "6711", "--formalism", "3d"), r"unknown formalism '3d'")


def test_commission_writes_tables_and_figures(tmp_path: Path) -> None:
    r = seedopt("commission", "--out", str(tmp_path / "c"), "--backend", "cpu")
    assert r.returncode == 0, r.stderr
    assert "1984.72 cGy" in r.stdout
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == sorted(
        [
            f"{m}{s}"
            for m in ("6711", "2301", "I25S06", "IAI125A")
            for s in ("_1d.csv", "_2d.csv", ".png")
        ]
    )
