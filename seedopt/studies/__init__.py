"""Studies over many plans: batches on Ray (``batch``), dose-escalation sweeps
(``escalate``) and Optuna tuning and Pareto studies (``tune``); results in HDF5
(``results``). See docs/studies.md."""

from __future__ import annotations

from .batch import BatchSummary, make_tasks, run_batch
from .escalate import escalate
from .results import read_summary
from .tune import tune

__all__ = ["BatchSummary", "escalate", "make_tasks", "read_summary", "run_batch", "tune"]
