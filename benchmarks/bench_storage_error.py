"""Measured dose error of float16 matrix storage and of truncation radii on a clinical-size
implant. Not a timing benchmark: it answers "how much dose do these options lose?".

    python benchmarks/bench_storage_error.py

Implant: a 33.5 cc spherical target (radius 2 cm) loaded like the published vertebral
series (56 seeds of 0.7 mCi, model 6711, parallel needles 1 cm apart, seeds 7 mm apart);
a spinal cord (cylinder of radius 5 mm) 3.5 cm from the target's centre; a 3 mm skin shell
5 cm from it; dose on a 2 mm grid over a 16 cm cube. Reference: the float32 dense matrix.
Writes benchmarks/results/<date>-<machine>-storage-error.{json,md}.
"""

from __future__ import annotations

import json

import numpy as np
from _machine import machine, result_stem

from seedopt.dose import influence_matrix
from seedopt.sources import Source, get_model

VOXEL_CC = 0.2**3


def implant() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    g = np.arange(-79.0, 80.0, 2.0)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    points = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    rr = np.linalg.norm(points, axis=1)
    hole = np.arange(-15.0, 16.0, 10.0)
    along = np.arange(-18.0, 18.1, 7.0)
    seeds = np.array(
        [
            [hx, hy, hz]
            for hx in hole
            for hy in hole
            for hz in along
            if hx * hx + hy * hy + hz * hz <= 19.5**2
        ]
    )
    regions = {
        "target": rr <= 20.0,
        "cord": np.hypot(points[:, 0], points[:, 1] - 35.0) <= 5.0,
        "skin": (points[:, 1] <= -50.0) & (points[:, 1] > -53.0),
        "beyond 5 cm of every seed": np.min(
            np.linalg.norm(points[:, None, :] - seeds[None, :, :], axis=2), axis=1
        )
        > 50.0,
    }
    return points, seeds, regions


def dvh_points(dose: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, float]:
    target = np.sort(dose[regions["target"]])
    out = {"target D90 Gy": float(target[int(np.floor(0.1 * target.size))])}
    for name in ("cord", "skin"):
        d = np.sort(dose[regions[name]])[::-1]
        out[f"{name} Dmax Gy"] = float(d[0])
        out[f"{name} D0.1cc Gy"] = float(d[int(np.ceil(0.1 / VOXEL_CC)) - 1])
        out[f"{name} D2cc Gy"] = float(d[int(np.ceil(2.0 / VOXEL_CC)) - 1])
    return out


def main() -> None:
    points, seeds, regions = implant()
    source = Source.from_activity(get_model("6711"), 0.7)
    axes = [0.0, 0.0, 1.0]
    loading = np.ones(len(seeds))
    A = influence_matrix(points, seeds, axes, source)
    ref = A.astype(np.float64) @ loading
    ref_dvh = dvh_points(ref, regions)
    variants = {"float16 storage": influence_matrix(points, seeds, axes, source, storage="float16")}
    for cutoff in (30.0, 50.0, 70.0, 100.0):
        variants[f"truncated at {cutoff:.0f} mm"] = influence_matrix(
            points, seeds, axes, source, cutoff_mm=cutoff
        )
    rows = []
    for name, M in variants.items():
        dose = np.asarray(M.astype(np.float64) @ loading).ravel()
        err = dose - ref
        row: dict[str, object] = {"variant": name}
        for region, mask in regions.items():
            row[f"{region}: max |dD| Gy"] = float(np.max(np.abs(err[mask])))
            row[f"{region}: max |dD|/D"] = float(np.max(np.abs(err[mask]) / ref[mask]))
        dvh = dvh_points(dose, regions)
        for k, v in dvh.items():
            row[f"{k} change %"] = 100.0 * (v - ref_dvh[k]) / ref_dvh[k]
        row["storage MB"] = (
            (M.data.nbytes + M.indices.nbytes + M.indptr.nbytes) / 1e6
            if hasattr(M, "indptr")
            else M.nbytes / 1e6
        )
        rows.append(row)
    info = machine()
    summary = {
        "machine": info,
        "n_seeds": len(seeds),
        "n_points": len(points),
        "total_strength_u": source.air_kerma_strength_u * len(seeds),
        "reference": ref_dvh,
        "reference_storage_MB": A.nbytes / 1e6,
        "variants": rows,
    }
    stem = result_stem("storage-error")
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    keys = [k for k in rows[0] if k != "variant"]
    lines = [
        f"# Dose error of float16 storage and truncation, {info['date']}",
        "",
        f"{len(seeds)} seeds of 0.7 mCi (6711, {source.air_kerma_strength_u:.3f} U each) in a "
        f"33.5 cc sphere; {len(points)} points on a 2 mm grid; reference float32 dense "
        f"({A.nbytes / 1e6:.0f} MB). Reference values: "
        + ", ".join(f"{k} {v:.1f}" for k, v in ref_dvh.items())
        + ".",
        "",
        "Command: `python benchmarks/bench_storage_error.py`",
        "",
        "| quantity | " + " | ".join(r["variant"] for r in rows) + " |",
        "|---|" + "---|" * len(rows),
    ]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{r[k]:.3g}" for r in rows) + " |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
