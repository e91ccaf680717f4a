"""Tiny plan configs for the study tests (the small case of test_planning, fewer iterations)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from test_planning import SMALL


def tiny_config(
    folder: Path, name: str, rx_gy: float = 120.0, iterations: int = 300, **changes: object
) -> Path:
    """A 4 cc case named ``name`` planned by 8 annealing chains; ``changes`` replace keys."""
    config = copy.deepcopy(SMALL)
    config.pop("metrics")
    config.update(name=name, prescription_gy=rx_gy, **changes)
    config["optimizer"] = {"method": "anneal", "options": {"iterations": iterations, "chains": 8}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def failing_config(folder: Path) -> Path:
    """A valid config whose planning fails: the template plane lies inside the body."""
    approach = {**SMALL["approach"], "plane_point_mm": [0, 0, 0]}
    return tiny_config(folder, "broken", approach=approach)
