"""CUDA kernels for the annealer's dose updates, each beside its pure-array reference.

Every annealing step proposes, for every chain at once, new doses that differ from the
current ones by one added and/or one removed candidate column, and then keeps the proposal of
each accepted chain. With CuPy library calls that is several passes over the (chains, rows)
doses per step (a gather of each column, a product, a sum, a ``where``); the kernels in
``anneal_step.cu`` make it one pass each, the proposal writing a fresh array and the
acceptance updating the doses in place. ``step_functions`` picks the kernels for CuPy
arrays and the references otherwise; ``tests/test_anneal_kernels.py`` runs the CUDA source
on the host against the references (and on the GPU where one answers). Compiled lazily with
NVRTC on first use, once per device, and cached by CuPy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np

from seedopt.backend import array_module

BLOCK = 256
MAX_BLOCKS = 65535 * 8
_COLUMN_TYPES = {"float32": "float", "float16": "__half"}

Propose = Callable[[Any, Any, Any, Any], Any]
Accept = Callable[[Any, Any, Any], Any]


def propose_reference(dose: Any, cols: Any, add: Any, rem: Any) -> Any:
    """New (chains, rows) float64 doses: ``dose`` plus column ``add[c]`` of ``cols`` minus
    column ``rem[c]`` (each omitted where the index is negative); ``cols`` is (m, rows).
    The columns are masked in their own dtype (a product by 1 or 0 is exact) and widened in
    the sum, as the kernel widens each entry."""
    xp = array_module(dose)
    plus = cols[xp.maximum(add, 0)] * (add >= 0)[:, None].astype(cols.dtype)
    minus = cols[xp.maximum(rem, 0)] * (rem >= 0)[:, None].astype(cols.dtype)
    return dose + plus - minus


def accept_reference(dose: Any, proposed: Any, accepted: Any) -> Any:
    """``dose`` with each accepted chain's row replaced by its proposal, in place."""
    dose[accepted] = proposed[accepted]
    return dose


def cuda_source() -> str:
    """The kernels' CUDA C++ source."""
    return resources.files("seedopt.kernels").joinpath("anneal_step.cu").read_text()


@functools.cache
def _module(device_id: int) -> Any:
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.RawModule(
            code=cuda_source(),
            options=("--std=c++14",),
            name_expressions=[
                *(f"anneal_propose<{t}>" for t in _COLUMN_TYPES.values()),
                "anneal_accept",
            ],
        )


def _grid(total: int) -> tuple[int]:
    return (max(1, min((total + BLOCK - 1) // BLOCK, MAX_BLOCKS)),)


def propose_cuda(dose: Any, cols: Any, add: Any, rem: Any) -> Any:
    """``propose_reference`` as one kernel launch (CuPy arrays, float32 or float16 columns)."""
    import cupy

    chains, rows = dose.shape
    out = cupy.empty_like(dose)
    name = f"anneal_propose<{_COLUMN_TYPES[cols.dtype.name]}>"
    kernel = _module(cupy.cuda.Device().id).get_function(name)
    kernel(
        _grid(chains * rows),
        (BLOCK,),
        (
            cupy.ascontiguousarray(dose),
            cupy.ascontiguousarray(cols),
            add.astype(cupy.int64),
            rem.astype(cupy.int64),
            np.int64(chains),
            np.int64(rows),
            out,
        ),
    )
    return out


def accept_cuda(dose: Any, proposed: Any, accepted: Any) -> Any:
    """``accept_reference`` as one kernel launch, updating ``dose`` in place."""
    import cupy

    chains, rows = dose.shape
    kernel = _module(cupy.cuda.Device().id).get_function("anneal_accept")
    kernel(
        _grid(chains * rows),
        (BLOCK,),
        (dose, proposed, accepted.astype(cupy.bool_), np.int64(chains), np.int64(rows)),
    )
    return dose


def step_functions(xp: Any, use_kernels: bool | None = None) -> tuple[Propose, Accept]:
    """(propose, accept) for arrays of ``xp``: the CUDA kernels for CuPy (unless
    ``use_kernels`` is False), the pure-array references for NumPy."""
    if xp is np or use_kernels is False:
        return propose_reference, accept_reference
    return propose_cuda, accept_cuda
