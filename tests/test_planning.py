"""`seedopt plan` end to end on a small case: outputs, their schema, goals and exit codes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from seedopt.backend import cpu_backend
from seedopt.dose import dose_at_points
from seedopt.plan_config import load_plan_spec
from seedopt.planning import plan_case

SMALL = {
    "name": "small",
    "description": "a 4 cc target under the skin, cord below",
    "grid": {"spacing_mm": 2.0, "min_mm": [-24, -30, -20], "max_mm": [24, 24, 20]},
    "structures": {
        "BODY": {"shape": "cylinder", "center_mm": [0, 0, 0], "radii_mm": [80, 26], "axis": "z"},
        "GTV": {"shape": "ellipsoid", "center_mm": [0, -8, 0], "radii_mm": [10, 9, 11]},
        "Cord": {"shape": "cylinder", "center_mm": [0, 16, 0], "radii_mm": [4, 4], "axis": "z"},
    },
    "roles": {"target": "GTV", "body": "BODY", "cord": "Cord", "nogo": ["Cord"]},
    "source": {"model": "6711", "activity_mci": 0.5},
    "prescription_gy": 120,
    "approach": {
        "kind": "template",
        "plane_point_mm": [0, -40, 0],
        "direction": [0, 1, 0],
        "size_mm": 40,
    },
    "optimizer": {"method": "anneal", "options": {"iterations": 800, "chains": 16}},
    "metrics": {"GTV": ["D98", "V120"], "Cord": ["D1cc", "V10Gy"]},
}


def write_config(tmp_path: Path, config: dict, name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def run_plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seedopt", "plan", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def planned(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("plan")
    cfg = write_config(tmp, SMALL)
    out = tmp / "out"
    return out, run_plan(
        str(cfg), "--out", str(out), "--backend", "cpu", "--cache", str(tmp / "cache")
    )


def test_plan_writes_every_output_and_meets_its_goals(planned) -> None:
    out, r = planned
    assert r.returncode == 0, r.stderr + r.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "dose.h5",
        "dvh.png",
        "metrics.json",
        "plan.json",
        "slices.png",
    ]
    assert "PASS" in r.stdout and "FAIL" not in r.stdout


def test_plan_json_schema_and_seeds_on_their_needles(planned) -> None:
    out, _ = planned
    plan = json.loads((out / "plan.json").read_text())
    assert plan["schema"] == "seedopt-plan-1"
    src = plan["source"]
    assert src["model"] == "6711" and src["half_life_d"] == 59.4
    assert src["air_kerma_strength_u"] == pytest.approx(1.270 * src["apparent_activity_mci"])
    assert plan["needles"]
    for needle in plan["needles"]:
        assert set(needle) == {"entry_mm", "tip_mm", "template_hole", "seeds_mm"}
        entry, tip = np.array(needle["entry_mm"]), np.array(needle["tip_mm"])
        u = (tip - entry) / np.linalg.norm(tip - entry)
        np.testing.assert_allclose(u, [0, 1, 0], atol=1e-9)
        assert len(needle["template_hole"]) == 2 and needle["seeds_mm"]
        for s in np.array(needle["seeds_mm"]):
            off_axis = np.linalg.norm((s - entry) - np.dot(s - entry, u) * u)
            assert off_axis < 1e-3
            assert 0 <= np.dot(s - entry, u) <= np.linalg.norm(tip - entry) + 1e-6


def test_metrics_json_and_dose_h5_agree_with_the_dose_engine(planned) -> None:
    out, _ = planned
    m = json.loads((out / "metrics.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    for key in (
        "prescription_gy",
        "target",
        "structures",
        "indices",
        "goals",
        "n_needles",
        "n_seeds",
        "runtime_s",
    ):
        assert key in m
    t = m["structures"]["GTV"]
    for key in (
        "D90_gy",
        "D100_gy",
        "V100_pct",
        "V150_pct",
        "V200_pct",
        "Dmax_gy",
        "D0.1cc_gy",
        "D2cc_gy",
        "Dmean_gy",
    ):
        assert key in t
    assert set(m["indices"]) == {"CI", "EI", "HI"}
    assert m["n_seeds"] == sum(len(n["seeds_mm"]) for n in plan["needles"])
    assert all({"name", "value", "limit", "met"} <= set(g) for g in m["goals"])
    with h5py.File(out / "dose.h5") as f:
        dose = f["dose_gy"][()]
        origin, spacing = f.attrs["origin_mm"], f.attrs["spacing_mm"]
        gtv = f["masks/GTV"][()]
    assert dose.shape == gtv.shape and gtv.dtype == bool
    # an independent recomputation of the dose at a few voxels from plan.json
    from seedopt.sources import Source, get_model

    seeds = np.array([s for n in plan["needles"] for s in n["seeds_mm"]])
    source = Source(get_model("6711"), plan["source"]["air_kerma_strength_u"])
    idx = np.argwhere(gtv)[::97]
    pts = origin + idx[:, ::-1] * spacing
    np.testing.assert_allclose(
        dose[tuple(idx.T)], dose_at_points(pts, seeds, [0, 1, 0], source), rtol=1e-4
    )
    d_sorted = np.sort(dose[gtv])[::-1]
    d90 = d_sorted[int(np.ceil(0.9 * d_sorted.size)) - 1]
    assert t["D90_gy"] == pytest.approx(d90, rel=1e-5)
    # the Dx / Vx the config asks for, recomputed from dose.h5
    d98 = d_sorted[int(np.ceil(0.98 * d_sorted.size)) - 1]
    assert t["D98_gy"] == pytest.approx(d98, rel=1e-5)
    assert t["V120_pct"] == pytest.approx(100 * np.mean(dose[gtv] >= 1.2 * 120), abs=1e-9)
    with h5py.File(out / "dose.h5") as f:
        cord = np.sort(dose[f["masks/Cord"][()]])[::-1]
    voxel_cc = float(np.prod(spacing)) / 1000
    assert m["structures"]["Cord"]["D1cc_gy"] == pytest.approx(
        cord[int(np.ceil(1.0 / voxel_cc - 1e-9)) - 1], rel=1e-5
    )
    assert m["structures"]["Cord"]["V10Gy_pct"] == pytest.approx(100 * np.mean(cord >= 10.0))


def test_replanning_reuses_the_cached_dose_matrix(tmp_path: Path) -> None:
    spec = load_plan_spec(write_config(tmp_path, SMALL))
    first = plan_case(spec, cpu_backend(), cache_dir=tmp_path / "cache")
    changed = spec.model_copy(update={"prescription_gy": 110.0})
    second = plan_case(changed, cpu_backend(), cache_dir=tmp_path / "cache")
    assert not first.metrics.optimizer.dose_matrix_cached
    assert second.metrics.optimizer.dose_matrix_cached


def test_same_seed_same_plan(tmp_path: Path) -> None:
    spec = load_plan_spec(write_config(tmp_path, SMALL))
    a = plan_case(spec, cpu_backend(), cache_dir=None)
    b = plan_case(spec, cpu_backend(), cache_dir=None)
    np.testing.assert_array_equal(a.loaded, b.loaded)


def test_unreachable_goals_give_the_best_plan_and_exit_code_3(tmp_path: Path) -> None:
    cfg = copy.deepcopy(SMALL)
    cfg["goals"] = {"hard": [{"structure": "Cord", "metric": "Dmax", "max_gy": 2.0}]}
    out = tmp_path / "out"
    r = run_plan(str(write_config(tmp_path, cfg)), "--out", str(out), "--no-cache")
    assert r.returncode == 3, r.stderr
    assert "FAIL (misses by" in r.stdout and "Cord Dmax <= 2 Gy" in r.stdout
    assert (out / "plan.json").exists() and (out / "dose.h5").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prescription_gy": -10}, r"prescription_gy: Input should be greater than 0"),
        ({"colour": 1}, r"colour: unknown key"),
        ({"roles": {"body": "BODY"}}, r"roles\.target: Field required"),
        (
            {"goals": {"hard": [{"structure": "Cord2", "metric": "Dmax", "max_gy": 5}]}},
            r"goals\.hard\.0\.structure: no structure named 'Cord2' \(did you mean 'Cord'\?\)",
        ),
        ({"source": {"model": "6711"}}, r"source: .*exactly one of strength_u"),
        (
            {"goals": {"weights": {"organ_floor": 1.5}}},
            r"goals\.weights: organ_floor must be a fraction of the limit in \[0, 1\], got 1\.5",
        ),
        (
            {"goals": {"hard": [{"structure": "Cord", "metric": "Dmax", "max_gy": True}]}},
            r"goals\.hard\.0: max_gy: expected a number, got true",
        ),
        (
            {"goals": {"hard": [{"structure": "Cord", "metric": "Dmax", "max_gy": 5, "gy": 1}]}},
            r"goals\.hard\.0\.gy: unknown key",
        ),
        ({"goals": {"weights": {"per_seed": -1}}}, r"goals\.weights: per_seed must be >= 0"),
        ({"metrics": {"GTV": ["D98", "X5"]}}, r"metrics\.GTV\.1: 'X5' is not a Dx / Vx metric"),
        ({"metrics": {"Cords": ["D1cc"]}}, r"metrics\.Cords: no structure named 'Cords'"),
        (
            {
                "structures": {
                    **SMALL["structures"],
                    "GTV": {"shape": "ellipsoid", "center_mm": [300, 0, 0], "radii_mm": [5, 5, 5]},
                }
            },
            r"roles\.target: structure 'GTV' has no voxels",
        ),
        (
            {
                "structures": {
                    **SMALL["structures"],
                    "Cord": {"shape": "cylinder", "center_mm": [0, 60, 0], "radii_mm": [4, 4]},
                }
            },
            r"hard limit Cord D0\.1cc <= 45 Gy: Cord has no voxel inside the dose grid",
        ),
    ],
)
def test_bad_configs_give_one_line_naming_the_key(
    tmp_path: Path, change: dict, message: str
) -> None:
    import re

    cfg = {**copy.deepcopy(SMALL), **change}
    r = run_plan(str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "o"), "--no-cache")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("seedopt: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(message, lines[0]), lines[0]


def test_unknown_method_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    r = run_plan(
        str(write_config(tmp_path, SMALL)),
        "--out",
        str(tmp_path / "o"),
        "--method",
        "magic",
        "--no-cache",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "unknown optimizer 'magic'; choose one of anneal, clinical, hybrid, lp, milp" in r.stderr
