"""Needle trajectories and seed positions along them (coplanar template, freehand)."""

from __future__ import annotations

from ..case import Case
from .base import Candidates, Needle
from .config import ApproachSpec, FreehandSpec, SeedSettings, TemplateSpec, load_approach_spec
from .drops import Drop, candidate_note
from .freehand import freehand_candidates
from .template import template_candidates


def build_candidates(case: Case, spec: TemplateSpec | FreehandSpec) -> Candidates:
    """Candidate needles and seeds for ``case`` by the approach ``spec`` names."""
    if spec.kind == "template":
        return template_candidates(case, spec)
    return freehand_candidates(case, spec)


__all__ = [
    "ApproachSpec",
    "Candidates",
    "Drop",
    "FreehandSpec",
    "Needle",
    "SeedSettings",
    "TemplateSpec",
    "build_candidates",
    "candidate_note",
    "freehand_candidates",
    "load_approach_spec",
    "template_candidates",
]
