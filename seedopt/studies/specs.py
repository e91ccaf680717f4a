"""Plan configs for studies: loading several at once, variants (overrides merged into a
config and validated again) and level ranges such as ``100:180:10``."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ..case.config import format_validation_error, read_yaml
from ..config_types import MAX_MAGNITUDE
from ..errors import SeedoptError
from ..optimizer import AnnealOptions, HybridOptions
from ..plan_config import PlanSpec, load_plan_spec


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, key by key through nested mappings."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def spec_with(spec: PlanSpec, overrides: dict[str, Any], where: str) -> PlanSpec:
    """``spec`` with ``overrides`` applied; a bad override names its key and ``where``."""
    data = merged(spec.model_dump(mode="json", exclude_unset=True), overrides)
    try:
        return PlanSpec.model_validate(data)
    except ValidationError as exc:
        raise SeedoptError(format_validation_error(exc, where, PlanSpec)) from None


def anneal_options(spec: PlanSpec, **changes: Any) -> AnnealOptions:
    """The annealing options of ``spec`` (its options under ``anneal``, its annealing stage
    under ``hybrid``, else anneal's defaults) with ``changes`` on top, validated."""
    options = spec.optimizer.options_for()
    if isinstance(options, HybridOptions):
        options = options.anneal_options
    if not isinstance(options, AnnealOptions):
        options = AnnealOptions()
    return options.replace(**changes) if changes else options


def load_variants(path: Path | None) -> dict[str, dict[str, Any]]:
    """Variant name -> overrides, from a YAML mapping; ``{"base": {}}`` without a file."""
    if path is None:
        return {"base": {}}
    data = read_yaml(Path(path), "variants file")
    if not data:
        raise SeedoptError(f"{path}: variants must be a non-empty mapping name -> overrides")
    for name, overrides in data.items():
        if not isinstance(overrides, dict):
            raise SeedoptError(f"{path}: variant {name!r} must map config keys to new values")
        if not str(name).replace("-", "").replace("_", "").isalnum():
            raise SeedoptError(f"{path}: variant name {name!r}: use letters, digits, - and _")
    return {str(k): v for k, v in data.items()}


def load_specs(paths: list[Path]) -> list[tuple[Path, PlanSpec]]:
    """Every config validated up front, so a bad one stops the study before it starts.
    Case names must differ (they name the results)."""
    if not paths:
        raise SeedoptError("give one or more plan configs")
    specs = [(Path(p), load_plan_spec(p)) for p in paths]
    seen: dict[str, Path] = {}
    for path, spec in specs:
        if spec.name in seen:
            raise SeedoptError(f"{path} and {seen[spec.name]} both name their case {spec.name!r}")
        seen[spec.name] = path
    return specs


def spec_digest(spec: PlanSpec, *extra: Any) -> str:
    """A short hash of a validated config and anything else that decides a result."""
    text = json.dumps([spec.model_dump(mode="json"), *extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


MAX_LEVELS = 10_000
"""Most levels one sweep option may give."""


def parse_levels(text: str, what: str) -> np.ndarray:
    """``start:stop:step`` (stop included when the steps reach it) or ``a,b,c`` -> levels,
    each positive, finite and at most ``MAX_MAGNITUDE``; at most ``MAX_LEVELS`` of them."""
    usage = (
        f"{what} {text!r}: give start:stop:step with step > 0 and stop >= start, "
        "or a comma-separated list"
    )
    try:
        parts = [float(v) for v in text.split(":" if ":" in text else ",")]
    except ValueError:
        raise SeedoptError(usage) from None
    if not all(math.isfinite(v) and 0 < v <= MAX_MAGNITUDE for v in parts):
        which = "start, stop and step" if ":" in text else "every level"
        raise SeedoptError(
            f"{what} {text!r}: {which} must be positive, finite numbers (at most {MAX_MAGNITUDE:g})"
        )
    if ":" not in text:
        levels = np.array(parts)
    else:
        if len(parts) != 3 or parts[1] < parts[0]:
            raise SeedoptError(usage)
        start, stop, step = parts
        n = math.floor((stop - start) / step + 1e-9) + 1
        if n > MAX_LEVELS:
            raise SeedoptError(f"{what} {text!r}: {n} levels; at most {MAX_LEVELS} (a larger step)")
        levels = start + step * np.arange(n)
    if levels.size > MAX_LEVELS:
        raise SeedoptError(f"{what}: {levels.size} levels; at most {MAX_LEVELS}")
    return levels
