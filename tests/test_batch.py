"""`seedopt batch` on a local Ray: results, failures, determinism, and kill-and-resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from study_cases import failing_config, tiny_config

from seedopt.backend import cpu_backend
from seedopt.cli import main
from seedopt.plan_config import load_plan_spec
from seedopt.planning import plan_case
from seedopt.studies import make_tasks, read_summary, run_batch
from seedopt.studies.ray_session import new_session_folder, sessions_root
from seedopt.studies.ray_watchdog import end_session, running, session_processes

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray with two CPUs for the whole module (the batch joins it), its files in
    a session folder removed at the end (nothing left in /tmp/ray)."""
    folder = new_session_folder()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(folder))
    yield
    ray.shutdown()
    end_session(folder)


@pytest.fixture(scope="module")
def three_cases(tmp_path_factory) -> tuple[Path, list[Path]]:
    tmp = tmp_path_factory.mktemp("batch")
    configs = [tiny_config(tmp, n, rx) for n, rx in (("a", 110), ("b", 120), ("c", 130))]
    return tmp, configs


def test_three_cases_and_a_failing_one(three_cases) -> None:
    tmp, configs = three_cases
    out = tmp / "results.h5"
    tasks = make_tasks([*configs, failing_config(tmp)])
    summary = run_batch(tasks, out, backend="cpu", cache_dir=tmp / "cache", progress=False)
    assert sorted(summary.ran) == ["a__base", "b__base", "broken__base", "c__base"]
    assert summary.exit_code == 4 and summary.count("failed") == 1
    frame = read_summary(out)
    assert list(frame["key"]) == ["a__base", "b__base", "broken__base", "c__base"]
    broken = frame.set_index("key").loc["broken__base"]
    assert broken["status"] == "failed" and "inside the body" in broken["error"]
    good = frame[frame["status"] == "ok"]
    assert len(good) == 3 and (good["D90_gy"] > 0).all() and (good["plan_s"] > 0).all()
    with h5py.File(out, "r") as f:
        assert f.attrs["schema"] == "seedopt-batch-1" and f.attrs["n_tasks"] == 4
        for _, row in good.iterrows():
            g = f["tasks"][row["key"]]
            assert g.attrs["status"] == "ok"
            assert g["seeds_mm"].shape == (len(g["loaded_index"]), 3) == (row["n_seeds"], 3)
        assert "seeds_mm" not in f["tasks/broken__base"]
    for key in frame["key"]:
        assert (tmp / "results.h5.logs" / f"{key}.log").read_text().startswith(key)
    assert "Traceback" in (tmp / "results.h5.logs" / "broken__base.log").read_text()


def test_a_batch_plan_equals_the_same_plan_in_this_process(three_cases) -> None:
    tmp, configs = three_cases
    out = tmp / "results.h5"
    if not out.exists():
        pytest.skip("needs the batch of test_three_cases_and_a_failing_one")
    spec = load_plan_spec(configs[1])
    plan = plan_case(spec, cpu_backend(), seed=0)
    with h5py.File(out, "r") as f:
        loaded = np.asarray(f["tasks/b__base/loaded_index"])
    np.testing.assert_array_equal(loaded, np.flatnonzero(plan.loaded))


