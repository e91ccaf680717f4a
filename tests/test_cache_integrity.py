"""The dose-matrix cache is verified before use. An entry damaged in any of five ways
(truncated, random bytes, scaled values, wrong shape, a NaN) is never used: the matrix is
recomputed with a note naming what was wrong, the plan is the one an undamaged cache gives,
and the entry is rewritten. Entries are written durably (flushed before the rename, the
folder flushed after); a cache that cannot be written is a note, never a lost plan."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from study_cases import tiny_config

from seedopt.backend import cpu_backend
from seedopt.dose.cache import DATASET, matrix_digest, read_entry
from seedopt.notes import Note
from seedopt.plan_config import load_plan_spec
from seedopt.planning import Plan, plan_case


def plan(config: Path, cache: Path) -> Plan:
    return plan_case(load_plan_spec(config), cpu_backend(), cache_dir=cache)


def entry_of(cache: Path) -> Path:
    (entry,) = cache.glob("*.h5")
    return entry


def same_plan(a: Plan, b: Plan) -> None:
    np.testing.assert_array_equal(a.result.x, b.result.x)
    np.testing.assert_array_equal(a.dose_gy, b.dose_gy)
    assert a.metrics.to_json()["structures"] == b.metrics.to_json()["structures"]


@pytest.fixture(scope="module")
def undamaged(tmp_path_factory) -> tuple[Path, Path, Plan]:
    """The tiny case, a cache holding its matrix, and its plan from that cache."""
    tmp = tmp_path_factory.mktemp("cache")
    config, cache = tiny_config(tmp, "cached"), tmp / "cache"
    first = plan(config, cache)
    assert not first.metrics.optimizer.dose_matrix_cached
    again = plan(config, cache)
    assert again.metrics.optimizer.dose_matrix_cached
    same_plan(first, again)
    return config, cache, again


def truncate(entry: Path) -> None:
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])


def random_bytes(entry: Path) -> None:
    entry.write_bytes(np.random.default_rng(0).bytes(entry.stat().st_size))


def halve_values(entry: Path) -> None:
    """A halved matrix would plan twice the prescription; the checksum is left as it was."""
    with h5py.File(entry, "r+") as f:
        f[DATASET][...] = f[DATASET][()] * 0.5


def _rewrite(entry: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace the matrix by ``change(matrix)`` with a checksum that matches it, so only the
    check this damage is for can catch it."""
    with h5py.File(entry, "r+") as f:
        a = change(f[DATASET][()])
        del f[DATASET]
        f.create_dataset(DATASET, data=a)
        f.attrs["blake2b"] = matrix_digest(a)


def drop_a_row(entry: Path) -> None:
    _rewrite(entry, lambda a: a[:-1])


