"""Helpers shared by the HiGHS models (``milp``'s penalty surrogate and ``exact``'s exact
model): target row sampling, sparse block placement and the model type that HiGHS solves
through ``scipy.optimize.milp``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from .base import PlanProblem
from .registry import to_host


def sample_rows(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` row indices of ``n``, evenly spaced and deterministic."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def sampled_target(problem: PlanProblem, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The sampled target rows (``sample_rows``) and their influence in float64 (Gy/seed)."""
    A_full = to_host(problem.A_target)
    rows = sample_rows(A_full.shape[0], max_points)
    return rows, A_full[rows].astype(np.float64)


def stack_groups(
    groups: Sequence[tuple[Any, Any, Any]],
) -> tuple[sparse.csr_array, np.ndarray, np.ndarray]:
    """Constraint rows and their lower and upper bounds from (rows, lower, upper) groups; a
    bound is one number for the group or one per row."""
    A = sparse.vstack([g[0] for g in groups], format="csr")
    lb = np.concatenate([np.full(g[0].shape[0], g[1]) for g in groups])
    ub = np.concatenate([np.full(g[0].shape[0], g[2]) for g in groups])
    return A, lb, ub


def place_block(block: Any, offset: int, n_vars: int) -> sparse.csr_array:
    """``block`` as rows over all ``n_vars`` model variables, starting at column ``offset``."""
    coo = sparse.coo_array(block)
    return sparse.csr_array((coo.data, (coo.row, coo.col + offset)), shape=(coo.shape[0], n_vars))


@dataclass(frozen=True)
class HighsModel:
    """A mixed-integer linear program in ``scipy.optimize.milp``'s form, solved by HiGHS."""

    problem: PlanProblem
    rows: np.ndarray  # sampled target rows
    c: np.ndarray
    A: sparse.csr_array
    lb: np.ndarray
    ub: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    integrality: np.ndarray

    @property
    def hard_constraints(self) -> list[str]:
        """The model's hard constraints, in words (for infeasibility messages)."""
        p = self.problem
        out = []
        if p.max_seeds is not None:
            out.append(f"max_seeds={p.max_seeds}")
        if p.max_needles is not None:
            out.append(f"max_needles={p.max_needles}")
        return out

    def solve(
        self,
        *,
        integral: bool,
        time_limit_s: float,
        mip_rel_gap: float,
        node_limit: int | None = None,
    ) -> Any:
        """HiGHS result of the model (``integral=False``: its LP relaxation); ``node_limit``
        stops the branch and bound after that many nodes (a deterministic budget)."""
        options: dict[str, Any] = {
            "time_limit": max(time_limit_s, 1e-3),
            "mip_rel_gap": mip_rel_gap,
            "disp": False,
        }
        if node_limit is not None:
            options["node_limit"] = node_limit
        return milp(
            self.c,
            constraints=LinearConstraint(self.A, self.lb, self.ub),
            bounds=Bounds(self.lo, self.hi),
            integrality=self.integrality if integral else None,
            options=options,
        )
