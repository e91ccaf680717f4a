"""The annealer's dose-update kernels (``kernels/anneal_step.cu``) against their pure-array
references (``seedopt.kernels.anneal``): the source compiles with nvcc; run on the host
thread by thread over a grid smaller than the data, it gives the references' doses bit for
bit, in float32 and float16 columns; on a GPU the CuPy kernels do too, and an annealing run
with the kernels equals one with the references (marked ``gpu``)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
from cuda_build import host_library, needs_nvcc, ptx_entries
from seedopt.kernels import anneal as kanneal
from seedopt.optimizer import get_optimizer
from seedopt.optimizer.synthetic import RECTUM_LIMITS, synthetic_problem
from test_gpu_path import on_backend

KERNEL = Path(kanneal.__file__).with_name("anneal_step.cu")
INSTANTIATE = """
template __global__ void anneal_propose<float>(const double*, const float*, const long long*,
    const long long*, long long, long long, double*);
template __global__ void anneal_propose<__half>(const double*, const __half*, const long long*,
    const long long*, long long, long long, double*);
"""


def step_case(chains: int = 7, rows: int = 53, m: int = 11, seed: int = 0):
    """Doses, columns and moves of every kind: add only, remove only, both, none."""
    rng = np.random.default_rng(seed)
    dose = rng.uniform(0, 300, (chains, rows))
    cols = rng.uniform(0, 40, (m, rows)).astype(np.float32)
    add = rng.integers(-1, m, chains)
    rem = rng.integers(-1, m, chains)
    add[:3], rem[:3] = [-1, 3, 0], [4, -1, 0]  # index 0 is a column too
    return dose, cols, add.astype(np.int64), rem.astype(np.int64)


@needs_nvcc
def test_anneal_kernels_compile_with_nvcc(tmp_path: Path) -> None:
    assert ptx_entries(kanneal.cuda_source() + INSTANTIATE, ("--std=c++14",), tmp_path) == 3


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return host_library(KERNEL, "launch_anneal.cpp", tmp_path_factory.mktemp("anneal_host"))


def ptr(a: np.ndarray, ctype) -> ctypes._Pointer:
    return a.ctypes.data_as(ctypes.POINTER(ctype))


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_propose_run_on_the_host_equals_the_reference_bit_for_bit(host, storage: str) -> None:
    dose, cols, add, rem = step_case()
    cols = cols.astype(storage)
    out = np.full_like(dose, np.nan)
    launch = host.propose_float if storage == "float32" else host.propose_half
    launch(
        ptr(dose, ctypes.c_double),
        ptr(np.ascontiguousarray(cols, dtype=np.float32), ctypes.c_float),
        ptr(add, ctypes.c_longlong),
        ptr(rem, ctypes.c_longlong),
        ctypes.c_longlong(dose.shape[0]),
        ctypes.c_longlong(dose.shape[1]),
        ctypes.c_uint(3),  # 3 blocks of 32 threads for 371 entries: grid-stride loop
        ctypes.c_uint(32),
        ptr(out, ctypes.c_double),
    )
    ref = kanneal.propose_reference(dose, cols, add, rem)
    np.testing.assert_array_equal(out, ref)
    assert np.array_equal(ref[0], dose[0] - cols[4].astype(np.float64))  # remove only
    assert np.array_equal(ref[1], dose[1] + cols[3].astype(np.float64))  # add only


def test_accept_run_on_the_host_equals_the_reference(host) -> None:
    dose, cols, add, rem = step_case()
    proposed = kanneal.propose_reference(dose, cols, add, rem)
    accepted = np.array([True, False, True, True, False, False, True])
    ref = kanneal.accept_reference(dose.copy(), proposed, accepted)
    host.accept(
        ptr(dose, ctypes.c_double),
        ptr(proposed, ctypes.c_double),
        ptr(accepted, ctypes.c_bool),
        ctypes.c_longlong(dose.shape[0]),
        ctypes.c_longlong(dose.shape[1]),
        ctypes.c_uint(2),
        ctypes.c_uint(64),
    )
    np.testing.assert_array_equal(dose, ref)  # updated in place
    np.testing.assert_array_equal(dose[~accepted], step_case()[0][~accepted])


def test_numpy_arrays_get_the_references() -> None:
    assert kanneal.step_functions(np) == (kanneal.propose_reference, kanneal.accept_reference)


@pytest.mark.gpu
@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_gpu_kernels_equal_the_references_bit_for_bit(storage: str) -> None:
    import cupy

    dose, cols, add, rem = (cupy.asarray(a) for a in step_case(chains=64, rows=5000, m=40))
    cols = cols.astype(storage)
    proposed = kanneal.propose_cuda(dose, cols, add, rem)
    cupy.testing.assert_array_equal(proposed, kanneal.propose_reference(dose, cols, add, rem))
    accepted = cupy.arange(64) % 3 == 0
    ref = kanneal.accept_reference(dose.copy(), proposed, accepted)
    cupy.testing.assert_array_equal(kanneal.accept_cuda(dose.copy(), proposed, accepted), ref)


@pytest.mark.gpu
def test_gpu_annealing_with_the_kernels_equals_annealing_without() -> None:
    from seedopt.backend import select_backend

    host = synthetic_problem(2, RECTUM_LIMITS, needles=6, per_needle=6)
    problem = on_backend(host, select_backend("gpu")[0])
    runs = [
        get_optimizer("anneal").solve(problem, rng=4, iterations=400, use_kernels=flag)
        for flag in (True, False)
    ]
    assert np.array_equal(runs[0].x, runs[1].x)
    np.testing.assert_array_equal(runs[0].extra["trace"], runs[1].extra["trace"])
