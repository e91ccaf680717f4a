"""The number types every config model uses (case, plan, approach and optimizer options).

Each is finite (NaN and infinity are refused), strict about booleans (``true`` where a number
is expected is refused, not read as 1) and bounded, so that an absurd value (a coordinate of
1e308 mm) is refused with its bound instead of overflowing later:

* a coordinate or length is at most ``MAX_MM`` (1e5 mm, 100 m) in magnitude;
* any other real number is at most ``MAX_MAGNITUDE`` (1e6) in magnitude, an integer at most
  ``MAX_COUNT`` (1e9).

Numbers written as text (YAML 1.1 reads ``1e5`` without a dot as a string) are still read.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, AllowInfNan, BeforeValidator, Field, StrictBool

MAX_MM = 1e5
"""Largest magnitude of a coordinate or length, mm."""
MAX_MAGNITUDE = 1e6
"""Largest magnitude of any other real config number."""
MAX_COUNT = 10**9
"""Largest integer config number."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got a boolean ({str(value).lower()})")
    return value


def _at_most(limit: float, unit: str) -> AfterValidator:
    def check(value: float) -> float:
        if abs(value) > limit:
            raise ValueError(
                f"{value:g}{unit} is out of range (seedopt accepts |value| <= {limit:g}{unit})"
            )
        return value

    return AfterValidator(check)


Real = Annotated[float, BeforeValidator(_not_bool), AllowInfNan(False), _at_most(MAX_MAGNITUDE, "")]
"""A finite real number, |value| <= 1e6."""
PositiveReal = Annotated[Real, Field(gt=0)]
NonNegativeReal = Annotated[Real, Field(ge=0)]
Fraction = Annotated[Real, Field(ge=0, le=1)]
"""A number in [0, 1]."""

Coordinate_mm = Annotated[
    float, BeforeValidator(_not_bool), AllowInfNan(False), _at_most(MAX_MM, " mm")
]
"""A finite coordinate, |value| <= 1e5 mm."""
Length_mm = Annotated[Coordinate_mm, Field(gt=0)]
"""A positive length, at most 1e5 mm."""
NonNegativeLength_mm = Annotated[Coordinate_mm, Field(ge=0)]
Point_mm = tuple[Coordinate_mm, Coordinate_mm, Coordinate_mm]
"""x, y, z, mm."""
Vector = tuple[Real, Real, Real]
"""A direction (normalised where it is used)."""

Whole = Annotated[int, BeforeValidator(_not_bool)]
"""A whole number (not a boolean), unbounded: bound it where it is used."""
Count = Annotated[Whole, Field(ge=1, le=MAX_COUNT)]
"""A whole number in [1, 1e9]."""
NonNegativeCount = Annotated[Whole, Field(ge=0, le=MAX_COUNT)]
MAX_SEED = 2**32 - 1
"""Largest random seed (Optuna's samplers take no more)."""
Seed = Annotated[Whole, Field(ge=0, le=MAX_SEED)]
"""A random seed: a whole number from 0 to ``MAX_SEED``."""

Flag = StrictBool
"""true or false (not 1, 0 or a word)."""
