"""The fused annealing step (``kernels/anneal_fused.cu``) against the pure-array reference step.

The CUDA source compiles with nvcc. Compiled as C++ and run on the host thread by thread, over
grids smaller than the work, and driven by the same ``FusedStep`` the GPU uses, a whole
annealing run gives the reference run's loadings, objectives and trace bit for bit: with
organ limits of every kind the kernels take (Dmax, D{v}cc), float32 and float16 columns,
warm and empty starts, caps, one prescription per chain (a sweep), and with the selection's
rare paths forced (clamped bins, overfull bins). A step is seven launches. On a GPU the CuPy
kernels do the same (marked ``gpu``).
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cuda_build import host_library, needs_nvcc, ptx_entries
from seedopt.kernels import anneal as kanneal
from seedopt.optimizer.anneal import AnnealOptions, anneal_chains, fused_spec
from seedopt.optimizer.base import HardLimit
from seedopt.optimizer.objective import decisive_rows, objective
from seedopt.optimizer.synthetic import RECTUM_LIMITS, synthetic_problem
from test_gpu_path import on_backend

KERNEL = Path(kanneal.__file__).with_name("anneal_fused.cu")
INSTANTIATE = """
template __global__ void fused_propose<float>(double*, const float*, const long long*,
    const long long*, const unsigned char*, long long, long long, long long, const long long*,
    int, const int*, const int*, const double*, int, unsigned long long*);
template __global__ void fused_propose<__half>(double*, const __half*, const long long*,
    const long long*, const unsigned char*, long long, long long, long long, const long long*,
    int, const int*, const int*, const double*, int, unsigned long long*);
