"""Freehand needles: skin entries over the target and a fan of directions round a reference.

For each direction of the fan a bundle of parallel lines, ``entry_spacing_mm`` apart across
the direction and covering the target's shadow, is traced through the case, so every path is
aimed through the target and enters the skin on the side the direction comes from. With an
entry window (``approach.entry_window``) the fan is round the window's normal and only lines
entering the skin inside the window are kept. Usable paths are then kept greedily, longest in
the target first, so that no two kept needles come closer than ``min_needle_distance_mm``
inside the target. Nothing is random: the same case and settings give the same needles.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..case import Case
from ..errors import SeedoptError
from .base import Candidates, Needle
from .config import FreehandSpec
from .drops import KEYS, Drop, count
from .keepouts import path_keepouts
from .seeds import SeedRegion, assemble, expanded_target, seeds_along
from .template import plane_basis, trace_lines, unusable_lines_message
from .window import resolve_window


def fan_directions(reference: ArrayLike, max_angle_deg: float, step_deg: float) -> np.ndarray:
    """(k, 3) unit directions: the reference, then rings every ``step_deg`` of tilt up to
    ``max_angle_deg``, each ring with about one direction per ``step_deg`` of arc."""
    r = np.asarray(reference, float) / np.linalg.norm(reference)
    u, v = plane_basis(r)
    dirs = [r]
    step = np.radians(step_deg)
    for tilt in step * np.arange(1, int(np.floor(max_angle_deg / step_deg + 1e-9)) + 1):
        n = max(3, int(round(2 * np.pi * np.sin(tilt) / step)))
        phi = 2 * np.pi * np.arange(n) / n
        ring = np.cos(tilt) * r + np.sin(tilt) * (
            np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v
        )
        dirs.extend(ring)
    return np.array(dirs)


def segment_distances(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """(n,) closest approach (mm) of segment ``a0``-``a1`` to each segment ``b0[i]``-``b1[i]``.

    Ericson, *Real-Time Collision Detection* (2005), section 5.1.9.
    """
    d1 = a1 - a0
    d2 = b1 - b0
    r = a0 - b0
    a = max(float(d1 @ d1), 1e-12)  # a point segment: b = c = 0, so s stays 0
    e = np.einsum("ij,ij->i", d2, d2)
    f = np.einsum("ij,ij->i", d2, r)
    c = r @ d1
    b = d2 @ d1
    denom = a * e - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(denom > 1e-12, np.clip((b * f - c * e) / denom, 0.0, 1.0), 0.0)
        # Where b is a point segment, t = -1 sends s to a's closest point to it below.
        t = np.where(e > 1e-12, (b * s + f) / e, -1.0)
    s = np.where(t < 0, np.clip(-c / a, 0.0, 1.0), s)
    s = np.where(t > 1, np.clip((b - c) / a, 0.0, 1.0), s)
    t = np.clip(t, 0.0, 1.0)
    gap = (a0 + s[:, None] * d1) - (b0 + t[:, None] * d2)
    return np.linalg.norm(gap, axis=1)


def freehand_candidates(case: Case, spec: FreehandSpec) -> Candidates:
    """Freehand needles within ``max_angle_deg`` of the fan's axis, and their seeds.

    The axis is ``reference_direction``, or the entry window's normal (``window``); with a
    window, only lines entering the skin inside it are kept.

    Raises
    ------
    SeedoptError
        When no path is usable (the message counts why) or none has a seed position.
    """
    grid = case.grid
    target = expanded_target(case, spec.target_margin_mm)
    target_pts = grid.points_mm(target)
    centre = target_pts.mean(axis=0)
    reach = np.linalg.norm(np.asarray(grid.shape) * np.asarray(grid.spacing_mm))
    keepouts = path_keepouts(case, spec)
    region = SeedRegion.of(case, spec)
    window = resolve_window(case, spec.entry_window) if spec.entry_window is not None else None
    if window is not None:
        axis = window.inward
    else:
        assert spec.reference_direction is not None  # FreehandSpec asks for one of the two
        axis = np.asarray(spec.reference_direction)

    entries, tips, starts, statuses = [], [], [], []
    for d in fan_directions(axis, spec.max_angle_deg, spec.angle_step_deg):
        u, v = plane_basis(d)
        across = (target_pts - centre) @ np.stack([u, v], axis=1)
        k_lo = np.floor(across.min(axis=0) / spec.entry_spacing_mm).astype(int)
        k_hi = np.ceil(across.max(axis=0) / spec.entry_spacing_mm).astype(int)
        ka, kb = np.meshgrid(
            np.arange(k_lo[0], k_hi[0] + 1), np.arange(k_lo[1], k_hi[1] + 1), indexing="ij"
        )
        offsets = spec.entry_spacing_mm * (ka.ravel()[:, None] * u + kb.ravel()[:, None] * v)
        origins = centre - reach * d + offsets  # upstream of the whole grid
        traces = trace_lines(case, origins, d, spec, target, keepouts, window)
        entries.append(traces.entry_mm)
        tips.append(traces.tip_mm)
        starts.append(traces.target_in_mm)
        statuses.append(traces.status)
    status = np.concatenate(statuses)
    ok = status == Drop.OK
    if not ok.any():
        raise SeedoptError(unusable_lines_message(status, spec))
    entry, tip, start = (np.concatenate(x)[ok] for x in (entries, tips, starts))

    needles = [Needle(e, t) for e, t in zip(entry, tip, strict=True)]
    seeds = [seeds_along(n, spec.seed_pitch_mm, region) for n in needles]
    seeded = [i for i, s in enumerate(seeds) if len(s)]
    dropped = count(status)
    if not seeded:
        return assemble(needles, seeds, spec, "freehand", dropped)  # raises, naming keep-outs
    length = np.linalg.norm(tip - start, axis=1)
    order = sorted(seeded, key=lambda i: -length[i])  # stable: ties keep the fan's order
    kept: list[int] = []
    for i in order:
        if len(kept) == spec.max_needles_considered:
            dropped[KEYS[Drop.OVER_LIMIT]] += 1
            continue
        if kept:
            gaps = segment_distances(start[i], tip[i], start[kept], tip[kept])
            if gaps.min() < spec.min_needle_distance_mm:
                dropped[KEYS[Drop.TOO_CLOSE]] += 1
                continue
        kept.append(i)
    dropped[KEYS[Drop.NO_SEED]] += len(needles) - len(seeded)
    return assemble([needles[i] for i in kept], [seeds[i] for i in kept], spec, "freehand", dropped)
