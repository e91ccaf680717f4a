"""Dose engine: AAPM TG-43U1 seed dose and the dose-influence matrix."""

from .influence import dose_at_points, influence_matrix, matrix_nbytes
from .tg43 import (
    SEED_HALF_LENGTH_CM,
    SEED_RADIUS_CM,
    Formalism,
    TG43Tables,
    dose_rate_per_u,
    tables_for,
)

__all__ = [
    "Formalism",
    "SEED_HALF_LENGTH_CM",
    "SEED_RADIUS_CM",
    "TG43Tables",
    "dose_at_points",
    "dose_rate_per_u",
    "influence_matrix",
    "matrix_nbytes",
    "tables_for",
]
