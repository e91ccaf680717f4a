"""Shared fixtures: array modules and backends (CuPy ones only where a GPU answers)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

from seedopt.backend import cpu_backend, gpu_unavailable_reason, select_backend
from seedopt.sources import get_model, known_models

settings.register_profile("seedopt", derandomize=True, max_examples=60, deadline=None)
settings.load_profile("seedopt")

GPU_REASON = gpu_unavailable_reason()
requires_gpu = pytest.mark.skipif(GPU_REASON is not None, reason=f"no GPU: {GPU_REASON}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    long_selected = "long" in (config.option.markexpr or "")
    for item in items:
        if "gpu" in item.keywords and GPU_REASON is not None:
            item.add_marker(pytest.mark.skip(reason=f"no GPU: {GPU_REASON}"))
        if "long" in item.keywords and not long_selected:
            item.add_marker(pytest.mark.skip(reason="opt-in (a minute or more): pytest -m long"))


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request: pytest.FixtureRequest):
    """Every backend that can run here (the GPU one is skipped without a device)."""
    if request.param == "cpu":
        return cpu_backend()
    return select_backend("gpu")[0]


@pytest.fixture(params=known_models())
def model(request: pytest.FixtureRequest):
    """Every consensus source model."""
    return get_model(request.param)


def transverse_points_mm(r_cm: np.ndarray) -> np.ndarray:
    """Points on the transverse axis (+x) of a seed at the origin along +z, mm."""
    r = np.asarray(r_cm, dtype=float) * 10.0
    return np.stack([r, np.zeros_like(r), np.zeros_like(r)], axis=1)


def polar_points_mm(r_cm: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
    """Points at (r, theta) for a seed at the origin along +z, in the x-z plane, mm."""
    th = np.radians(theta_deg)
    r = np.asarray(r_cm, dtype=float) * 10.0
    return np.stack([r * np.sin(th), np.zeros_like(r * th), r * np.cos(th)], axis=-1)
