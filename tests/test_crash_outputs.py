"""Output folders are all-or-nothing. `seedopt plan` killed with SIGKILL before each of its
file operations and at moments spread over its run leaves, every time, the previous complete
result set or the new complete one (every file parses, and the set is byte for byte one
run's); the next run finds no leftovers and no stale lock. A second run into a folder in use
is refused in one line. Output locations that cannot be written are one-line errors before
any work, and a full disk is one line with the previous set intact."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import matplotlib.image
import pytest
from study_cases import tiny_config
from test_cli import one_line_error, seedopt

from seedopt import output_set
from seedopt.cli import main
from seedopt.dose.cache import read_entry
from seedopt.errors import SeedoptError
from seedopt.export import RESULT_FILES
from seedopt.output_set import OutputSet

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kills fork the plan")

PLAN_FILES = ["dose.h5", "dvh.png", "metrics.json", "plan.json", "slices.png"]
VARYING_METRICS = ("runtime_s", "dose_matrix_cached")
"""The only metrics.json keys two runs of one seed may differ in."""


# --- helpers: a forked `seedopt plan`, killed where we say --------------------------------


def _counted(fn: Callable, name: str, kill_at: int | None, log: list[str]) -> Callable:
    def wrapper(*args, **kwargs):
        log.append(name)
        if len(log) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)

    return wrapper


def _count_file_operations(kill_at: int | None) -> list[str]:
    """Log (in this process) every file operation: os.open, mkdir, rename, replace, fsync,
    unlink, rmdir, and Python opens for writing; SIGKILL this process just before the
    ``kill_at``-th."""
    log: list[str] = []
    for name in ("open", "mkdir", "rename", "replace", "fsync", "unlink", "rmdir"):
        setattr(os, name, _counted(getattr(os, name), name, kill_at, log))
    plain_open = io.open
    counted_open = _counted(plain_open, "open for writing", kill_at, log)

    def python_open(file, mode="r", *args, **kwargs):
        opener = counted_open if set(mode) & set("wax+") else plain_open
        return opener(file, mode, *args, **kwargs)

    builtins.open = io.open = python_open
    output_set.exchange = _counted(output_set.exchange, "exchange", kill_at, log)
    return log


def run_forked(
    argv: list[str],
    log: Path,
    *,
    kill_at_op: int | None = None,
    kill_after_s: float | None = None,
    exchange: bool = True,
) -> tuple[int, list[str]]:
    """``seedopt ARGV`` in a forked child (no import cost), its output in ``log``, killed
    before its ``kill_at_op``-th file operation or after ``kill_after_s`` seconds.
    ``exchange=False`` takes the rename fallback of systems without RENAME_EXCHANGE.
    Returns the wait status and the file operations of the child (empty if killed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the child never returns)
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            if not exchange:
                output_set.exchange = lambda a, b: False  # as where renameat2 is missing
            operations = _count_file_operations(kill_at_op)
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            with io.FileIO(write_end, "w") as pipe:
                pipe.write(json.dumps(operations).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    if kill_after_s is not None:
        time.sleep(kill_after_s)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as fh:
        operations = fh.read()
    return status, json.loads(operations) if operations else []


def plan_argv(config: Path, out: Path, seed: int, cache: Path | None = None) -> list[str]:
    cache_args = ["--cache", str(cache)] if cache is not None else ["--no-cache"]
    return ["plan", str(config), "--out", str(out), "--seed", str(seed), "--backend", "cpu"] + (
        cache_args
    )


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file of a result set, checked to parse, by digest (metrics.json without the keys
    that differ between two runs of one seed)."""
    assert sorted(os.listdir(folder)) == PLAN_FILES
    prints = {}
    for name in PLAN_FILES:
        data = (folder / name).read_bytes()
        if name == "metrics.json":
            metrics = json.loads(data)
            for key in VARYING_METRICS:
                metrics.pop(key)
            data = json.dumps(metrics, sort_keys=True).encode()
        elif name == "plan.json":
            assert json.loads(data)["needles"]
        elif name == "dose.h5":
            with h5py.File(folder / name, "r") as f:
                assert f["dose_gy"].shape == f["masks/GTV"].shape
                assert f["dose_gy"][()].max() > 0
        else:
            assert matplotlib.image.imread(folder / name).ndim == 3
        prints[name] = hashlib.sha256(data).hexdigest()
    return prints


def fails_after_work(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    """Exit code 2 and one error line, the last, matching ``pattern``; no traceback."""
    assert result.returncode == 2, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("seedopt: error: ")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(pattern, errors[0]), errors[0]


def leftovers(out: Path) -> list[str]:
    """What seedopt keeps beside ``out`` while writing it (temporary folders, the lock)."""
    return sorted(n for n in os.listdir(out.parent) if n.startswith(f".{out.name}."))


@dataclass(frozen=True)
class CrashCase:
    """The tiny case, and the result sets of seeds 1 and 2 (folders, fingerprints)."""

    config: Path
    folders: dict[int, Path]
    sets: dict[int, dict[str, str]]


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> CrashCase:
    tmp = tmp_path_factory.mktemp("crash")
    config = tiny_config(tmp, "crash")
    folders = {seed: tmp / f"reference{seed}" for seed in (1, 2)}
    for seed, out in folders.items():
        status, _ = run_forked(plan_argv(config, out, seed), tmp / "log")
        assert status == 0, (tmp / "log").read_text()
    sets = {seed: fingerprint(out) for seed, out in folders.items()}
    assert sets[1] != sets[2]
    return CrashCase(config, folders, sets)


class _Discard(Exception):
    pass


def recover(out: Path) -> None:
    """What the next run does first: take the lock, finish or undo a killed run's work."""
    with contextlib.suppress(_Discard), OutputSet(out, RESULT_FILES):
        raise _Discard


def _sweep(
    case: CrashCase, tmp_path: Path, moments: list[dict], exchange: bool = True
) -> list[str]:
    """Kill a plan at each moment, in turn, into a folder holding a set; after each kill the
    folder holds one complete set (the old or the new), or, only without RENAME_EXCHANGE,
    is missing with both complete sets beside it ("aside"), which the next run restores.
    Returns what each kill left."""
    out, log = tmp_path / "out", tmp_path / "log"
    shutil.copytree(case.folders[1], out)
    current, outcomes = 1, []
    for k, moment in enumerate(moments):
        new = 3 - current
        cache = tmp_path / f"cache{k}"  # a cold cache: its writes are moments too
        argv = plan_argv(case.config, out, new, cache)
        status, _ = run_forked(argv, log, exchange=exchange, **moment)
        if status == 0:  # a timed kill after the end
            outcome = "new"
        else:
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            outcome = _what_is_left(case, out, current, new)
        assert outcome != "aside" or not exchange, moment
        outcomes.append(outcome)
        recover(out)
        current = current if outcome == "old" else new
        assert fingerprint(out) == case.sets[current] and leftovers(out) == [], moment
        for entry in cache.glob("*.h5"):  # a cache entry is absent or verifies
            with h5py.File(entry) as f:
                key, shape, dtype = f.attrs["key"], f["A_gy_per_u"].shape, f["A_gy_per_u"].dtype
            read_entry(entry, key, shape, dtype)
    # A real run after all those kills: no lock blocks it, and it leaves nothing beside.
    assert run_forked(plan_argv(case.config, out, 3 - current), log)[0] == 0, log.read_text()
    assert fingerprint(out) == case.sets[3 - current] and leftovers(out) == []
    return outcomes


def _what_is_left(case: CrashCase, out: Path, old: int, new: int) -> str:
    if out.exists():
        found = fingerprint(out)
        assert found in (case.sets[old], case.sets[new])
        return "old" if found == case.sets[old] else "new"
    aside = {
        name.split(".")[2][:3]: fingerprint(out.parent / name)
        for name in leftovers(out)
        if ".new-" in name or ".old-" in name
    }
    assert aside == {"new": case.sets[new], "old": case.sets[old]}, leftovers(out)
    return "aside"


def operations_of_a_replacing_run(
    case: CrashCase, tmp_path: Path, exchange: bool = True
) -> tuple[list[str], float]:
    """The file operations of a plan (cold cache) into a folder holding a set, and its
    duration (s)."""
    shutil.copytree(case.folders[1], tmp_path / "count")
    argv = plan_argv(case.config, tmp_path / "count", 2, tmp_path / "cache")
    t = time.perf_counter()
    status, ops = run_forked(argv, tmp_path / "log", exchange=exchange)
    run_s = time.perf_counter() - t
    assert status == 0
    shutil.rmtree(tmp_path / "cache")
    return ops, run_s


def _around(operations: list[str], kind: str) -> set[int]:
    """The moments (1-based) just before and just after each operation of ``kind``."""
    at = [k + 1 for k, op in enumerate(operations) if op == kind]
    return {m + d for m in at for d in (0, 1)}


def test_plan_killed_at_20_moments_leaves_the_old_or_the_new_set(
    case: CrashCase, tmp_path: Path
) -> None:
    """Killed before every fifth file operation of a run (making the temporary folder,
    writing the cache entry, each of the five files and its flush, the exchange, removing the
    old set), around the exchange, and at 6 moments spread over a run by time (mid-figure
    included): 20 kills or more, each leaving the old or the new complete set."""
    ops, run_s = operations_of_a_replacing_run(case, tmp_path)
    assert ops.count("exchange") == 1
    by_operation = sorted(set(range(1, len(ops) + 1, 5)) | _around(ops, "exchange"))
    moments = [{"kill_at_op": k} for k in by_operation]
    moments += [{"kill_after_s": run_s * k / 6} for k in range(1, 7)]
    assert len(moments) >= 20
    outcomes = _sweep(case, tmp_path, moments)
    assert "old" in outcomes and "new" in outcomes  # kills before and after the exchange


def test_without_rename_exchange_a_kill_between_the_renames_is_recovered(
    case: CrashCase, tmp_path: Path
) -> None:
    """The fallback where paths cannot be exchanged, killed around each of its renames: the
    folder holds one complete set, or both complete sets lie beside it and the next run
    restores the new one."""
    ops, _ = operations_of_a_replacing_run(case, tmp_path, exchange=False)
    assert ops.count("rename") == 3
    moments = [{"kill_at_op": k} for k in sorted(_around(ops, "rename"))]
    outcomes = _sweep(case, tmp_path, moments, exchange=False)
    assert "aside" in outcomes and "old" in outcomes and "new" in outcomes


# --- two runs, one folder -------------------------------------------------------------------


def test_a_second_run_into_a_folder_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = tiny_config(tmp_path, "busy")
    with pytest.raises(_Discard), OutputSet(out, RESULT_FILES):
        r = seedopt(*plan_argv(config, out, 1))
        raise _Discard
    one_line_error(r, rf"{out} is in use by another seedopt run \(process {os.getpid()}\)")
    assert not out.exists()


def test_two_concurrent_plans_into_one_folder_one_is_refused(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "race", iterations=4000)
    out = tmp_path / "out"
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "seedopt", *plan_argv(config, out, seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=120), p.communicate()) for p in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, (_, err) in results if code == 2)
    assert "is in use by another seedopt run" in refused and "Traceback" not in refused
    assert sorted(os.listdir(out)) == PLAN_FILES
    assert leftovers(out) == []


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / ".out.lock").write_text("999999999\n")  # a dead run's lock file
    with OutputSet(out, RESULT_FILES) as outputs:
        with outputs.writing("plan.json") as folder:
            (folder / "plan.json").write_text("{}")
    assert os.listdir(out) == ["plan.json"] and leftovers(out) == []


