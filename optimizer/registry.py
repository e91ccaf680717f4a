"""One interface for every plan optimizer and a registry of them by name.

A new optimizer subclasses ``BaseOptimizer`` and registers itself::

    @register("clinical")
    class ClinicalOptimizer(BaseOptimizer):
        def solve(self, problem, rng=None, **options) -> OptimizeResult: ...
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from seedopt.errors import SeedoptError

from .base import OptimizeResult, PlanProblem

OPTIMIZERS: dict[str, type[BaseOptimizer]] = {}
"""Registered optimizer classes by name."""
DEFAULT_OPTIMIZER = "hybrid"
"""The optimizer used when none is named."""

T = TypeVar("T", bound="type[BaseOptimizer]")


class BaseOptimizer(ABC):
    """A plan optimizer: ``solve`` returns an ``OptimizeResult`` with ``fun = objective(x)``."""

    name: ClassVar[str] = ""

    def __init__(self, progress: bool = False) -> None:
        """``progress``: show a progress bar on long runs (on a terminal only)."""
        self.progress = progress

    def progress_bar(self, total: int, desc: str) -> Any:
        """A tqdm bar on stderr; silent unless ``progress`` is set and stderr is a terminal."""
        from tqdm import tqdm

        return tqdm(
            total=total,
            desc=desc,
            disable=None if self.progress else True,
            leave=False,
            mininterval=0.5,
        )

    @abstractmethod
    def solve(
        self, problem: PlanProblem, rng: np.random.Generator | int | None = None, **options: Any
    ) -> OptimizeResult:
        """Optimise the loading of ``problem``; the same ``rng`` seed gives the same plan."""


def register(name: str) -> Callable[[T], T]:
    """Class decorator: register an optimizer class under ``name`` (sets its ``name``)."""

    def decorate(cls: T) -> T:
        if name in OPTIMIZERS and OPTIMIZERS[name] is not cls:
            raise ValueError(f"optimizer name {name!r} is already registered")
        cls.name = name
        OPTIMIZERS[name] = cls
        return cls

    return decorate


def get_optimizer(
    name_or_instance: str | BaseOptimizer = DEFAULT_OPTIMIZER, progress: bool = False
) -> BaseOptimizer:
    """An optimizer instance by registered name (an instance is returned as is)."""
    if isinstance(name_or_instance, BaseOptimizer):
        return name_or_instance
    cls = OPTIMIZERS.get(name_or_instance) if isinstance(name_or_instance, str) else None
    if cls is None:
        known = ", ".join(sorted(OPTIMIZERS))
        raise SeedoptError(f"unknown optimizer {name_or_instance!r}; choose one of {known}")
    return cls(progress=progress)


def to_host(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array (shared by the optimizers that need the host)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)
