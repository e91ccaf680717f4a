"""The watchdog of a local Ray session (``ray_session.local_ray``), and the cleanup it does.

Run as ``python -P ray_watchdog.py FOLDER DRIVER_PID`` with a pipe from the driver on
stdin: when the pipe closes (the driver ended, however), every process of the session (it
carries ``SEEDOPT_RAY_SESSION=FOLDER`` in its environment, or holds a file in FOLDER open)
is stopped and FOLDER removed. Standard library only, so the watchdog starts at once and
imports nothing of seedopt.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

MARKER = "SEEDOPT_RAY_SESSION"
"""Environment variable naming the session folder, inherited by every process of a local Ray."""


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def session_processes(folder: Path, spare: tuple[int, ...] = ()) -> list[int]:
    """The pids of this user's processes of a local Ray session: those that carry
    ``folder`` as their session marker, or hold a file in it open (every Ray process writes
    its log there; a process title set by Ray can overwrite the environment ``/proc``
    shows), but not this process nor those in ``spare``. Linux; an empty list where there
    is no ``/proc``."""
    wanted = f"{MARKER}={folder}".encode() + b"\0"
    inside = f"{folder}/"
    pids = []
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), *spare):
            continue
        try:
            marked = wanted in (entry / "environ").read_bytes()
            if not marked:
                fds = (entry / "fd").iterdir()
                marked = any(_link(fd).startswith(inside) for fd in fds)
        except OSError:  # gone, or another user's
            continue
        if marked:
            pids.append(int(entry.name))
    return pids


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def end_session(folder: Path, spare: tuple[int, ...] = (), grace_s: float = 1.0) -> None:
    """Stop every process of a local Ray session but ``spare`` (SIGTERM, then SIGKILL after
    ``grace_s`` seconds) and remove its folder."""
    pids = session_processes(folder, spare)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            pids = running(pids)
            if not pids:
                break
            time.sleep(0.1)
        if not pids:
            break
    shutil.rmtree(folder, ignore_errors=True)


def running(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie has ended: it only waits to be reaped)."""
    return [p for p in pids if alive(p) and not _zombie(p)]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _watch(folder: Path, driver: int) -> None:
    """The watchdog: wait for the pipe from ``driver`` to close, then end the session (the
    driver itself, which holds Ray's log files open, is spared while it lives)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()
    end_session(folder, spare=(driver,))


if __name__ == "__main__":
    _watch(Path(sys.argv[1]), int(sys.argv[2]))
