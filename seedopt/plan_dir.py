"""A plan's output folder read back: its plan.json and the config it was planned from.

``seedopt plan`` records the config's absolute path and SHA-256 in plan.json, so the commands
that work on a finished plan (``robustness``, ``replan``, ``template``, ``report``) need only
the folder. A config changed since is refused unless named explicitly, because the case it
describes may no longer be the one planned.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SeedoptError
from .plan_config import PlanSpec, load_plan_spec

PLAN_JSON_MAX_BYTES = 64 * 2**20
"""The largest plan.json read (seedopt's are tens of kB)."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_record(config: Path) -> dict[str, str]:
    """What plan.json keeps of the config: its absolute path and SHA-256."""
    return {"path": str(config.resolve()), "sha256": file_sha256(config)}


def read_json_file(path: Path, where: str, max_bytes: int) -> Any:
    """The JSON document in ``path``, or one error starting with ``where``: too large,
    unreadable or not JSON."""
    try:
        if path.stat().st_size > max_bytes:
            raise SeedoptError(f"{where}: larger than {max_bytes} bytes")
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SeedoptError(f"{where}: cannot read it: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise SeedoptError(f"{where}: not valid JSON ({exc})") from None


def read_plan_json(path: Path) -> dict[str, Any]:
    """A plan.json, or one error naming it: unreadable, not JSON, or without a needles list."""
    doc = read_json_file(path, str(path), PLAN_JSON_MAX_BYTES)
    if not isinstance(doc, dict) or not isinstance(doc.get("needles"), list):
        raise SeedoptError(f"{path}: not a seedopt plan.json (no needles list)")
    return doc


@dataclass(frozen=True)
class PlanDir:
    """A finished plan: its folder, plan.json, and the config (path and spec) of its case."""

    folder: Path
    document: dict[str, Any]
    config: Path
    spec: PlanSpec

    @classmethod
    def load(cls, folder: Path, config: Path | None = None) -> PlanDir:
        """The plan in ``folder``, on ``config`` when given, else on the config plan.json
        records (refused when it is missing or its contents changed since the plan)."""
        doc = read_plan_json(folder / "plan.json")
        if config is None:
            config = _recorded_config(folder / "plan.json", doc.get("config"))
        return cls(folder, doc, config, load_plan_spec(config))


def _recorded_config(where: Path, record: Any) -> Path:
    """The config plan.json names, checked against its recorded SHA-256."""
    if not (isinstance(record, dict) and {"path", "sha256"} <= record.keys()):
        raise SeedoptError(
            f"{where}: the plan records no config (made before seedopt kept one); "
            "name it with --config"
        )
    path = Path(str(record["path"]))
    if not path.is_file():
        raise SeedoptError(
            f"{where}: its config {path} is gone; name the case's config with --config"
        )
    if file_sha256(path) != record["sha256"]:
        raise SeedoptError(
            f"{where}: its config {path} changed since the plan was made; "
            "name it with --config to use it as it is now"
        )
    return path
