"""Plan outputs: plan.json, metrics.json, dose.h5 and the figures; rtplan.dcm and rtdose.dcm
too when the case came from DICOM (``seedopt.dicom``, docs/dicom.md). The set is written into
an ``OutputSet`` and appears at once (``seedopt.output_set``).

plan.json schema (positions in patient coordinates, mm)::

    {"schema": "seedopt-plan-1",
     "case": str, "method": str,
     "config": {"path": str, "sha256": str},   # the config planned from (absent if unknown)
     "source": {"model": str, "air_kerma_strength_u": float, "apparent_activity_mci": float,
                "half_life_d": float},
     "needles": [{"entry_mm": [x, y, z], "tip_mm": [x, y, z],
                  "template_hole": [column, row] | null,
                  "seeds_mm": [[x, y, z], ...]}, ...]}

Every seed lies on its needle's line and is oriented along it (entry -> tip).
dose.h5: dataset ``dose_gy`` (z, y, x) float32, group ``masks`` (one boolean dataset per
structure), attributes ``origin_mm`` (x, y, z of the centre of voxel [0, 0, 0]) and
``spacing_mm`` (x, y, z).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_h5, atomic_path
from .output_set import OutputSet
from .plan_dir import config_record
from .planning import Plan

PLAN_SCHEMA = "seedopt-plan-1"
RESULT_FILES = (
    "plan.json",
    "metrics.json",
    "dose.h5",
    "dvh.png",
    "slices.png",
    "rtplan.dcm",
    "rtdose.dcm",
    "rtdose_eqd2.dcm",
)
"""Every file a result set of ``plan`` or ``evaluate`` may hold."""


def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> null, NumPy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON (NaN as null), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean(data), indent=2) + "\n")


def plan_document(plan: Plan, config: Path | None = None) -> dict[str, Any]:
    """The plan.json content; ``config``, the file the plan's spec was read from, is recorded
    by path and SHA-256 (``seedopt.plan_dir``)."""
    src = plan.source
    loaded = plan.loaded
    needles = []
    for k in plan.used_needles():
        n = plan.candidates.needles[k]
        on = loaded & (plan.candidates.seed_needle == k)
        needles.append(
            {
                "entry_mm": np.round(n.entry_mm, 3).tolist(),
                "tip_mm": np.round(n.tip_mm, 3).tolist(),
                "template_hole": list(n.hole) if n.hole is not None else None,
                "seeds_mm": np.round(plan.candidates.seeds_mm[on], 3).tolist(),
            }
        )
    doc: dict[str, Any] = {
        "schema": PLAN_SCHEMA,
        "case": plan.case.name,
        "method": plan.result.method,
    }
    if config is not None:
        doc["config"] = config_record(config)
    return doc | {
        "source": {
            "model": src.model.model_id,
            "air_kerma_strength_u": src.air_kerma_strength_u,
            "apparent_activity_mci": src.apparent_activity_mci,
            "half_life_d": src.half_life_d,
        },
        "needles": needles,
    }


def write_dose_h5(path: Path, plan: Plan) -> None:
    """dose.h5 (layout in the module docstring), atomically."""
    with atomic_h5(path) as f:
        f.create_dataset("dose_gy", data=plan.dose_gy.astype(np.float32), compression="gzip")
        f["dose_gy"].attrs["units"] = "Gy (permanent-implant total)"
        grp = f.create_group("masks")
        for name, m in plan.case.masks.items():
            grp.create_dataset(name, data=m, compression="gzip")
        f.attrs["origin_mm"] = plan.case.grid.origin_mm
        f.attrs["spacing_mm"] = plan.case.grid.spacing_mm


def write_outputs(plan: Plan, outputs: OutputSet, config: Path | None = None) -> list[str]:
    """plan.json (recording ``config``), metrics.json, dose.h5, dvh.png and slices.png (and the
    DICOM files) into ``outputs``, which publishes them together when its ``with`` block
    ends."""
    from .figures import dvh_figure, slice_figure

    writers = {
        "plan.json": lambda path: write_json(path, plan_document(plan, config)),
        "metrics.json": lambda path: write_json(path, plan.metrics.to_json()),
        "dose.h5": lambda path: write_dose_h5(path, plan),
        "dvh.png": lambda path: dvh_figure(plan, path),
        "slices.png": lambda path: slice_figure(plan, path),
    }
    for name, write in writers.items():
        with outputs.writing(name) as folder:
            write(folder / name)
    if plan.spec.dicom is not None:
        from .dicom import write_dicom_outputs

        with outputs.writing("rtplan.dcm and rtdose.dcm (and rtdose_eqd2.dcm)") as folder:
            write_dicom_outputs(plan, folder)
    return outputs.names()
