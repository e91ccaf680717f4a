"""`seedopt batch --address` on a Ray cluster of two nodes on this machine (a head and a
second node, one CPU each), the second node killed mid-batch: every case ends exactly once,
nothing corrupt in results.h5.

Opt-in (25-50 s on two cores, a third of it starting Ray):
``pytest -m cluster tests/test_ray_cluster.py``. Skipped without the ``ray`` command. The
nodes get their own ports and temporary folders, and are stopped (their processes found by
those folders) however the test ends; ``ray stop`` is never run, since it would stop every
Ray of this user on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest
from study_cases import tiny_config

from seedopt.studies import read_summary
from seedopt.studies.ray_watchdog import MARKER, end_session, session_processes

pytestmark = pytest.mark.cluster

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
# one token-free cluster for the test (Ray's token mode needs the token on every node)
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(autouse=True)
def opted_in(request: pytest.FixtureRequest) -> None:
    if "cluster" not in (request.config.option.markexpr or ""):
        pytest.skip("opt-in, 25-50 s: pytest -m cluster tests/test_ray_cluster.py")
    if not Path(RAY).exists():
        pytest.skip("the ray command is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    folder: Path  # the node's Ray temporary folder: its processes hold files in it open

    def processes(self) -> list[int]:
        return session_processes(self.folder)

    def raylet(self) -> int:
        (pid,) = [p for p in self.processes() if b"raylet" in _cmdline(p).split(b" ")[0]]
        return pid

    def kill(self) -> None:
        """The node crashes: SIGKILL to every process of it at once."""
        for pid in self.processes():
            os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def start_node(*args: str) -> Node:
    folder = Path(tempfile.mkdtemp(prefix="seedopt-cl-", dir="/tmp"))
    node = Node(folder)
    env = {**ENV, MARKER: str(folder)}
    ports = [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    try:
        subprocess.run(
            [RAY, "start", *args, "--num-cpus=1", f"--temp-dir={folder}", *ports],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    except BaseException:
        end_session(folder)
        raise
    return node


@pytest.fixture
def cluster() -> Iterator[tuple[str, Node, Node]]:
    """A head and a second node on this machine; its address and both nodes."""
    port = free_port()
    head = start_node("--head", f"--port={port}", "--include-dashboard=false")
    try:
        second = start_node(f"--address=127.0.0.1:{port}")
    except BaseException:
        end_session(head.folder)
        raise
    try:
        yield f"127.0.0.1:{port}", head, second
    finally:
        for node in (second, head):
            end_session(node.folder)


def test_a_node_killed_mid_batch_leaves_every_case_done_exactly_once(tmp_path, cluster) -> None:
    address, head, second = cluster
    configs = [tiny_config(tmp_path, n, iterations=3000) for n in "abcd"]
    out = tmp_path / "results.h5"
    driver = subprocess.Popen(
        [sys.executable, "-m", "seedopt", "batch", *map(str, configs), "--out", str(out)]
        + ["--address", address, "--backend", "cpu", "--cache", str(tmp_path / "cache")],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        raylet = second.raylet()
        running: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None:
            running = [p for p in second.processes() if _cmdline(p).startswith(b"ray::plan_task")]
            if running:
                break
            time.sleep(0.05)
        assert running, "no task reached the second node"
        (killed,) = running
        assert _parent(killed) == raylet
        second.kill()  # mid-task: the node's raylet, agents and the worker planning
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, stderr
    frame = read_summary(out)
    keys = [f"{c}__base" for c in "abcd"]
    assert sorted(frame["key"]) == keys and frame["key"].is_unique
    assert (frame["status"] == "ok").all() and (frame["D90_gy"] > 0).all()
    with h5py.File(out, "r") as f:
        assert f.attrs["n_tasks"] == 4 and sorted(f["tasks"]) == keys
        for key in keys:
            g = f["tasks"][key]
            assert g["seeds_mm"].shape == (len(g["loaded_index"]), 3)
    logs = {k: (tmp_path / "results.h5.logs" / f"{k}.log").read_text() for k in keys}
    assert not any(f"pid {killed} " in text for text in logs.values())  # planned again
    parts = tmp_path / "results.h5.parts"
    assert sorted(p.stem for p in parts.glob("*.h5")) == keys
    assert not list(parts.glob(".*"))


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[-1].split()[1])
