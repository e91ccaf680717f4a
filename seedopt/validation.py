"""One-line messages from pydantic validation errors, naming the key and, for an unknown key,
the closest known one."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

NESTED = "seedopt_nested"
"""Error type of ``nested_error``: its key is appended to the error's location."""


def closest(name: str, known: Iterable[str], what: str = "structures") -> str:
    """`` (did you mean 'X'?)`` for the closest of ``known``, else `` (WHAT: a, b, c)``."""
    names = sorted(str(k) for k in known)
    match = difflib.get_close_matches(str(name), names, n=1)
    return f" (did you mean {match[0]!r}?)" if match else f" ({what}: {', '.join(names)})"


def nested_error(key: str, message: str) -> PydanticCustomError:
    """An error a validator raises for ``key`` below the value it checks (its location then
    reads ``field.key``)."""
    return PydanticCustomError(NESTED, "{message}", {"key": key, "message": message})


def _sub_model(model: type[BaseModel] | None, key: Any) -> type[BaseModel] | None:
    """The model of field ``key`` of ``model`` (through ``X | None``), or None."""
    field = model.model_fields.get(str(key)) if model is not None else None
    if field is None:
        return None
    ann = field.annotation
    candidates = (
        typing.get_args(ann)
        if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union
        else (ann,)
    )
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def first_error(exc: ValidationError, model: type[BaseModel] | None = None) -> tuple[str, str]:
    """The location (``a.b.c``) and message of the first error of ``exc``; for an unknown key
    of ``model`` (or of a model nested in it), the message names the closest known key."""
    err = exc.errors()[0]
    parts = [
        p
        for p in err["loc"]
        if not str(p).startswith(("function-after", "tagged-union", "constrained-", "tuple["))
    ]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == NESTED:
        parts += [err["ctx"]["key"]] if err["ctx"]["key"] else []
        msg = err["ctx"]["message"]
    if err["type"] == "unexpected_keyword_argument":  # a dataclass validated by pydantic
        msg = "unknown key"
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        owner = model
        for p in parts[:-1]:
            owner = _sub_model(owner, p)
        if owner is not None and parts:
            msg += closest(str(parts[-1]), owner.model_fields, "known keys")
    return ".".join(str(p) for p in parts), msg


def format_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel] | None = None, prefix: str = ""
) -> str:
    """``source: prefix.key: what is wrong`` for the first error of ``exc`` (``first_error``)."""
    loc, msg = first_error(exc, model)
    loc = ".".join(p for p in (prefix, loc) if p)
    return f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"