def test_rerun_plans_only_what_is_missing_or_changed(three_cases) -> None:
    tmp, configs = three_cases
    out = tmp / "again.h5"
    first = run_batch(
        make_tasks(configs), out, backend="cpu", cache_dir=tmp / "cache", progress=False
    )
    before = read_summary(out)
    (tmp / "again.h5.parts" / "b__base.h5").unlink()
    with h5py.File(tmp / "again.h5.parts" / "c__base.h5", "r+") as f:  # a damaged part
        f["tasks/c__base"].attrs["metrics_json"] = '{"structures": [1, 2]}'
    second = run_batch(
        make_tasks(configs), out, backend="cpu", cache_dir=tmp / "cache", progress=False
    )
    assert sorted(first.ran) == ["a__base", "b__base", "c__base"]
    assert sorted(second.ran) == ["b__base", "c__base"] and second.resumed == ["a__base"]
    after = read_summary(out)
    cols = ["key", "D90_gy", "V100_pct", "n_seeds", "n_needles", "objective"]
    assert after[cols].equals(before[cols])  # same inputs and seed, same results
    third = run_batch(
        make_tasks(configs, seed=5), out, backend="cpu", cache_dir=tmp / "cache", progress=False
    )
    assert sorted(third.ran) == ["a__base", "b__base", "c__base"]  # a new seed is a new input


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_batch_cleans_up_its_ray_and_resumes_with_every_task_once(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Killed mid-batch, the driver's local Ray (its processes and its session folder) goes
    with it and the finished parts stay complete; after SIGKILL, the same command finishes
    the rest (a SIGTERM leaves the same parts: its resume is the same)."""
    configs = [tiny_config(tmp_path, n, rx, iterations=1500) for n, rx in (("p", 110), ("q", 125))]
    variants = tmp_path / "variants.yaml"
    variants.write_text(
        yaml.safe_dump(
            {
                "loose": {"goals": {"weights": {"per_seed": 0.01}}},
                "tight": {"goals": {"max_needles": 5}},
            }
        )
    )
    out = tmp_path / "results.h5"
    parts = tmp_path / "results.h5.parts"
    args = [
        *map(str, configs),
        "--variants",
        str(variants),
        "--out",
        str(out),
        "--backend",
        "cpu",
        "--cache",
        str(tmp_path / "cache"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "seedopt", "batch", *args, "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(parts.glob("*.h5")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the batch ended before it could be killed"
            time.sleep(0.05)
        (session,) = sessions_root().glob(f"seedopt-ray-{proc.pid}-*")
        ray_pids = session_processes(session)
        assert len(ray_pids) >= 3  # GCS, raylet, a worker at least
        os.kill(proc.pid, sig)  # the batch process, mid-batch
        _, stderr = proc.communicate(timeout=60)
        if sig == signal.SIGTERM:  # a clean stop: Ray shut down before the exit
            assert proc.returncode == 128 + signal.SIGTERM
            assert "run the same command again to resume" in stderr and "Traceback" not in stderr
            assert not session.exists()
        deadline = time.monotonic() + 30  # SIGKILL: the watchdog cleans up
        while (session.exists() or running(ray_pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not session.exists() and not running(ray_pids)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left, should the test fail
        except ProcessLookupError:
            pass
    done_before = sorted(p.stem for p in parts.glob("*.h5"))
    assert 1 <= len(done_before) < 4 and not out.exists()
    for part in parts.glob("*.h5"):
        with h5py.File(part, "r") as f:
            assert f[f"tasks/{part.stem}"].attrs["status"] == "ok"
    if sig == signal.SIGTERM:  # the part in writing was removed, not left half-written
        assert not list(parts.glob(".*.tmp-*"))
        return

    with pytest.raises(SystemExit) as exit_info:
        main(["batch", *args])  # the same command again
    assert exit_info.value.code in (0, 3)
    frame = read_summary(out)
    keys = [f"{c}__{v}" for c in ("p", "q") for v in ("loose", "tight")]
    assert sorted(frame["key"]) == keys and frame["key"].is_unique
    assert (frame["status"] == "ok").all()
    with h5py.File(out, "r") as f:
        assert sorted(f["tasks"]) == keys
    assert not list(parts.glob(".*.tmp-*"))
    assert sorted(p.stem for p in parts.glob("*.h5")) == keys


def test_bad_variants_file_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path, "a")
    variants = tmp_path / "v.yaml"
    variants.write_text(yaml.safe_dump({"x": {"goals": {"max_needls": 3}}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", str(config), "--variants", str(variants), "--out", str(tmp_path / "r.h5")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seedopt: error: ") and "max_needls" in err[0]