def put_a_nan(entry: Path) -> None:
    def nan(a: np.ndarray) -> np.ndarray:
        a[len(a) // 2, 0] = np.nan
        return a

    _rewrite(entry, nan)


DAMAGES = {
    "truncated": (truncate, r"cannot be read \(.*truncated file.*\)"),
    "random bytes": (random_bytes, r"cannot be read \(.*signature not found.*\)"),
    "scaled values": (halve_values, r"does not match its checksum"),
    "wrong shape": (drop_a_row, r"holds a \d+ x \d+ matrix where \d+ x \d+ is expected"),
    "a NaN": (put_a_nan, r"holds values that are not finite or are negative"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_entry_is_recomputed_with_a_note_and_gives_the_same_plan(
    undamaged, tmp_path: Path, damage: str
) -> None:
    config, good_cache, good = undamaged
    cache = tmp_path / "cache"
    cache.mkdir()
    entry = cache / entry_of(good_cache).name
    entry.write_bytes(entry_of(good_cache).read_bytes())
    spoil, reason = DAMAGES[damage]
    spoil(entry)
    with pytest.warns(Note, match=rf"cache entry .* cannot be used: it {reason}; recomputing"):
        recomputed = plan(config, cache)
    assert not recomputed.metrics.optimizer.dose_matrix_cached
    same_plan(recomputed, good)
    # the entry was rewritten, verifies, and serves the next plan without a note
    with h5py.File(entry) as f:
        shape, dtype = f[DATASET].shape, f[DATASET].dtype
    read_entry(entry, entry.stem, shape, dtype)
    again = plan(config, cache)
    assert again.metrics.optimizer.dose_matrix_cached
    same_plan(again, good)


def test_an_entry_of_another_key_or_without_a_checksum_is_not_used(
    undamaged, tmp_path: Path
) -> None:
    config, good_cache, good = undamaged
    cache = tmp_path / "cache"
    cache.mkdir()
    entry = cache / entry_of(good_cache).name
    entry.write_bytes(entry_of(good_cache).read_bytes())
    with h5py.File(entry, "r+") as f:
        f.attrs["key"] = "0" * 24
    with pytest.warns(Note, match=r"it belongs to key 0{24}"):
        same_plan(plan(config, cache), good)
    with h5py.File(entry, "r+") as f:
        del f.attrs["blake2b"]
    with pytest.warns(Note, match=r"has no key or checksum \(an older seedopt wrote it\)"):
        same_plan(plan(config, cache), good)


def test_the_command_line_says_so_in_one_note_and_plans_the_same(undamaged, tmp_path: Path) -> None:
    config, good_cache, good = undamaged
    cache = tmp_path / "cache"
    cache.mkdir()
    entry = cache / entry_of(good_cache).name
    entry.write_bytes(entry_of(good_cache).read_bytes())
    halve_values(entry)
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "seedopt", "plan", str(config), "--backend", "cpu"]
        + ["--out", str(out), "--cache", str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    notes = [
        ln for ln in r.stderr.splitlines() if ln.startswith("seedopt: note: ") and "cache" in ln
    ]
    assert notes == [
        f"seedopt: note: dose-matrix cache entry {entry} cannot be used: it does not match "
        "its checksum; recomputing it"
    ], r.stderr
    planned = json.loads((out / "plan.json").read_text())
    seeds = np.array([s for n in planned["needles"] for s in n["seeds_mm"]])
    np.testing.assert_allclose(np.sort(seeds, 0), np.sort(good.seeds_mm, 0), atol=1e-3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["structures"]["GTV"]["D90_gy"] == pytest.approx(
        good.metrics.structures["GTV"]["D90_gy"], rel=1e-6
    )


def test_an_entry_is_flushed_before_its_rename_and_its_folder_after(
    undamaged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _, good = undamaged
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recording_replace(src, dst) -> None:
        events.append(("replace", str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    cache = tmp_path / "cache"
    same_plan(plan(config, cache), good)
    entry = str(entry_of(cache))
    k = events.index(("replace", entry))
    assert events[k - 1][0] == "fsync" and ".tmp-" in events[k - 1][1]  # the file's data
    assert events[k + 1] == ("fsync", str(cache))  # then its name


def test_a_cache_that_cannot_be_written_is_a_note_and_the_plan_goes_on(
    undamaged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (fsync answering ENOSPC) while writing an entry; and a cache folder that
    would lie under a regular file."""
    config, _, good = undamaged
    fsync = os.fsync

    def full(fd: int) -> None:
        if ".tmp-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    cache = tmp_path / "cache"
    with pytest.warns(Note, match=r"cannot write the dose-matrix cache entry .*No space left"):
        same_plan(plan(config, cache), good)
    assert os.listdir(cache) == []  # no partial entry, no temporary left
    monkeypatch.setattr(os, "fsync", fsync)
    (tmp_path / "file").write_text("x")
    with pytest.warns(Note, match=r"cannot write .*file/cache/.* \(Not a directory\)"):
        same_plan(plan(config, tmp_path / "file" / "cache"), good)


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(
    undamaged, tmp_path: Path
) -> None:
    config, _, good = undamaged
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / f".abc.h5.tmp-{ended.pid}-0123abcd"
    live = cache / f".abc.h5.tmp-{os.getpid()}-0123abcd"
    for path in (stale, live):
        path.write_bytes(b"partial")
    same_plan(plan(config, cache), good)
    assert not stale.exists() and live.exists()


def test_a_full_disk_under_the_cache_is_a_note_and_leaves_no_partial_entry(
    undamaged, tmp_path: Path
) -> None:
    """A real full disk (a 64 kB tmpfs; root only) under a cache whose entry is 230 kB: the
    entry is not attempted (HDF5 does not survive a failed write)."""
    from test_crash_outputs import mounted_tmpfs

    config, _, good = undamaged
    with mounted_tmpfs(tmp_path / "tiny", "size=64k") as disk:
        with pytest.warns(Note, match=r"cannot write .* \(it needs .* MB are free\); going on"):
            same_plan(plan(config, disk / "cache"), good)
        assert os.listdir(disk / "cache") == []
