"""CUDA kernel for the TG-43 dose-influence matrix.

Reference twin: ``seedopt.dose.influence.reference_block`` (the pure-array path that the
CPU backend runs); ``tests/test_kernels.py`` compares them on random points and
orientations. The CUDA source lives beside this file (``tg43_influence.cu``); it is compiled
lazily with NVRTC on first use, once per device and output type, and cached by CuPy.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Any

import numpy as np

from seedopt.dose.tg43 import TG43Tables, device_tables

BLOCK = 256
MAX_GRID_Y = 65535
_OUT_TYPES = {"float32": "float", "float16": "__half"}
COMPILE_OPTIONS = ("--std=c++14", "--fmad=false")
"""No FMA contraction, so the kernel rounds like the NumPy reference."""


def cuda_source() -> str:
    """The kernel's CUDA C++ source."""
    return resources.files("seedopt.kernels").joinpath("tg43_influence.cu").read_text()


@functools.cache
def _module(device_id: int) -> Any:
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.RawModule(
            code=cuda_source(),
            options=COMPILE_OPTIONS,
            name_expressions=[f"tg43_influence<{t}>" for t in _OUT_TYPES.values()],
        )


def kernel_params(t: TG43Tables, scale: float, cutoff_cm: float | None) -> np.ndarray:
    """The float parameters the kernel reads, in the order of its ``enum Param``."""
    return np.array(
        [
            t.dose_rate_constant / t.G0,
            t.active_length_cm,
            t.active_length_cm**2 / 4.0,
            t.gL.x0,
            1.0 / t.gL.dx,
            t.gL_r_max_cm,
            t.gL_log_slope_per_cm,
            t.F.x0,
            1.0 / t.F.dx,
            180.0 / (math.pi * t.F_dtheta_deg),
            t.phi_an.x0,
            1.0 / t.phi_an.dx,
            scale,
            -1.0 if cutoff_cm is None else cutoff_cm * cutoff_cm,
        ],
        dtype=np.float32,
    )


def influence_dense_cuda(
    points_cm: Any,
    seeds_cm: Any,
    axes: Any,
    t: TG43Tables,
    scale: float,
    formalism: str,
    cutoff_cm: float | None,
    storage: str,
) -> Any:
    """Dense influence block on the current CUDA device, shape (n_points, n_seeds).

    Inputs are CuPy float32 arrays in cm: points (n_points, 3), seeds and unit axes
    (3, n_seeds); ``scale`` turns cGy/h/U into the output's unit; ``storage`` is
    ``"float32"`` or ``"float16"``.
    """
    import cupy

    n, m = int(points_cm.shape[0]), int(seeds_cm.shape[1])
    out = cupy.empty((n, m), dtype=storage)
    if n == 0 or m == 0:
        return out
    tables = device_tables(cupy, t, cupy.float32)
    params = cupy.asarray(kernel_params(t, scale, cutoff_cm))
    kernel = _module(cupy.cuda.Device().id).get_function(f"tg43_influence<{_OUT_TYPES[storage]}>")
    grid = ((m + BLOCK - 1) // BLOCK, min(n, MAX_GRID_Y))
    kernel(
        grid,
        (BLOCK,),
        (
            cupy.ascontiguousarray(points_cm, dtype=cupy.float32),
            cupy.ascontiguousarray(seeds_cm, dtype=cupy.float32),
            cupy.ascontiguousarray(axes, dtype=cupy.float32),
            *tables,
            params,
            np.int32(t.gL.n),
            np.int32(t.F.n),
            np.int32(t.F.values.shape[0]),
            np.int32(t.phi_an.n),
            np.int32(formalism == "2d"),
            np.int64(n),
            np.int32(m),
            out,
        ),
    )
    return out
