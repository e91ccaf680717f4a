"""Plan optimizers behind one interface: each takes a ``PlanProblem`` and returns an
``OptimizeResult`` whose ``fun`` is ``objective(problem, x)``."""

from .anneal import AnnealOptions, SimulatedAnnealingOptimizer
from .base import HardLimit, OptimizeResult, PlanProblem, SoftWeights
from .clinical import ClinicalBaseline, ClinicalOptions
from .hybrid import HybridOptimizer, HybridOptions
from .lp import LPOptimizer, LPOptions
from .milp import MILPOptimizer, MILPOptions
from .objective import objective, terms
from .options import OptimizerOptions, parse_options
from .registry import (
    DEFAULT_OPTIMIZER,
    OPTIMIZERS,
    BaseOptimizer,
    get_optimizer,
    optimizer_class,
    register,
)

__all__ = [
    "DEFAULT_OPTIMIZER",
    "OPTIMIZERS",
    "AnnealOptions",
    "BaseOptimizer",
    "ClinicalBaseline",
    "ClinicalOptions",
    "HardLimit",
    "HybridOptimizer",
    "HybridOptions",
    "LPOptimizer",
    "LPOptions",
    "MILPOptimizer",
    "MILPOptions",
    "OptimizeResult",
    "OptimizerOptions",
    "PlanProblem",
    "SimulatedAnnealingOptimizer",
    "SoftWeights",
    "get_optimizer",
    "objective",
    "optimizer_class",
    "parse_options",
    "register",
    "terms",
]
