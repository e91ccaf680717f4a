"""The cleanup of a local Ray session without Ray: the watchdog and the next batch stop the
processes of a session folder (found by an open file in it or by their environment) and
remove it, sparing the driver; session folders are short enough for Ray's sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from seedopt.studies import ray_session
from seedopt.studies.ray_session import (
    RAY_SOCKET_TAIL,
    SOCKET_PATH_MAX,
    clean_stale_sessions,
    new_session_folder,
    sessions_root,
    start_watchdog,
)
from seedopt.studies.ray_watchdog import MARKER, running, session_processes

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")


def sleeper(folder: Path, marked: bool = False) -> subprocess.Popen[bytes]:
    """A process of the session: it writes its output in ``folder`` (as Ray's do), or
    carries the session marker in its environment (``marked``)."""
    if marked:
        env = {**os.environ, MARKER: str(folder)}
        return subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL, env=env)
    with (folder / "worker.out").open("ab") as log:
        return subprocess.Popen(["sleep", "60"], stdout=log)


def ended(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> bool:
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


@pytest.fixture
def folder():
    path = new_session_folder()
    procs: list[subprocess.Popen[bytes]] = []
    yield path, procs
    for proc in procs:
        proc.kill()
        proc.wait()
    if path.exists():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()


def test_session_processes_are_found_by_open_file_and_by_marker(folder) -> None:
    path, procs = folder
    procs += [sleeper(path), sleeper(path, marked=True)]
    other = subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL)
    procs.append(other)
    time.sleep(0.2)
    found = session_processes(path)
    assert sorted(found) == sorted(p.pid for p in procs[:2])


def test_the_watchdog_ends_the_session_when_its_driver_goes(folder) -> None:
    """The driver's end (here: the pipe closed) stops the session's processes and removes
    the folder; the driver itself, which holds the pipe and Ray's logs, is spared."""
    path, procs = folder
    procs += [sleeper(path), sleeper(path, marked=True)]
    driver_log = (path / "driver.log").open("wb")  # this process holds a file there too
    watchdog = start_watchdog(path)
    time.sleep(0.2)
    assert watchdog.poll() is None and path.exists()
    watchdog.stdin.close()
    assert ended(watchdog) and all(ended(p) for p in procs[:2])
    assert not path.exists()
    driver_log.close()


def test_a_stale_session_of_a_dead_driver_is_cleaned_by_the_next_batch(folder) -> None:
    path, procs = folder
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(tempfile.mkdtemp(prefix=f"seedopt-ray-{dead.pid}-", dir=sessions_root()))
    procs += [sleeper(stale)]
    assert clean_stale_sessions() == [stale]
    assert ended(procs[0]) and not stale.exists()
    assert path.exists()  # this driver's own session (alive) is left alone
    assert not running([procs[0].pid])


def test_session_folders_leave_room_for_rays_socket_paths(monkeypatch) -> None:
    path = new_session_folder()
    path.rmdir()
    assert len(os.fsencode(path)) + RAY_SOCKET_TAIL <= SOCKET_PATH_MAX
    monkeypatch.setattr(tempfile, "tempdir", "/tmp/" + "x" * 80)
    assert ray_session.sessions_root() == Path("/tmp")
