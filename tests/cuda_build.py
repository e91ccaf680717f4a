"""Build seedopt's CUDA sources for the tests without a GPU: to PTX with nvcc (does it
compile?) and, with a host launcher from ``tests/cuda_host``, to a host library run thread by
thread (does it compute what its pure-array reference computes?)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

HOST = Path(__file__).parent / "cuda_host"
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")


def ptx_entries(source: str, options: tuple[str, ...], tmp_path: Path) -> int:
    """Compile ``source`` to PTX with warnings as errors; the number of kernel entries."""
    src, ptx = tmp_path / "k.cu", tmp_path / "k.ptx"
    src.write_text(source)
    flags = [o.replace("--fmad", "-fmad") for o in options]
    r = subprocess.run(
        ["nvcc", *flags, "-Werror", "all-warnings", "-ptx", str(src), "-o", str(ptx)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return ptx.read_text().count(".entry")


def host_library(kernel: Path, launcher: str, out_dir: Path) -> ctypes.CDLL:
    """``kernel`` compiled as host C++ with ``tests/cuda_host/<launcher>`` (no FMA
    contraction, like the device build)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    lib = out_dir / f"lib{Path(launcher).stem}.so"
    r = subprocess.run(
        [
            "g++",
            "-O1",
            "-ffp-contract=off",
            "-shared",
            "-fPIC",
            f"-I{HOST}",
            f'-DKERNEL_SOURCE="{kernel}"',
            str(HOST / launcher),
            "-o",
            str(lib),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return ctypes.CDLL(str(lib))
