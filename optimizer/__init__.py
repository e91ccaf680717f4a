"""Plan optimizers (LP/MILP through HiGHS, simulated annealing, hybrid, clinical baseline).

They arrive with the planning issue; this package is mapped to ``seedopt.optimizer`` so the
import name is reserved and no top-level ``optimizer`` module is ever installed.
"""
