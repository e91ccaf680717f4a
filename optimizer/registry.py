"""One interface for every plan optimizer and a registry of them by name.

A new optimizer subclasses ``BaseOptimizer``, names its options model (``options.py``) and
registers itself::

    class ClinicalOptions(OptimizerOptions):
        scaling: Literal["count", "strength"] = "count"

    @register("clinical")
    class ClinicalOptimizer(BaseOptimizer[ClinicalOptions]):
        Options = ClinicalOptions

        def run(self, problem, rng, options: ClinicalOptions) -> OptimizeResult: ...

``solve(problem, rng, options, **fields)`` validates the options (a model instance, a mapping
or keyword fields) against ``Options``, calls ``run`` and hands its result to ``check_usable``
(which refuses a plan that is not usable, ``optimizer.usable``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from seedopt.errors import SeedoptError

from .base import OptimizeResult, PlanProblem
from .options import OptimizerOptions, parse_options

OPTIMIZERS: dict[str, type[BaseOptimizer[Any]]] = {}
"""Registered optimizer classes by name."""
DEFAULT_OPTIMIZER = "hybrid"
"""The optimizer used when none is named."""

T = TypeVar("T", bound="type[BaseOptimizer[Any]]")
OptionsT = TypeVar("OptionsT", bound=OptimizerOptions)


class BaseOptimizer(ABC, Generic[OptionsT]):
    """A plan optimizer: ``solve`` returns an ``OptimizeResult`` with ``fun = objective(x)``."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[OptimizerOptions]] = OptimizerOptions
    """The model of this method's options (defaults, ranges, descriptions)."""

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

    @classmethod
    def parse_options(
        cls, options: OptimizerOptions | Mapping[str, Any] | None = None, **fields: Any
    ) -> OptionsT:
        """``options`` with ``fields`` on top, validated against ``Options`` (a one-line
        ``SeedoptError`` naming the bad key otherwise)."""
        if fields:
            base = (
                options.model_dump(exclude_unset=True)
                if isinstance(options, OptimizerOptions)
                else dict(options or {})
            )
            options = {**base, **fields}
        return parse_options(cls.Options, options, f"{cls.name or cls.__name__} options")  # type: ignore[return-value]

    def solve(
        self,
        problem: PlanProblem,
        rng: np.random.Generator | int | None = None,
        options: OptimizerOptions | Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> OptimizeResult:
        """Optimise the loading of ``problem``; the same ``rng`` seed gives the same plan.
        ``options``: this method's ``Options`` (or a mapping), ``fields`` override them.

        Raises ``SeedoptError`` instead of returning a plan that is not usable
        (``check_usable``)."""
        parsed = self.parse_options(options, **fields)
        return self.check_usable(problem, self.run(problem, rng, parsed), parsed)

    def check_usable(
        self, problem: PlanProblem, result: OptimizeResult, options: OptionsT
    ) -> OptimizeResult:
        """``result`` of ``run`` if it is a plan to present, else a one-line ``SeedoptError``
        saying what went wrong and what to use instead. This base presents every plan; a
        method that can stop short applies ``optimizer.usable.require_usable``."""
        return result

    @abstractmethod
    def run(
        self, problem: PlanProblem, rng: np.random.Generator | int | None, options: OptionsT
    ) -> OptimizeResult:
        """``solve`` with validated options."""


def register(name: str) -> Callable[[T], T]:
    """Class decorator: register an optimizer class under ``name`` (sets its ``name``)."""

    def decorate(cls: T) -> T:
        if name in OPTIMIZERS and OPTIMIZERS[name] is not cls:
            raise ValueError(f"optimizer name {name!r} is already registered")
        cls.name = name
        OPTIMIZERS[name] = cls
        return cls

    return decorate


def optimizer_class(name: str) -> type[BaseOptimizer[Any]]:
    """The optimizer class registered as ``name``."""
    cls = OPTIMIZERS.get(name) if isinstance(name, str) else None
    if cls is None:
        known = ", ".join(sorted(OPTIMIZERS))
        raise SeedoptError(f"unknown optimizer {name!r}; choose one of {known}")
    return cls


def get_optimizer(
    name_or_instance: str | BaseOptimizer[Any] = DEFAULT_OPTIMIZER, progress: bool = False
) -> BaseOptimizer[Any]:
    """An optimizer instance by registered name (an instance is returned as is)."""
    if isinstance(name_or_instance, BaseOptimizer):
        return name_or_instance
    return optimizer_class(name_or_instance)(progress=progress)


def to_host(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array (shared by the optimizers that need the host)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)
