"""`seedopt escalate` and `seedopt tune` on a tiny case: tables, files, Pareto front, errors."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import optuna
import pandas as pd
import pytest
from study_cases import tiny_config

from seedopt.cli import main


def on_cpu(tmp_path: Path, out: Path) -> list[str]:
    """The options every study command here takes: output, a shared cache, the CPU."""
    return ["--out", str(out), "--cache", str(tmp_path / "cache"), "--backend", "cpu"]


def run(args: list[str]) -> int:
    """The exit code of ``seedopt ARGS`` run in this process."""
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_escalate_table_over_rx_and_strength(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "esc")
    out = tmp_path / "esc"
    code = run(
        [
            "escalate",
            str(config),
            "--rx",
            "100:140:20",
            "--strength-u",
            "0.5,0.8",
            *on_cpu(tmp_path, out),
        ]
    )
    assert code == 0
    table = pd.read_csv(out / "escalation.csv")
    assert list(table["rx_gy"]) == [100, 120, 140] * 2
    assert list(table["strength_u"]) == [0.5] * 3 + [0.8] * 3
    for col in (
        "D90_gy",
        "V100_pct",
        "V150_pct",
        "V200_pct",
        "Cord_D0.1cc_gy",
        "Cord_D2cc_gy",
        "Skin_D0.1cc_gy",
        "Skin_D2cc_gy",
        "n_needles",
        "n_seeds",
    ):
        assert np.isfinite(table[col]).all(), col
    # each level is planned for its own prescription: D90 follows it
    for _, g in table.groupby("strength_u"):
        assert g["D90_gy"].is_monotonic_increasing
        assert (g["D90_gy"] >= 0.95 * g["rx_gy"]).all()
    np.testing.assert_allclose(table["total_strength_u"], table["n_seeds"] * table["strength_u"])
    with h5py.File(out / "escalation.h5", "r") as f:
        h5 = pd.DataFrame.from_records(f["table"][()])
        assert f.attrs["case"] == "esc"
    pd.testing.assert_frame_equal(h5, table, check_dtype=False)
    assert (out / "escalation.png").stat().st_size > 10_000


def test_escalate_over_needle_limits_keeps_each_limit(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "esc")
    out = tmp_path / "esc"
    run(
        [
            "escalate",
            str(config),
            "--rx",
            "110,130",
            "--max-needles",
            "3,6",
            *on_cpu(tmp_path, out),
        ]
    )
    table = pd.read_csv(out / "escalation.csv")
    assert list(table["max_needles"]) == [3, 3, 6, 6]
    assert (table["n_needles"] <= table["max_needles"]).all()


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--rx", "100:180"], "start:stop:step"),
        (["--rx", "180:100:10"], "start:stop:step"),
        (["--rx", "100,-5"], "positive"),
        (["--rx", "100", "--max-needles", "2.5"], "whole numbers"),
    ],
)
def test_escalate_bad_levels_are_one_line_exit_2(tmp_path: Path, capsys, args, pattern) -> None:
    config = tiny_config(tmp_path, "esc")
    assert run(["escalate", str(config), *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seedopt: error: ") and pattern in err[0]


def test_unknown_config_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    for cmd in (
        ["escalate", "nope.yaml", "--rx", "100"],
        ["tune", "nope.yaml"],
        ["batch", "nope.yaml"],
    ):
        assert run([*cmd, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "nope.yaml" in err[0], err


def test_tune_finds_the_best_trial_in_sqlite(tmp_path: Path) -> None:
    configs = [tiny_config(tmp_path, n, rx, iterations=200) for n, rx in (("a", 110), ("b", 130))]
    out = tmp_path / "tune"
    assert (
        run(
            [
                "tune",
                *map(str, configs),
                "--trials",
                "3",
                *on_cpu(tmp_path, out),
            ]
        )
        == 0
    )
    storage = f"sqlite:///{(out / 'tune.db').resolve()}"
    study = optuna.load_study(study_name="seedopt-plan", storage=storage)
    values = [t.value for t in study.trials]
    assert len(values) == 3 and all(v > 0 for v in values)
    best = json.loads((out / "best.json").read_text())
    assert best["value"] == min(values) and set(best["params"]) == {
        "t0",
        "t_end",
        "p_shift",
        "p_swap",
        "chains",
    }
    assert len(pd.read_csv(out / "trials.csv")) == 3


def test_pareto_study_front_is_not_dominated(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "a", iterations=200)
    out = tmp_path / "pareto"
    assert (
        run(
            [
                "tune",
                str(config),
                "--objective",
                "pareto",
                "--trials",
                "4",
                *on_cpu(tmp_path, out),
            ]
        )
        == 0
    )
    study = optuna.load_study(
        study_name="seedopt-pareto", storage=f"sqlite:///{(out / 'tune.db').resolve()}"
    )
    trials = [(t.values[0], t.values[1]) for t in study.trials]
    front = pd.read_csv(out / "pareto.csv")
    assert 1 <= len(front) <= 4
    for cov, organ in zip(front["coverage_pct"], front["organ_pct"], strict=True):
        assert (cov, organ) in [pytest.approx(t) for t in trials]
        dominated = any(c >= cov and o <= organ and (c, o) != (cov, organ) for c, o in trials)
        assert not dominated
    assert (out / "pareto.png").stat().st_size > 10_000


def test_tune_rejects_a_storage_that_is_not_a_url(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path, "a")
    assert run(["tune", str(config), "--storage", "tune.db", "--out", str(tmp_path)]) == 2
    assert "storage URL" in capsys.readouterr().err
