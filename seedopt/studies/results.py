"""The HDF5 files of a batch: one part file per finished task, written atomically, and
``results.h5`` assembled atomically from the parts. Layout (docs/studies.md)::

    results.h5
      attrs: schema = "seedopt-batch-1", n_tasks, created_utc
      summary            compound dataset, one row per task (SUMMARY_COLUMNS)
      tasks/<key>/       one group per task, key = "<case>__<variant>"
        attrs: case, variant, config, method, seed, digest, status ("ok" | "failed"),
               error, goals_met, n_goals_missed, plan_s, task_s, metrics_json
        seeds_mm (n, 3) float64       loaded seed centres, mm      (status "ok" only)
        seed_axes (n, 3) float64      their needle directions      (status "ok" only)
        loaded_index (n,) int64       indices of the loaded candidates
        needles (k,) int64            indices of the used candidate needles
        dose_gy (z, y, x) float32     only with ``--save-dose``

A part file ``parts/<key>.h5`` holds one ``tasks/<key>`` group laid out the same way.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_h5
from ..errors import SeedoptError
from ..plan_metrics import PlanMetrics

SCHEMA = "seedopt-batch-1"
TEXT_COLUMNS = ("key", "case", "variant", "method", "status", "error")
NUMBER_COLUMNS = (
    "seed",
    "goals_met",
    "n_goals_missed",
    "D90_gy",
    "V100_pct",
    "V150_pct",
    "V200_pct",
    "n_seeds",
    "n_needles",
    "objective",
    "plan_s",
    "task_s",
)
SUMMARY_COLUMNS = TEXT_COLUMNS + NUMBER_COLUMNS
ARRAYS = ("seeds_mm", "seed_axes", "loaded_index", "needles", "dose_gy")


def part_path(parts: Path, key: str) -> Path:
    return parts / f"{key}.h5"


def write_part(parts: Path, record: dict[str, Any]) -> Path:
    """Write one task's record (``attrs`` and ``arrays``) as ``parts/<key>.h5``, atomically:
    the file is either absent or complete."""

    parts.mkdir(parents=True, exist_ok=True)
    path = part_path(parts, record["attrs"]["key"])
    with atomic_h5(path) as f:
        _write_group(f.create_group(f"tasks/{record['attrs']['key']}"), record)
        f.attrs["schema"] = SCHEMA
    return path


def _write_group(g: Any, record: dict[str, Any]) -> None:
    for name, value in record["attrs"].items():
        g.attrs[name] = value
    for name, array in record.get("arrays", {}).items():
        compression = "gzip" if name == "dose_gy" else None
        g.create_dataset(name, data=array, compression=compression)


def read_part(parts: Path, key: str, digest: str) -> dict[str, Any] | None:
    """The record of a finished task whose inputs had ``digest``, or None (no part, a part
    of other inputs, or a damaged one: it does not open, its metrics do not read back, or
    its seed arrays disagree; such a task is planned again)."""
    import h5py

    path = part_path(parts, key)
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            g = f[f"tasks/{key}"]
            attrs = {k: _plain(v) for k, v in g.attrs.items()}
            arrays = {k: np.asarray(g[k]) for k in g if k in ARRAYS}
        if attrs.get("digest") != digest or attrs.get("key") != key:
            return None
        summary_row(attrs)  # its metrics read back
    except (OSError, KeyError, ValueError, SeedoptError):
        return None
    if attrs.get("status") == "ok" and not _seeds_agree(arrays):
        return None
    return {"attrs": attrs, "arrays": arrays}


def _seeds_agree(arrays: dict[str, np.ndarray]) -> bool:
    """An ok task's seeds: centres and axes (n, 3), n loaded indices."""
    n = len(arrays.get("loaded_index", ()))
    return all(arrays.get(k, np.empty(0)).shape == (n, 3) for k in ("seeds_mm", "seed_axes"))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def summary_row(attrs: dict[str, Any]) -> dict[str, Any]:
    """A task's row of the summary table (NaN where a failed task has no value)."""
    row: dict[str, Any] = {c: str(attrs.get(c, "")) for c in TEXT_COLUMNS}
    values = {
        "seed": attrs.get("seed"),
        "goals_met": attrs.get("goals_met"),
        "n_goals_missed": attrs.get("n_goals_missed"),
        "plan_s": attrs.get("plan_s"),
        "task_s": attrs.get("task_s"),
    }
    if attrs.get("metrics_json"):
        where = f"task {row['key']}: metrics_json"
        try:
            data = json.loads(attrs["metrics_json"])
        except ValueError as exc:
            raise SeedoptError(f"{where}: not JSON ({exc})") from None
        m = PlanMetrics.from_json(data, where)
        target = m.target_metrics()
        values.update(
            n_seeds=m.n_seeds,
            n_needles=m.n_needles,
            objective=m.objective,
            **{c: target.get(c) for c in ("D90_gy", "V100_pct", "V150_pct", "V200_pct")},
        )
    for c in NUMBER_COLUMNS:
        v = values.get(c)
        row[c] = float("nan") if v is None or v == "" else float(v)
    return row


def assemble(out: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write ``out`` (results.h5) from the task records, atomically."""
    import h5py

    records = sorted(records, key=lambda r: r["attrs"]["key"])
    rows = [summary_row(r["attrs"]) for r in records]
    text = h5py.string_dtype("utf-8")
    dtype = np.dtype([(c, text) for c in TEXT_COLUMNS] + [(c, "f8") for c in NUMBER_COLUMNS])
    table = np.array([tuple(row[c] for c in SUMMARY_COLUMNS) for row in rows], dtype=dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_h5(out) as f:
        f.attrs.update(
            schema=SCHEMA,
            n_tasks=len(records),
            created_utc=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        )
        f.create_dataset("summary", data=table)
        for r in records:
            _write_group(f.create_group(f"tasks/{r['attrs']['key']}"), r)
    return out


def read_summary(path: Path) -> Any:
    """The summary table of a results.h5 as a pandas DataFrame (text columns as str)."""
    import h5py
    import pandas as pd

    with h5py.File(path, "r") as f:
        frame = pd.DataFrame.from_records(f["summary"][()])
    for c in TEXT_COLUMNS:
        frame[c] = frame[c].map(lambda v: v.decode() if isinstance(v, bytes) else str(v))
    return frame
