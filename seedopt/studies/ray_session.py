"""The Ray a batch runs on: an embedded local Ray that seedopt starts and always cleans up,
or an existing cluster joined within a bounded time.

*Local Ray.* ``ray.init`` starts a head node (GCS, raylet, agents, workers) whose files go
under a short session folder ``$TMPDIR/seedopt-ray-<driver pid>-<random>/`` (Ray's
``_temp_dir``; short because Ray's Unix sockets live inside it and a socket path has at most
107 bytes). Every process of that Ray inherits the environment variable
``SEEDOPT_RAY_SESSION=<folder>`` and writes its log in the folder. A watchdog process
(``ray_watchdog``: its own session, reading a pipe from the driver) waits for the driver to
end, however it ends (return, exception, signal, SIGKILL), then stops every process of the
session but the driver and removes the folder. A session folder whose driver is gone (its
watchdog was killed too) is cleaned by the next batch. Finding the processes needs Linux's
``/proc``; elsewhere only Ray's own fate sharing stops them and the folder is removed.

*A cluster* (``address``) is first joined by a probe process killed after ``timeout_s``
seconds, so an unreachable or silent address fails in bounded time instead of Ray's
retries (about 40 s each, twenty of them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import SeedoptError
from . import ray_watchdog
from .ray_watchdog import MARKER, alive, end_session

PREFIX = "seedopt-ray-"
SOCKET_PATH_MAX = 107
"""The longest Unix socket path (bytes, Linux ``sun_path`` less its NUL)."""
RAY_SOCKET_TAIL = len("/session_2026-12-01_23-59-59_999999_4194304/sockets/plasma_store")
"""What Ray appends to its ``_temp_dir`` for its longest socket path."""
DEFAULT_CONNECT_TIMEOUT_S = 30.0

_PROBE = """
import sys
import ray
try:
    ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    print("CPU", ray.cluster_resources().get("CPU", 0))
except BaseException as exc:
    print("ERROR", type(exc).__name__ + ": " + (str(exc).strip().splitlines() or [""])[0])
    sys.exit(1)
"""


@contextmanager
def ray_session(
    address: str | None, workers: int | None, connect_timeout_s: float
) -> Iterator[None]:
    """Ray for the block: the session's Ray if one is initialised (left running), else the
    cluster at ``address``, else an embedded local one with ``workers`` CPUs (default: every
    core); joined or started here, it is shut down at the end of the block."""
    import ray

    if ray.is_initialized():
        yield
    elif address:
        join_cluster(address, connect_timeout_s)
        try:
            yield
        finally:
            ray.shutdown()
    else:
        with local_ray(workers):
            yield


def join_cluster(address: str, timeout_s: float) -> None:
    """Connect to the Ray cluster at ``address``; a cluster that does not answer within
    ``timeout_s`` seconds, or refuses, is one error naming it."""
    import ray

    why = probe_cluster(address, timeout_s)
    if why is not None:
        raise SeedoptError(f"cannot join the Ray cluster at {address}: {why}")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SeedoptError(f"cannot join the Ray cluster at {address}: {exc}") from None


def probe_cluster(address: str, timeout_s: float) -> str | None:
    """Why a driver cannot join ``address`` (tried in a child process given ``timeout_s``
    seconds), or None when it can."""
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE, address],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout_s:g} s (--connect-timeout-s)"
    lines = probe.stdout.strip().splitlines()
    if probe.returncode == 0 and lines and lines[-1].startswith("CPU "):
        return None
    if lines and lines[-1].startswith("ERROR "):
        return lines[-1].removeprefix("ERROR ")
    return f"the probe process ended with exit code {probe.returncode}"


@contextmanager
def local_ray(workers: int | None) -> Iterator[Path]:
    """An embedded local Ray with ``workers`` CPUs, its files under a session folder that
    is removed, and its processes stopped, however the driver ends (module docstring)."""
    import ray

    clean_stale_sessions()
    folder = new_session_folder()
    watchdog = start_watchdog(folder)
    previous = os.environ.get(MARKER)
    os.environ[MARKER] = str(folder)
    try:
        try:
            ray.init(
                address="local",  # a new Ray, whatever RAY_ADDRESS says
                num_cpus=workers or os.cpu_count(),
                object_store_memory=512 * 2**20,
                _temp_dir=str(folder),
                include_dashboard=False,
                log_to_driver=False,
            )
        except Exception as exc:  # Ray raises many kinds; none is the user's input
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SeedoptError(f"cannot start a local Ray in {folder}: {first}") from None
        yield folder
    finally:
        try:
            ray.shutdown()
        finally:
            if previous is None:
                os.environ.pop(MARKER, None)
            else:
                os.environ[MARKER] = previous
            assert watchdog.stdin is not None
            watchdog.stdin.close()  # the watchdog cleans up now
            try:
                watchdog.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass  # it goes on alone; the next batch cleans what is left


def start_watchdog(folder: Path) -> subprocess.Popen[bytes]:
    """The watchdog of ``folder`` for this process (``ray_watchdog``): it ends the session
    when its stdin, a pipe only this process holds, closes."""
    return subprocess.Popen(
        [sys.executable, "-P", ray_watchdog.__file__, str(folder), str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def sessions_root() -> Path:
    """Where session folders go: the system temporary folder, or /tmp when that path is
    too long for Ray's sockets."""
    root = Path(tempfile.gettempdir())
    room = SOCKET_PATH_MAX - RAY_SOCKET_TAIL - len(f"/{PREFIX}4194304-xxxxxxxx")
    if len(os.fsencode(root)) <= room:
        return root
    if Path("/tmp").is_dir() and os.access("/tmp", os.W_OK):
        return Path("/tmp")
    raise SeedoptError(
        f"the temporary folder {root} is too long a path for Ray's sockets "
        f"(at most {room} bytes); set TMPDIR to a shorter folder"
    )


def new_session_folder() -> Path:
    """A fresh session folder named for this driver's pid."""
    try:
        folder = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=sessions_root())
    except OSError as exc:
        raise SeedoptError(f"cannot create Ray's session folder: {exc}") from None
    return Path(folder).resolve()


def clean_stale_sessions() -> list[Path]:
    """End the session folders of drivers that are gone (those the watchdog could not
    clean); returns them."""
    root = sessions_root()
    stale = []
    for folder in root.glob(f"{PREFIX}*-*"):
        pid = folder.name.removeprefix(PREFIX).split("-", 1)[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not alive(int(pid)):
            end_session(folder)
            stale.append(folder)
    return stale


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    """In the block, SIGTERM, SIGHUP and SIGINT end the block with ``SystemExit(128 +
    signal)``, so ``finally`` blocks (Ray's shutdown, temporary files) run, whatever Ray
    makes of the interrupted call (it raises ``SystemExit(1)`` from ``ray.wait``). Main
    thread only (no effect elsewhere); enter it after ``ray.init``, whose own handler would
    end the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def exit_on(signum: int, frame: Any) -> None:
        received.append(signum)
        raise SystemExit(128 + signum)

    signals = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    previous = {s: signal.signal(s, exit_on) for s in signals}
    try:
        yield
    except BaseException:
        if received:
            raise SystemExit(128 + received[0]) from None
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