# --- output locations -----------------------------------------------------------------------


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs at ``where`` (root only; skipped elsewhere)."""
    where.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@contextlib.contextmanager
def read_only_folder(where: Path) -> Iterator[Path]:
    """A folder this process cannot write in: chmod for a user, a read-only mount for root."""
    if os.geteuid() != 0:
        where.mkdir()
        where.chmod(0o555)
        try:
            yield where
        finally:
            where.chmod(0o755)
    else:
        with mounted_tmpfs(where, "ro,size=1m") as folder:
            yield folder


def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "where")
    (tmp_path / "file").write_text("x")
    cases = {
        "under a regular file": (tmp_path / "file" / "out", r"file is a file, not a folder"),
        "a regular file": (tmp_path / "file", r"--out.*file.* is a file"),
    }
    for what, (out, message) in cases.items():
        r = seedopt(*plan_argv(config, out, 1))
        one_line_error(r, message)
        assert "planning" not in r.stderr, what  # refused before any work
    with read_only_folder(tmp_path / "ro") as ro:
        r = seedopt(*plan_argv(config, ro / "out", 1))
        one_line_error(r, r"cannot write in .*ro.*: (Read-only file system|Permission denied)")
        assert "planning" not in r.stderr


def test_missing_parents_are_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    with OutputSet(out, RESULT_FILES) as outputs, outputs.writing("plan.json") as folder:
        (folder / "plan.json").write_text("{}")
    assert os.listdir(out) == ["plan.json"] and leftovers(out) == []


def test_a_folder_holding_other_files_is_not_replaced(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the physicist's notes")
    one_line_error(
        seedopt(*plan_argv(config, out, 1)), r"holds notes\.txt, which seedopt did not write"
    )
    assert os.listdir(out) == ["notes.txt"]
    one_line_error(
        seedopt(*plan_argv(config, Path("."), 1), cwd=out), r"is \(or holds\) the current folder"
    )


def test_a_full_disk_is_one_line_and_the_previous_set_is_kept(
    case: CrashCase, tmp_path: Path
) -> None:
    """A 600 kB disk holding a set (240 kB) and filler, so that the disk fills while writing
    dose.h5 (HDF5 crashes the process when it meets a failed write itself), or a figure."""
    failed_at = set()
    for filler_kb in (320, 200):
        with mounted_tmpfs(tmp_path / f"small{filler_kb}", "size=600k") as disk:
            out = disk / "out"
            shutil.copytree(case.folders[1], out)
            (disk / "filler").write_bytes(b"\0" * (filler_kb << 10))
            r = seedopt(*plan_argv(case.config, out, 2))
            where = re.escape(str(out))
            fails_after_work(
                r,
                rf"cannot write \S+ in {where}: No space left on device; {where} is left as it was",
            )
            failed_at.add(r.stderr.split("cannot write ")[1].split()[0])
            assert fingerprint(out) == case.sets[1]
            assert leftovers(out) == []
    assert "dose.h5" in failed_at and len(failed_at) >= 2, failed_at


def test_a_cache_that_cannot_be_written_is_a_note_not_a_lost_plan(
    case: CrashCase, tmp_path: Path
) -> None:
    config, sets = case.config, case.sets
    (tmp_path / "file").write_text("x")
    out = tmp_path / "out"
    r = seedopt(*plan_argv(config, out, 1, cache=tmp_path / "file" / "cache"))
    assert r.returncode == 0, r.stderr
    notes = [
        ln for ln in r.stderr.splitlines() if ln.startswith("seedopt: note: ") and "cache" in ln
    ]
    assert len(notes) == 1 and "cannot write the dose-matrix cache entry" in notes[0], r.stderr
    assert "Traceback" not in r.stderr
    assert fingerprint(out) == sets[1]


def test_evaluate_replaces_its_folder_as_a_whole_and_checks_it_first(
    case: CrashCase, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(case.folders[1], out)
    plan = json.loads((out / "plan.json").read_text())
    seeds = [s for n in plan["needles"] for s in n["seeds_mm"]]
    csv = tmp_path / "seeds.csv"
    csv.write_text(
        "x_mm,y_mm,z_mm,ux,uy,uz\n" + "".join(f"{x},{y},{z},0,1,0\n" for x, y, z in seeds)
    )
    strength = str(plan["source"]["air_kerma_strength_u"])

    def evaluate(into: Path) -> subprocess.CompletedProcess[str]:
        return seedopt(
            *("evaluate", str(case.config), "--seeds", str(csv), "--out", str(into)),
            *("--plan", str(out), "--strength-u", strength, "--backend", "cpu"),
        )

    r = evaluate(out)
    assert r.returncode == 0, r.stderr
    assert os.listdir(out) == ["metrics.json"]  # no plan files of another run left beside it
    assert "pre_plan" in json.loads((out / "metrics.json").read_text())
    one_line_error(evaluate(out / "metrics.json" / "x"), r"metrics\.json is a file, not a folder")


def test_a_folder_in_use_by_this_process_is_refused_too(tmp_path: Path) -> None:
    """POSIX locks do not keep a process from itself; seedopt does."""
    out = tmp_path / "out"
    with pytest.raises(SeedoptError, match="in use by another seedopt run \\(this process\\)"):
        with OutputSet(out, RESULT_FILES), OutputSet(out, RESULT_FILES):
            pass
    assert leftovers(out) == []


def test_temporaries_of_an_older_killed_run_inside_the_folder_go_with_the_old_set(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.json").write_text("{}")
    (out / ".dvh.png.tmp-12345").write_bytes(b"\x89PNG partial")  # per-file temporary, killed
    with OutputSet(out, RESULT_FILES) as outputs, outputs.writing("plan.json") as folder:
        (folder / "plan.json").write_text('{"new": true}')
    assert os.listdir(out) == ["plan.json"] and leftovers(out) == []
    assert json.loads((out / "plan.json").read_text()) == {"new": True}


def test_study_hdf5_files_on_a_full_disk_are_an_error_and_leave_nothing(tmp_path: Path) -> None:
    """A batch part, the assembled results.h5 and escalate's table on a full disk (a 64 kB
    tmpfs; root only): an OSError (the commands make it one line) and no file, partial or
    temporary, left; built in memory, HDF5 never meets the failed write (it crashed the
    process on a full disk)."""
    import numpy as np
    import pandas as pd

    from seedopt.errors import SeedoptError
    from seedopt.studies.escalate import write_table
    from seedopt.studies.results import assemble, write_part

    big = np.random.default_rng(0).random(40_000)  # 320 kB, incompressible (gzip: dose_gy)
    record = {"attrs": {"key": "case__base"}, "arrays": {"dose_gy": big.astype(np.float32)}}
    with mounted_tmpfs(tmp_path / "small", "size=64k") as disk:
        with pytest.raises(OSError, match="No space left"):
            write_part(disk / "parts", record)
        with pytest.raises(OSError, match="No space left"):
            assemble(disk / "results.h5", [record])
        table = pd.DataFrame({"rx_gy": big, "d90_gy": big})
        with pytest.raises(SeedoptError, match="No space left"):
            write_table(table, disk / "esc", {"case": "c"})
        assert [p.name for p in disk.rglob("*") if p.is_file()] == []


def test_stale_temporaries_are_told_by_their_writers_pid_and_name(tmp_path: Path) -> None:
    """``remove_stale_temporaries`` (the cache's and the batch runner's cleanup) reads the
    writer's pid from ``.NAME.tmp-PID-TOKEN``, even when the token is all digits, and with a
    name removes only that file's temporaries."""
    from seedopt.atomic import remove_stale_temporaries

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    mine = tmp_path / f".results.h5.tmp-{ended.pid}-12345678"
    other = tmp_path / f".notes.h5.tmp-{ended.pid}-0123abcd"
    live = tmp_path / f".results.h5.tmp-{os.getpid()}-0123abcd"
    for path in (mine, other, live):
        path.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path, "results.h5") == [mine]
    assert other.exists() and live.exists()
    assert remove_stale_temporaries(tmp_path) == [other]
    assert live.exists()
