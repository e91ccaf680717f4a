"""Typed options of the optimizers: each method declares a frozen pydantic model (unknown keys
refused, ranges checked, defaults and descriptions in one place), and ``optimizer.options`` of
a config is validated against the chosen method's model when the config is loaded."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from seedopt.errors import SeedoptError
from seedopt.validation import format_validation_error

M = TypeVar("M", bound="OptimizerOptions")


class OptimizerOptions(BaseModel):
    """The options of a method (this base: none). Frozen; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def replace(self: M, **changes: Any) -> M:
        """A copy with ``changes``, validated like the original (``model_copy`` is not)."""
        return parse_options(type(self), {**self.model_dump(exclude_unset=True), **changes})


def parse_options(
    model: type[M],
    options: M | Mapping[str, Any] | None,
    source: str | None = None,
    prefix: str = "",
) -> M:
    """``options`` (a mapping, an instance of ``model`` or None: the defaults) validated
    against ``model``; else a ``SeedoptError`` ``source: prefix.key: what is wrong`` naming
    the closest valid key for an unknown one (``source`` default: the model's name)."""
    if isinstance(options, model):
        return options
    source = source or model.__name__
    if isinstance(options, BaseModel) or not isinstance(options, Mapping | None):
        raise SeedoptError(f"{source}: {prefix or 'options'}: expected a mapping of option names")
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        raise SeedoptError(format_validation_error(exc, source, model, prefix)) from None


def describe_options(model: type[OptimizerOptions]) -> list[tuple[str, str, str]]:
    """(name, default as YAML writes it, description) of every option of ``model``, for
    documentation."""
    rows = []
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = default.model_dump() if isinstance(default, BaseModel) else default
        text = shown if isinstance(shown, str) else json.dumps(shown)
        rows.append((name, text, field.description or ""))
    return rows
