"""Plan optimizers behind one interface: each takes a ``PlanProblem`` and returns an
``OptimizeResult`` whose ``fun`` is ``objective(problem, x)``."""

from .anneal import SimulatedAnnealingOptimizer
from .base import HardLimit, OptimizeResult, PlanProblem, SoftWeights
from .clinical import ClinicalBaseline
from .hybrid import HybridOptimizer
from .lp import LPOptimizer
from .milp import MILPOptimizer
from .objective import objective, terms
from .registry import DEFAULT_OPTIMIZER, OPTIMIZERS, BaseOptimizer, get_optimizer, register

__all__ = [
    "DEFAULT_OPTIMIZER",
    "OPTIMIZERS",
    "BaseOptimizer",
    "ClinicalBaseline",
    "HardLimit",
    "HybridOptimizer",
    "LPOptimizer",
    "MILPOptimizer",
    "OptimizeResult",
    "PlanProblem",
    "SimulatedAnnealingOptimizer",
    "SoftWeights",
    "get_optimizer",
    "objective",
    "register",
    "terms",
]
