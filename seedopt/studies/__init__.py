"""Studies over many plans: batches on Ray (``batch``), dose-escalation sweeps
(``escalate``) and Optuna tuning and Pareto studies (``tune``); results in HDF5
(``results``). See docs/studies.md."""

from __future__ import annotations

from .batch import BatchSummary, make_tasks, run_batch
from .results import read_summary

__all__ = ["BatchSummary", "make_tasks", "read_summary", "run_batch"]
