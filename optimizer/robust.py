"""Robust optimization over sampled needle errors (issue 19): one loading scored on K
scenario problems at once, each the plan's problem with every candidate needle displaced by
a sampled error (``seedopt.robust_scenarios`` builds them, ``seedopt.robustness`` samples).

The robust objective of a loading x is, over the scenario objectives f_k(x)
(``optimizer.objective``, each on its own displaced influence matrices):

* ``mean``: (1/K) sum_k f_k(x), the expected plan objective;
* ``cvar``: the mean of the worst ceil(tail x K) of the f_k(x) (the conditional value at
  risk at level 1 - tail; Rockafellar & Uryasev, J Risk 2 (2000) 21-41).

``RobustLoading`` is a ``local_search.Loading`` to ``improve``: its score of a move is that
aggregate of the K scenario loadings' exact scores, so the local search's moves (flips, seed
moves, needle closings) optimize the robust objective exactly.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from seedopt.config_types import Count, Fraction, NonNegativeCount, PositiveReal

from .base import PlanProblem
from .local_search import Loading, Move, pad
from .options import OptimizerOptions


class RobustOptions(OptimizerOptions):
    """Robust optimization of the default method's plan (``hybrid``'s ``robust``).

    The defaults (K 32, cvar of the worst quarter, prescription 3 % higher in the scenarios)
    are the setting that reached P(every goal) >= 90 % on fresh scenarios in the measurements
    of docs/robustness.md; K 16 with the mean reached 45-61 % there.
    """

    scenarios: Count = Field(
        default=32, le=256, description="sampled needle-error scenarios optimized over (K)"
    )
    measure: Literal["mean", "cvar"] = Field(
        default="cvar",
        description="mean: the expected objective; cvar: the mean of the worst tail x K",
    )
    tail: Fraction = Field(default=0.25, description="cvar's worst fraction of the scenarios")
    model: Literal["template-3d-printed", "coplanar-template", "freehand"] | None = Field(
        default=None,
        description="the error model (docs/robustness.md); default: by the plan's approach",
    )
    margin: Fraction = Field(
        default=0.03,
        description="the scenarios' prescription is raised by this fraction, so that a plan "
        "fitted to K samples also covers scenarios not sampled",
    )
    time_s: PositiveReal = Field(
        default=60.0, description="time limit of the robust local search, s"
    )
    search_rows: NonNegativeCount = Field(
        default=0,
        description="before the robust search on every row: a robust search with kicks on at "
        "most this many target rows of each scenario (evenly spaced); 0: none",
    )
    kicks: NonNegativeCount = Field(
        default=8,
        description="kicks of that thinned robust search (empty a random needle in use, search "
        "again, keep it if better and no further over a hard limit)",
    )


def aggregate(values: np.ndarray, measure: str, tail: float) -> np.ndarray:
    """The robust objective of scenario objectives ``values`` (K, ...) along axis 0."""
    if measure == "mean":
        return values.mean(axis=0)
    worst = max(1, math.ceil(tail * values.shape[0]))
    return -np.sort(-values, axis=0)[:worst].mean(axis=0)


class RobustLoading:
    """One loading of K scenario problems (each ``decisive_rows``; the same candidates and
    needles), scored by ``aggregate``; what ``local_search.improve`` needs of a
    ``Loading``."""

    def __init__(
        self, problems: list[PlanProblem], x: Any, measure: str, tail: float, frozen: Any = None
    ) -> None:
        if not problems:
            raise ValueError("robust optimization needs at least one scenario")
        self.problems = problems
        self.loads = [Loading(p, x, frozen) for p in problems]
        first = self.loads[0]
        self.problem, self.m, self.needle, self.frozen = (
            first.problem,
            first.m,
            first.needle,
            first.frozen,
        )
        self.measure, self.tail = measure, tail
        self.f = float(aggregate(np.array([ld.f for ld in self.loads]), measure, tail))

    @property
    def x(self) -> np.ndarray:
        return self.loads[0].x

    @property
    def count(self) -> np.ndarray:
        return self.loads[0].count

    def score(self, rem: np.ndarray, add: np.ndarray, exact: bool = True) -> np.ndarray:
        """The robust objective after each move (``Loading.score`` per scenario)."""
        values = np.stack([ld.score(rem, add, exact) for ld in self.loads])
        return aggregate(values, self.measure, self.tail)

    def reloaded(self, x: Any) -> RobustLoading:
        """A loading ``x`` of the same scenarios, with the same frozen seeds."""
        return RobustLoading(self.problems, x, self.measure, self.tail, self.frozen)

    def hard_excess_pct(self) -> float:
        """The scenarios' hard-limit excess (% of each limit, summed over the limits),
        aggregated as the objective is (``measure``)."""
        values = np.array([ld.hard_excess_pct() for ld in self.loads])
        return float(aggregate(values, self.measure, self.tail))

    def scenario_objectives(self) -> np.ndarray:
        """(K,) each scenario's objective of the present loading."""
        return np.array([ld.f for ld in self.loads])

    def apply(self, move: Move) -> None:
        """Take ``move`` in every scenario (each its own exact objective)."""
        for ld in self.loads:
            ld.apply(move)
            ld.f = float(ld.score(pad([()]), pad([()]))[0])
        self.f = float(aggregate(self.scenario_objectives(), self.measure, self.tail))
