"""The prior course's RT Dose read on its own grid and resampled at the case's points
(``seedopt.dicom.prior_dose``): an analytic dose field written as real RT Dose files of many
layouts comes back within 1 % on other grids; every layout the module refuses gives one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seedopt.case.grid import Grid
from seedopt.dicom.files import Study, save
from seedopt.dicom.prior_dose import read_prior_dose
from seedopt.dicom.rtdose import build_rtdose
from seedopt.errors import SeedoptError

FRAME = "1.2.826.0.1.3680043.8.498.1"
STUDY = Study("Test^Prior", "P1", "", "", "1.2.826.0.1.3680043.8.498.2", "1", "", "", "", "", FRAME)


def field(x, y, z):
    """A smooth analytic dose (Gy): a 30 Gy plateau-like Gaussian over the spine, 20 mm wide."""
    return 30.0 * np.exp(-((x - 5.0) ** 2 + (y + 3.0) ** 2) / (2 * 20.0**2)) + 0.05 * z + 3.0


def write(
    tmp_path: Path,
    name: str = "prior.dcm",
    *,
    bits: int = 32,
    decreasing: bool = False,
    units: str = "GY",
    absolute: bool = False,
    uneven: bool = False,
    **tags,
) -> Path:
    grid = Grid((-40.0, -45.0, -30.0), (2.5, 3.0, 4.0), (16, 31, 33))
    z = -30.0 + 4.0 * np.arange(16)
    if uneven:
        z = -30.0 + np.cumsum(np.r_[0.0, np.where(np.arange(15) % 2, 3.0, 5.0)])
    zz, yy, xx = np.meshgrid(
        z, -45.0 + 3.0 * np.arange(31), -40.0 + 2.5 * np.arange(33), indexing="ij"
    )
    dose = field(xx, yy, zz)
    scale = 100.0 if units == "CGY" else 1.0
    ds = build_rtdose(dose * scale, grid, STUDY, None, bits=bits)
    ds.DoseUnits = units
    offsets = z - z[0]
    if decreasing:  # frames stored from the top: first frame at the highest z
        ds.PixelData = (
            np.frombuffer(ds.PixelData, dtype=ds.pixel_array.dtype)
            .reshape(dose.shape)[::-1]
            .tobytes()
        )
        ds.ImagePositionPatient = [-40.0, -45.0, float(z[-1])]
        offsets = z[::-1] - z[-1]
    first = float(ds.ImagePositionPatient[2])
    ds.GridFrameOffsetVector = [round(float(v + (first if absolute else 0.0)), 4) for v in offsets]
    for k, v in tags.items():
        setattr(ds, k, v)
    path = tmp_path / name
    save(ds, path)
    return path


def case_points(n: int = 400, seed: int = 0) -> np.ndarray:
    """Points of another grid (offset, finer): inside the RT Dose's box."""
    g = np.random.default_rng(seed)
    return np.c_[g.uniform(-35, 35, n), g.uniform(-40, 40, n), g.uniform(-25, 25, n)]


@pytest.mark.parametrize(
    "layout",
    [
        {},
        {"bits": 16},
        {"decreasing": True},
        {"decreasing": True, "bits": 16},
        {"units": "CGY"},
        {"absolute": True},
        {"uneven": True},
    ],
    ids=[
        "32-bit",
        "16-bit",
        "decreasing-z",
        "decreasing-16-bit",
        "cGy",
        "absolute-offsets",
        "uneven-frames",
    ],
)
def test_an_analytic_dose_comes_back_within_1_percent_at_other_points(tmp_path, layout) -> None:
    prior = read_prior_dose(write(tmp_path, **layout), FRAME)
    p = case_points()
    got = prior.at(p)
    want = field(p[:, 0], p[:, 1], p[:, 2])
    np.testing.assert_allclose(got, want, rtol=0.01)
    assert np.all(np.diff(prior.z_mm) > 0)


def test_a_regular_case_grid_gets_the_dose_at_every_voxel_centre(tmp_path) -> None:
    prior = read_prior_dose(write(tmp_path), FRAME)
    grid = Grid((-20.0, -20.0, -10.0), (1.7, 1.7, 2.2), (8, 20, 20))
    p = grid.points_mm()
    np.testing.assert_allclose(prior.at(p), field(p[:, 0], p[:, 1], p[:, 2]), rtol=0.01)


@pytest.mark.parametrize(
    ("tags", "match"),
    [
        ({"FrameOfReferenceUID": "1.2.3.4"}, r"frame of reference 1\.2\.3\.4, not the case's"),
        ({"DoseUnits": "RELATIVE"}, r"DoseUnits RELATIVE: a physical dose in GY or CGY"),
        ({"DoseType": "EFFECTIVE"}, r"DoseType EFFECTIVE: the prior course's physical dose"),
        ({"ImageOrientationPatient": [0, 1, 0, 1, 0, 0]}, r"not axial"),
        ({"GridFrameOffsetVector": [7.0] * 16}, r"neither 0 \(relative\) nor"),
    ],
)
def test_what_cannot_be_summed_is_refused_in_one_line(tmp_path, tags, match) -> None:
    path = write(tmp_path, **({} if "DoseUnits" in tags else {}))
    import pydicom

    ds = pydicom.dcmread(path)
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(path)
    with pytest.raises(SeedoptError, match=match) as err:
        read_prior_dose(path, FRAME)
    assert "\n" not in str(err.value)


def test_a_structure_partly_outside_the_prior_dose_is_refused_saying_how_much(tmp_path) -> None:
    prior = read_prior_dose(write(tmp_path), FRAME)
    inside = case_points(30)
    beyond = inside + np.array([0.0, 0.0, 200.0])
    prior.covering("SpinalCord", inside)  # covered: no error
    with pytest.raises(
        SeedoptError,
        match=r"does not cover SpinalCord: 10 of its 40 points "
        r"\(25\.0 %\) lie outside",
    ):
        prior.covering("SpinalCord", np.r_[inside, beyond[:10]])
