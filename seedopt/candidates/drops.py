"""Why a traced needle line gives no candidate needle: the path rules in the order they are
applied, and their counts. Each line is counted once, under the first rule it breaks."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

import numpy as np

from .base import Candidates
from .config import FreehandSpec, SeedSettings


class Drop(IntEnum):
    """A traced line's fate (``OK``: it gives a needle), in the order the rules apply."""

    OK = 0
    MISSES = 1
    CUT_ENTRY = 2
    OUTSIDE_WINDOW = 3
    TOO_DEEP = 4
    NEAR_NOGO = 5
    NEAR_BONE = 6
    NEAR_AIR = 7
    NO_SEED = 8
    TOO_CLOSE = 9
    OVER_LIMIT = 10


KEYS = {
    Drop.MISSES: "misses_target",
    Drop.CUT_ENTRY: "enters_at_grid_edge",
    Drop.OUTSIDE_WINDOW: "outside_entry_window",
    Drop.TOO_DEEP: "too_deep",
    Drop.NEAR_NOGO: "near_nogo_structure",
    Drop.NEAR_BONE: "near_bone",
    Drop.NEAR_AIR: "near_air",
    Drop.NO_SEED: "no_seed_position",
    Drop.TOO_CLOSE: "too_close_to_another_needle",
    Drop.OVER_LIMIT: "beyond_max_needles_considered",
}
"""Each reason's name in metrics.json (``candidate_drops``)."""


def count(status: np.ndarray) -> dict[str, int]:
    """Lines per drop reason of an (n,) array of ``Drop`` codes (every reason, zeros too)."""
    counts = np.bincount(np.asarray(status, dtype=int), minlength=len(Drop))
    return {key: int(counts[reason]) for reason, key in KEYS.items()}


def _phrases(spec: SeedSettings) -> dict[str, str]:
    ct = spec.ct_keepout
    phrases = {
        "misses_target": "miss the target",
        "enters_at_grid_edge": "start in the body or enter it at the grid's edge",
        "outside_entry_window": "enter the skin outside entry_window",
        "too_deep": f"reach deeper than max_depth_mm={spec.max_depth_mm:g}",
        "near_nogo_structure": (
            f"pass within nogo_margin_mm={spec.nogo_margin_mm:g} of a nogo structure"
        ),
        "near_bone": f"pass within {ct.margin_mm:g} mm of bone (> {ct.bone_above_hu:g} HU)",
        "near_air": (
            f"pass within {ct.margin_mm:g} mm of air in the body (< {ct.air_below_hu:g} HU)"
        ),
        "no_seed_position": "have no allowed seed position",
        "too_close_to_another_needle": "",
        "beyond_max_needles_considered": "",
    }
    if isinstance(spec, FreehandSpec):
        phrases["too_close_to_another_needle"] = (
            f"come within min_needle_distance_mm={spec.min_needle_distance_mm:g} of a kept needle"
        )
        phrases["beyond_max_needles_considered"] = (
            f"exceed max_needles_considered={spec.max_needles_considered}"
        )
    return phrases


def describe(counts: Mapping[str, int], spec: SeedSettings) -> str:
    """The nonzero counts in words, e.g. ``"40 miss the target; 3 pass within 3 mm of bone
    (> 300 HU)"`` (``"none"`` when nothing was dropped)."""
    phrases = _phrases(spec)
    parts = [f"{n} {phrases[key]}" for key, n in counts.items() if n]
    return "; ".join(parts) or "none"


def candidate_note(candidates: Candidates, spec: SeedSettings) -> str:
    """One line: how many needle lines were traced, kept and dropped by reason (for
    candidates traced by an approach; those assembled otherwise, as by ``seedopt.replan``,
    carry no counts)."""
    return (
        f"candidates: {candidates.n_needles} needles of {candidates.lines_traced} traced "
        f"lines; dropped: {describe(candidates.dropped, spec)}"
    )
