"""Needle and seed candidates: the interface every approach (template, freehand) returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np


@dataclass(frozen=True)
class Needle:
    """A straight needle path, patient coordinates (mm).

    ``entry_mm`` is where it crosses the skin, ``tip_mm`` its deepest point (the far boundary
    of the target, plus any margin). ``hole`` is the template hole (column, row) it uses, if any.
    """

    entry_mm: np.ndarray
    tip_mm: np.ndarray
    hole: tuple[int, int] | None = None

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from entry to tip."""
        d = np.asarray(self.tip_mm, float) - np.asarray(self.entry_mm, float)
        return d / np.linalg.norm(d)

    @property
    def depth_mm(self) -> float:
        return float(np.linalg.norm(np.asarray(self.tip_mm) - np.asarray(self.entry_mm)))


@dataclass(frozen=True)
class Candidates:
    """Candidate needles and the candidate seed positions along them.

    Attributes
    ----------
    needles : the candidate needles.
    seeds_mm : (m, 3) candidate seed centres, mm; each lies on its needle.
    seed_needle : (m,) index into ``needles`` of each candidate seed's needle.
    seed_pitch_mm : spacing of candidate positions along a needle, mm.
    approach : "template" or "freehand".
    dropped : traced needle lines that gave no candidate, by reason (``drops.KEYS``; each
        line counted once, under the first path rule it breaks).
    """

    needles: list[Needle]
    seeds_mm: np.ndarray
    seed_needle: np.ndarray
    seed_pitch_mm: float = 5.0
    approach: str = field(default="template")
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def lines_traced(self) -> int:
        """Needle lines considered: the candidates and those dropped."""
        return self.n_needles + sum(self.dropped.values())

    @property
    def n_seeds(self) -> int:
        return int(self.seeds_mm.shape[0])

    @property
    def n_needles(self) -> int:
        return len(self.needles)

    def axes(self) -> np.ndarray:
        """(m, 3) unit long-axis direction of each candidate seed (its needle's direction)."""
        dirs = np.array([n.direction for n in self.needles]).reshape(-1, 3)
        return dirs[self.seed_needle]

    def key(self) -> str:
        """A digest of the geometry, for caching dose matrices."""
        import hashlib

        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.seeds_mm, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.axes(), dtype=np.float64).tobytes())
        return h.hexdigest()[:16]