"""
LIMITS = (
    HardLimit("rectum", "Dmax", 80.0),
    HardLimit("rectum", "D0.1cc", 80.0),
    HardLimit("rectum", "D1cc", 70.0),
)
"""Every kind of limit the fused step takes (RECTUM_LIMITS has a Dmean: reference only)."""


class Bar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


@dataclasses.dataclass
class HostLauncher:
    """Runs each kernel of ``anneal_fused.cu`` from the host library over ``grid`` blocks of
    ``block`` threads (fewer than the work: grid-stride loops), counting the launches."""

    lib: ctypes.CDLL
    grid: int = 3
    block: int = 32
    launches: Counter = dataclasses.field(default_factory=Counter)

    def __call__(self, name: str, threads: int, args: Any) -> None:
        self.launches[name] += 1
        entry = {
            "fused_propose<float>": "fused_propose_float",
            "fused_propose<__half>": "fused_propose_half",
        }.get(name, name)
        keep, c_args = [], []
        for a in args:
            if isinstance(a, np.ndarray):
                a = np.ascontiguousarray(a, np.float32 if a.dtype == np.float16 else None)
                keep.append(a)
                c_args.append(ctypes.c_void_p(a.ctypes.data))
            elif isinstance(a, np.int64):
                c_args.append(ctypes.c_longlong(int(a)))
            elif isinstance(a, np.int32):
                c_args.append(ctypes.c_int(int(a)))
            elif isinstance(a, np.float64):
                c_args.append(ctypes.c_double(float(a)))
            else:
                raise TypeError(f"{name}: argument of type {type(a).__name__}")
        getattr(self.lib, f"{entry}_host")(
            ctypes.c_uint(self.grid), ctypes.c_uint(self.block), *c_args
        )


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return host_library(KERNEL, "launch_fused.cpp", tmp_path_factory.mktemp("fused_host"))


def problem(seed: int = 0, limits=LIMITS, storage: str = "float32", **kw):
    p = synthetic_problem(seed, limits, n_target=90, n_oar=40, needles=4, per_needle=5, **kw)
    return decisive_rows(
        dataclasses.replace(
            p,
            A_target=p.A_target.astype(storage),
            A_oar={k: v.astype(storage) for k, v in p.A_oar.items()},
        )
    )


def runs(p, launcher, *, chains=5, iterations=300, x0=None, t0=30.0, seed=4):
    """The reference run and the fused run of the same draws."""
    options = AnnealOptions(iterations=iterations, t0=t0, t_end=1e-3)
    ref = anneal_chains(p, seed, options, chains=chains, x0=x0, bar=Bar())
    fused = anneal_chains(p, seed, options, chains=chains, x0=x0, bar=Bar(), launch=launcher)
    return ref, fused


def assert_same_run(ref, fused) -> None:
    for a, b, what in zip(ref, fused, ("best loadings", "best objectives", "trace"), strict=True):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a), err_msg=what)


@needs_nvcc
def test_fused_kernels_compile_with_nvcc(tmp_path: Path) -> None:
    assert ptx_entries(kanneal.cuda_source() + INSTANTIATE, kanneal.COMPILE_OPTIONS, tmp_path) == 7


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_fused_run_on_the_host_equals_the_reference_bit_for_bit(host, storage: str) -> None:
    p = problem(storage=storage)
    ref, fused = runs(p, HostLauncher(host))
    assert_same_run(ref, fused)
    # and the run did something: the best plan is far better than the empty start
    assert float(np.min(ref[1])) < 0.5 * float(objective(p, np.zeros(p.n_candidates, bool)))


def test_warm_starts_caps_and_one_prescription_per_chain(host) -> None:
    p = problem(1, max_seeds=6, max_needles=3)
    x0 = np.zeros(p.n_candidates, dtype=bool)
    x0[::3] = True
    assert_same_run(*runs(p, HostLauncher(host), x0=x0, t0=3.0))
    sweep = dataclasses.replace(problem(2), prescription_gy=np.array([110.0, 130, 145, 160, 190]))
    assert_same_run(*runs(sweep, HostLauncher(host)))


def test_the_selections_rare_paths_give_the_same_run(host, monkeypatch) -> None:
    """Few bins (most rows in the clamped end bins) and a tiny buffer (every bin overfull:
    the radix select) change how the k-th hottest dose is found, never its value."""
    monkeypatch.setattr(kanneal, "BINS", 6)
    monkeypatch.setattr(kanneal, "CAPACITY", 3)
    assert_same_run(*runs(problem(3), HostLauncher(host), iterations=150))


def test_a_step_is_seven_kernel_launches_and_no_library_call(host) -> None:
    launcher = HostLauncher(host)
    runs(problem(), launcher, iterations=40)
    assert sum(launcher.launches.values()) == 7 * 40
    assert set(launcher.launches) == {
        "fused_move",
        "fused_propose<float>",
        "fused_rows",
        "fused_pick",
        "fused_rank",
        "fused_accept",
    }
    assert kanneal.DRAW_BLOCK >= 64  # the draws of 64 steps are one generator call


def test_the_kernels_and_the_driver_share_the_bin_width() -> None:
    assert f"#define KEY_SHIFT {kanneal.KEY_SHIFT}\n" in kanneal.cuda_source()


def test_order_keys_sort_like_the_doses() -> None:
    v = np.array([-3.0, -1e-300, -0.0, 0.0, 1e-300, 2.5, 2.5000000000000004, np.inf])
    k = kanneal.order_keys(v)
    assert np.all(np.diff(k.astype(object)) >= 0)
    np.testing.assert_array_equal(kanneal.from_order_keys(k), v)


def test_a_dmean_limit_takes_the_reference_step() -> None:
    p = problem(limits=RECTUM_LIMITS)
    assert fused_spec(p, 4, AnnealOptions()) is None
    assert fused_spec(problem(), 4, AnnealOptions()) is not None


@pytest.mark.gpu
@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_gpu_fused_run_equals_the_reference_run(storage: str) -> None:
    from seedopt.backend import select_backend

    p = on_backend(problem(storage=storage), select_backend("gpu")[0])
    options = AnnealOptions(iterations=400, t0=30.0, t_end=1e-3)
    fused = anneal_chains(p, 4, options, chains=64, x0=None, bar=Bar())
    ref = anneal_chains(
        p, 4, options.model_copy(update={"use_kernels": False}), chains=64, x0=None, bar=Bar()
    )
    assert_same_run([a.get() for a in ref], [a.get() for a in fused])
