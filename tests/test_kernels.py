"""The CUDA TG-43 kernel against its pure-array reference (``reference_block``).

Three levels: the source compiles with nvcc; the same source, compiled as host C++ and run
thread by thread over the real launch grid, matches the NumPy reference (checks indexing,
layouts and parameter order without a GPU); and on a GPU, CuPy's kernel matches the
reference within 1e-5 relative in float32 (marked ``gpu``, skipped without a device).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
from cuda_build import host_library, needs_nvcc, ptx_entries
from seedopt.kernels import tg43 as ktg43

from seedopt.backend import cpu_backend
from seedopt.dose import influence_matrix
from seedopt.dose.influence import _Prepared, gy_per_seed
from seedopt.sources import Source, get_model, known_models

KERNEL = Path(ktg43.__file__).with_name("tg43_influence.cu")
INSTANTIATE = """
template __global__ void tg43_influence<float>(const float*, const float*, const float*,
    const float*, const float*, const float*, const float*, const float*, const float*,
    const float*, const float*, const float*, int, int, int, int, int, long long, int, float*);
template __global__ void tg43_influence<__half>(const float*, const float*, const float*,
    const float*, const float*, const float*, const float*, const float*, const float*,
    const float*, const float*, const float*, int, int, int, int, int, long long, int, __half*);
"""


def random_case(n_points: int, n_seeds: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    points = rng.uniform(-60, 60, (n_points, 3))
    seeds = rng.uniform(-25, 25, (n_seeds, 3))
    axes = rng.normal(size=(n_seeds, 3))
    points[:n_seeds] = seeds + rng.normal(scale=1.5, size=(n_seeds, 3))  # some inside capsules
    return points, seeds, axes


@needs_nvcc
def test_cuda_source_compiles_with_nvcc(tmp_path: Path) -> None:
    assert ptx_entries(ktg43.cuda_source() + INSTANTIATE, ktg43.COMPILE_OPTIONS, tmp_path) == 2


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory):
    return host_library(KERNEL, "launch.cpp", tmp_path_factory.mktemp("cuda_host"))


def run_host_kernel(lib, prep: _Prepared, cutoff_cm: float | None) -> np.ndarray:
    n, m = prep.shape
    f32p = ctypes.POINTER(ctypes.c_float)
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in prep.tables]
    tables = (f32p * len(arrays))(*(a.ctypes.data_as(f32p) for a in arrays))
    params = ktg43.kernel_params(prep.t, prep.scale, cutoff_cm)
    out = np.full((n, m), np.nan, dtype=np.float32)
    grid_y = min(n, 7)  # fewer rows of blocks than points: exercises the grid-stride loop
    t = prep.t
    lib.launch(
        *(
            np.ascontiguousarray(a).ctypes.data_as(f32p)
            for a in (prep.points, prep.seeds, prep.axes)
        ),
        tables,
        params.ctypes.data_as(f32p),
        ctypes.c_int(t.gL.n),
        ctypes.c_int(t.F.n),
        ctypes.c_int(t.F.values.shape[0]),
        ctypes.c_int(t.phi_an.n),
        ctypes.c_int(prep.formalism == "2d"),
        ctypes.c_longlong(n),
        ctypes.c_int(m),
        ctypes.c_uint((m + ktg43.BLOCK - 1) // ktg43.BLOCK),
        ctypes.c_uint(grid_y),
        ctypes.c_uint(ktg43.BLOCK),
        out.ctypes.data_as(f32p),
    )
    return out


@pytest.mark.parametrize("model_id", known_models())
@pytest.mark.parametrize("formalism", ["2d", "1d"])
@pytest.mark.parametrize("cutoff_mm", [None, 35.0])
def test_kernel_source_run_on_the_host_matches_the_reference(
    host_kernel, model_id, formalism, cutoff_mm
) -> None:
    points, seeds, axes = random_case(700, 300)
    source = Source(get_model(model_id), 0.7)
    prep = _Prepared(cpu_backend(1), points, seeds, axes, source, formalism, gy_per_seed(source))
    cutoff_cm = None if cutoff_mm is None else cutoff_mm / 10
    got = run_host_kernel(host_kernel, prep, cutoff_cm)
    want = prep.block(slice(0, len(points)), cutoff_cm, use_kernel=False)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("model_id", known_models())
@pytest.mark.parametrize("formalism", ["2d", "1d"])
def test_gpu_kernel_matches_the_reference_within_1e_5(model_id, formalism) -> None:
    from seedopt.backend import select_backend

    gpu = select_backend("gpu")[0]
    points, seeds, axes = random_case(20_000, 700)
    source = Source(get_model(model_id), 0.6)
    kernel = gpu.to_numpy(
        influence_matrix(points, seeds, axes, source, formalism=formalism, backend=gpu)
    )
    ref_gpu = gpu.to_numpy(
        influence_matrix(
            points, seeds, axes, source, formalism=formalism, backend=gpu, use_kernel=False
        )
    )
    ref_cpu = influence_matrix(points, seeds, axes, source, formalism=formalism)
    np.testing.assert_allclose(kernel, ref_gpu, rtol=1e-5)
    np.testing.assert_allclose(kernel, ref_cpu, rtol=1e-5)


@pytest.mark.gpu
def test_gpu_half_storage_and_truncation() -> None:
    from seedopt.backend import select_backend

    gpu = select_backend("gpu")[0]
    points, seeds, axes = random_case(5000, 400)
    source = Source(get_model("6711"), 0.6)
    ref = influence_matrix(points, seeds, axes, source)
    half = gpu.to_numpy(
        influence_matrix(points, seeds, axes, source, backend=gpu, storage="float16")
    )
    np.testing.assert_allclose(half.astype(np.float32), ref, rtol=2.0**-11, atol=6e-8)
    cut = influence_matrix(points, seeds, axes, source, backend=gpu, cutoff_mm=30.0).get().toarray()
    cut_cpu = influence_matrix(points, seeds, axes, source, cutoff_mm=30.0).toarray()
    np.testing.assert_allclose(cut, cut_cpu, rtol=1e-5)
