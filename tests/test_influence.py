"""The dose-influence matrix: units, superposition, storage, truncation, chunking, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from seedopt.backend import cpu_backend
from seedopt.dose import _parallel, dose_at_points, influence_matrix
from seedopt.dose.tg43 import geometry_factor
from seedopt.errors import SeedoptError
from seedopt.sources import Source, get_model


@pytest.fixture(scope="module")
def implant():
    """A random 60-seed implant in a 4 cm cube and points around it (mm)."""
    rng = np.random.default_rng(11)
    seeds = rng.uniform(-20, 20, (60, 3))
    axes = rng.normal(size=(60, 3))
    points = rng.uniform(-45, 45, (1500, 3))
    return points, seeds, axes


SOURCE = Source(get_model("6711"), 0.5)


def test_matrix_times_loading_equals_the_direct_dose_sum(implant, backend) -> None:
    points, seeds, axes = implant
    A = backend.to_numpy(influence_matrix(points, seeds, axes, SOURCE, backend=backend))
    loading = np.zeros(60)
    loading[::3] = 1.0
    direct = dose_at_points(points, seeds[::3], axes[::3], SOURCE, backend=backend)
    np.testing.assert_allclose(A.astype(np.float64) @ loading, direct, rtol=1e-5)


def test_matrix_is_gy_per_seed_of_the_total_dose(implant) -> None:
    points, seeds, axes = implant
    A = influence_matrix(points[:5], seeds[:1], axes[:1], SOURCE)
    rate = dose_at_points(points[:5], seeds[:1], axes[:1], SOURCE, rate=True)  # cGy/h
    np.testing.assert_allclose(A[:, 0], rate * SOURCE.mean_life_h / 100.0, rtol=1e-6)


def test_linear_in_strength(implant) -> None:
    points, seeds, axes = implant
    d1 = dose_at_points(points, seeds, axes, Source(get_model("2301"), 0.4))
    d2 = dose_at_points(points, seeds, axes, Source(get_model("2301"), 1.0))
    np.testing.assert_allclose(d2, 2.5 * d1, rtol=1e-6)


def test_superposition_of_two_seed_sets(implant) -> None:
    points, seeds, axes = implant
    both = dose_at_points(points, seeds, axes, SOURCE)
    parts = dose_at_points(points, seeds[:25], axes[:25], SOURCE) + dose_at_points(
        points, seeds[25:], axes[25:], SOURCE
    )
    np.testing.assert_allclose(both, parts, rtol=1e-6)


def test_dose_by_a_day_is_the_total_times_the_decayed_fraction(implant) -> None:
    points, seeds, axes = implant
    total = dose_at_points(points, seeds, axes, SOURCE)
    by_day_30 = dose_at_points(points, seeds, axes, SOURCE, days=30.0)
    np.testing.assert_allclose(by_day_30, total * SOURCE.dose_fraction_delivered(30.0), rtol=1e-6)


def test_seed_orientation_follows_the_needle() -> None:
    """A point 2 cm along the needle gets the on-axis dose, G_L(2, 0) F(2, 0), not the
    transverse G_L(2, 90); reversing the needle changes nothing (symmetric seed)."""
    pts = np.array([[0.0, 0.0, 20.0]])
    along = dose_at_points(pts, np.zeros((1, 3)), [0, 0, 1], SOURCE)
    across = dose_at_points(pts, np.zeros((1, 3)), [1, 0, 0], SOURCE)
    reversed_needle = dose_at_points(pts, np.zeros((1, 3)), [0, 0, -5], SOURCE)
    m = get_model("6711")
    F_2cm_0deg = m.F[0, list(m.F_r_cm).index(2.0)]
    expected = geometry_factor(0.3, 2.0, 0.0) * F_2cm_0deg / geometry_factor(0.3, 2.0, 90.0)
    assert along[0] / across[0] == pytest.approx(expected, rel=1e-5)
    assert reversed_needle[0] == pytest.approx(along[0], rel=1e-7)


def test_float16_storage_keeps_half_precision(implant) -> None:
    points, seeds, axes = implant
    A32 = influence_matrix(points, seeds, axes, SOURCE)
    A16 = influence_matrix(points, seeds, axes, SOURCE, storage="float16")
    assert A16.dtype == np.float16
    np.testing.assert_allclose(A16.astype(np.float32), A32, rtol=2.0**-11, atol=6e-8)


def test_truncation_radius_gives_a_sparse_matrix_exact_inside_zero_outside(implant) -> None:
    points, seeds, axes = implant
    dense = influence_matrix(points, seeds, axes, SOURCE)
    cut = influence_matrix(points, seeds, axes, SOURCE, cutoff_mm=30.0)
    assert scipy.sparse.issparse(cut)
    dist = np.linalg.norm(points[:, None, :] - seeds[None, :, :], axis=2)
    cut = cut.toarray()
    np.testing.assert_array_equal(cut[dist < 29.99], dense[dist < 29.99])
    assert np.all(cut[dist > 30.01] == 0.0)


def test_tiles_and_worker_processes_give_identical_matrices(implant, monkeypatch) -> None:
    points, seeds, axes = implant
    one_tile = influence_matrix(
        points, seeds, axes, SOURCE, backend=cpu_backend(1), tile_entries=10**9
    )
    monkeypatch.setattr(_parallel, "MIN_ENTRIES_PER_WORKER", 1000)
    forked = influence_matrix(points, seeds, axes, SOURCE, backend=cpu_backend(2), tile_entries=500)
    np.testing.assert_array_equal(one_tile, forked)
    forked_sum = dose_at_points(
        points, seeds, axes, SOURCE, backend=cpu_backend(2), tile_entries=500
    )
    np.testing.assert_allclose(forked_sum, one_tile.sum(axis=1, dtype=np.float64), rtol=1e-6)


def test_one_direction_serves_every_seed(implant) -> None:
    points, seeds, _ = implant
    a = influence_matrix(points[:10], seeds, [0, 1, 1], SOURCE)
    b = influence_matrix(points[:10], seeds, np.tile([0, 1, 1], (60, 1)), SOURCE)
    np.testing.assert_array_equal(a, b)


def test_empty_inputs_give_empty_results() -> None:
    assert influence_matrix(np.zeros((0, 3)), np.zeros((2, 3)), [0, 0, 1], SOURCE).shape == (0, 2)
    assert dose_at_points(
        np.zeros((3, 3)), np.zeros((0, 3)), np.zeros((0, 3)), SOURCE
    ).tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("points", "seeds", "axes", "message"),
    [
        ([[0, 0, np.nan]], [[0, 0, 0]], [0, 0, 1], "dose points has 1 row.*NaN"),
        ([[0, 0, 1]], [[np.inf, 0, 0]], [0, 0, 1], "seed positions has 1 row.*NaN or infinite"),
        ([[0, 0, 1]], [[0, 0, 0]], [0, 0, 0], "direction of zero length at row 0"),
        ([[0, 0, 1]], [[0, 0, 0], [1, 1, 1]], [[0, 0, 1], [0, 0, 0]], "zero length at row 1"),
        ([[0, 1]], [[0, 0, 0]], [0, 0, 1], r"\(n, 3\) array"),
        ([[0, 0, 1]], [[0, 0, 0]], [[0, 0, 1], [0, 1, 0]], "2 seed directions given for 1 seeds"),
        ([["a", 0, 1]], [[0, 0, 0]], [0, 0, 1], "must be numbers"),
    ],
)
def test_bad_geometry_is_refused_with_a_clear_message(points, seeds, axes, message) -> None:
    with pytest.raises(SeedoptError, match=message):
        influence_matrix(points, seeds, axes, SOURCE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"formalism": "3d"}, "unknown formalism '3d'"),
        ({"storage": "int8"}, "unknown storage"),
        ({"cutoff_mm": -5.0}, "truncation radius must be a positive"),
        ({"cutoff_mm": 50.0, "storage": "float16"}, "float16 storage is for dense matrices"),
    ],
)
def test_bad_options_are_refused(kwargs, message) -> None:
    with pytest.raises(SeedoptError, match=message):
        influence_matrix([[0, 0, 1]], [[0, 0, 0]], [0, 0, 1], SOURCE, **kwargs)


def test_a_matrix_too_big_for_memory_is_refused_before_allocating(monkeypatch) -> None:
    from seedopt.backend import Backend

    monkeypatch.setattr(Backend, "free_bytes", lambda self: 1000)
    with pytest.raises(
        SeedoptError,
        match=r"needs 0.00 GiB but only 0.00 GiB is free on the cpu; use fewer points "
        r"\(a coarser grid.spacing_mm\), fewer candidate seeds .* dose.storage float16",
    ):
        influence_matrix(np.zeros((100, 3)), np.zeros((10, 3)), [0, 0, 1], SOURCE)


def test_free_memory_is_known_on_the_cpu() -> None:
    assert cpu_backend().free_bytes() > 100 * 2**20
