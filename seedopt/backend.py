"""Array backends: NumPy on the CPU, CuPy on a CUDA GPU. Chosen once, at the entry point."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import BackendUnavailableError, SeedoptError

BackendName = Literal["auto", "cpu", "gpu"]
BACKENDS: tuple[str, ...] = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Backend:
    """An array module plus what the user is told about it.

    Attributes
    ----------
    name : ``"cpu"`` or ``"gpu"``.
    xp : ``numpy`` or ``cupy``.
    description : one line naming the device.
    threads : worker threads for tiled CPU work (1 on the GPU).
    """

    name: str
    xp: Any
    description: str
    threads: int = 1

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy to host memory (no-op on the CPU)."""
        return a.get() if self.is_gpu else np.asarray(a)

    def synchronize(self) -> None:
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def free_bytes(self) -> int:
        """Memory this backend can still allocate, bytes (device memory on the GPU)."""
        return free_bytes(self.xp)


def free_bytes(xp: Any) -> int:
    """Memory the array module ``xp`` can still allocate, bytes: free device memory plus
    CuPy's pooled free blocks for CuPy, available host memory for NumPy."""
    if xp is not np:
        free, _ = xp.cuda.Device().mem_info
        return int(free + xp.get_default_memory_pool().free_bytes())
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def out_of_memory_errors(xp: Any) -> tuple[type[BaseException], ...]:
    """The exceptions an allocation in ``xp`` raises when memory runs out."""
    if xp is np:
        return (MemoryError,)
    return (MemoryError, xp.cuda.memory.OutOfMemoryError)


def array_module(a: Any) -> Any:
    """``numpy`` or ``cupy``: the module of array ``a`` (CuPy is imported only for its own
    arrays, so NumPy work never pays for a failed import)."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def gpu_unavailable_reason() -> str | None:
    """Why the GPU backend cannot run here, or ``None`` when it can."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'seedopt[gpu]' or 'seedopt[gpu-cuda13]')"
    except Exception as exc:  # a broken CUDA install can raise anything at import
        return f"CuPy failed to import: {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no CUDA device answers ({exc})"
    if count == 0:
        return "no CUDA device found"
    try:
        cupy.arange(4).sum().item()
    except Exception as exc:
        return f"the CUDA device does not run a kernel ({exc})"
    return None


def _gpu_backend() -> Backend:
    import cupy

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    free, total = dev.mem_info
    desc = f"GPU {dev.id}: {name}, {total / 2**30:.0f} GiB, CuPy {cupy.__version__}"
    return Backend("gpu", cupy, desc, threads=1)


def cpu_backend(threads: int | None = None) -> Backend:
    """NumPy backend using ``threads`` worker threads (default: every CPU of this process)."""
    n = threads or len(os.sched_getaffinity(0))
    return Backend("cpu", np, f"CPU: NumPy {np.__version__}, {n} threads", threads=n)


def select_backend(request: str = "auto") -> tuple[Backend, str]:
    """The backend for ``request`` and a one-line message saying which was taken and why.

    ``auto`` takes the GPU when CuPy imports and a device answers, else the CPU.
    ``gpu`` raises ``BackendUnavailableError`` saying why when no GPU is usable.
    """
    if request not in BACKENDS:
        raise SeedoptError(f"unknown backend {request!r}; choose one of {', '.join(BACKENDS)}")
    if request == "cpu":
        b = cpu_backend()
        return b, f"backend: cpu ({b.description}; requested)"
    reason = gpu_unavailable_reason()
    if reason is None:
        b = _gpu_backend()
        return b, f"backend: gpu ({b.description})"
    if request == "gpu":
        raise BackendUnavailableError(f"--backend gpu cannot run here: {reason}")
    b = cpu_backend()
    return b, f"backend: cpu ({b.description}; no GPU used: {reason})"
