"""Choosing the backend once, at the entry point, and saying which was taken and why."""

from __future__ import annotations

import builtins

import pytest

from seedopt import backend as backend_mod
from seedopt.backend import select_backend
from seedopt.errors import BackendUnavailableError, SeedoptError


@pytest.fixture
def no_cupy(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_cpu_is_taken_when_asked_and_says_so() -> None:
    b, message = select_backend("cpu")
    assert b.name == "cpu" and not b.is_gpu
    assert message.startswith("backend: cpu") and "requested" in message


def test_auto_falls_back_to_the_cpu_and_says_why(no_cupy) -> None:
    b, message = select_backend("auto")
    assert b.name == "cpu"
    assert "no GPU used: CuPy is not installed" in message


def test_gpu_without_cupy_fails_with_the_reason(no_cupy) -> None:
    with pytest.raises(
        BackendUnavailableError, match="--backend gpu cannot run here: CuPy is not installed"
    ):
        select_backend("gpu")


def test_gpu_without_a_device_fails_with_the_reason(monkeypatch) -> None:
    monkeypatch.setattr(backend_mod, "gpu_unavailable_reason", lambda: "no CUDA device found")
    with pytest.raises(BackendUnavailableError, match="no CUDA device found"):
        select_backend("gpu")
    b, message = select_backend("auto")
    assert b.name == "cpu" and "no CUDA device found" in message


def test_unknown_backend_is_refused_by_name() -> None:
    with pytest.raises(SeedoptError, match="unknown backend 'tpu'; choose one of auto, cpu, gpu"):
        select_backend("tpu")
