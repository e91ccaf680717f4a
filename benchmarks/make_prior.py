"""Write the built-in re-irradiation cases' prior courses as real DICOM RT Dose files.

    python benchmarks/make_prior.py [--check]

``configs/cases/vertebral_reirradiation_prior.dcm``: 30 Gy in 10 fractions to the spine (a
posterior field over the vertebral body, the cord and the paraspinal muscles, x -35..35,
y 15..100, z -70..70 mm, 4 mm penumbra) on a 4 mm grid of its own, wider than the case's,
on the case's phantom frame of reference (``reirradiation.phantom_frame_uid``). ``--check``
compares the committed file with a fresh one instead of writing it (a test runs it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

CASE = "vertebral_reirradiation"
FILE = f"{CASE}_prior.dcm"
BOX_LO, BOX_HI = (-35.0, 15.0, -70.0), (35.0, 100.0, 70.0)
DOSE_GY, PENUMBRA_MM = 30.0, 4.0


def write(path: Path) -> None:
    from seedopt.case.grid import Grid
    from seedopt.dicom.files import Study, save
    from seedopt.dicom.rtdose import build_rtdose
    from seedopt.reirradiation import field_dose_gy, phantom_frame_uid

    grid = Grid.covering((-64.0, -24.0, -80.0), (100.0, 148.0, 80.0), 4.0)
    dose = field_dose_gy(grid.points_mm(), BOX_LO, BOX_HI, DOSE_GY, PENUMBRA_MM)
    study = Study(
        "seedopt^phantom",
        CASE,
        "",
        "",
        phantom_frame_uid(CASE + " study"),
        "1",
        "",
        "",
        "",
        "",
        phantom_frame_uid(CASE),
    )
    ds = build_rtdose(dose.reshape(grid.shape), grid, study, None)
    ds.DoseComment = "prior course: 30 Gy in 10 fractions to the spine"
    ds.DoseSummationType = "PLAN"
    save(ds, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    committed = Path(str(resources.files("seedopt.configs").joinpath("cases", FILE)))
    if not args.check:
        write(committed)
        print(f"wrote {committed}")
        return 0
    from seedopt.dicom.prior_dose import read_prior_dose
    from seedopt.reirradiation import phantom_frame_uid

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / FILE
        write(fresh)
        a = read_prior_dose(committed, phantom_frame_uid(CASE))
        b = read_prior_dose(fresh, phantom_frame_uid(CASE))
    same = np.array_equal(a.gy, b.gy) and np.array_equal(a.z_mm, b.z_mm)
    print("the committed prior course is " + ("current" if same else "STALE"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
