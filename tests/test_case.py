"""Cases: grids, phantoms of the treated sites, margins, skin, config errors, HDF5 files."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage

from seedopt.case import Case, Grid, expand, load_case_spec, skin_shell
from seedopt.errors import SeedoptError

SITES = ["chest_wall", "vertebral", "head_neck", "cervical_node", "trunk_sarcoma"]


def builtin(name: str) -> Case:
    path = resources.files("seedopt.configs").joinpath("cases", f"{name}.yaml")
    return Case.from_spec(load_case_spec(str(path)))


def distance_outside_body_mm(case: Case) -> np.ndarray:
    s = case.grid.spacing_mm
    return ndimage.distance_transform_edt(case.masks[case.body], sampling=(s[2], s[1], s[0]))


@pytest.mark.parametrize(
    ("site", "low_cc", "high_cc"),
    [
        ("chest_wall", 10, 25),
        ("vertebral", 20, 40),
        ("head_neck", 10, 25),
        ("cervical_node", 3, 15),
        ("trunk_sarcoma", 270, 330),
    ],
)
def test_builtin_phantoms_have_the_sites_target_volumes(site, low_cc, high_cc) -> None:
    case = builtin(site)
    assert low_cc <= case.volume_cc(case.target) <= high_cc
    target = case.masks[case.target]
    assert not (target & ~case.masks[case.body]).any()
    assert case.masks[case.skin].any()


def test_chest_wall_target_lies_a_few_mm_under_the_skin() -> None:
    case = builtin("chest_wall")
    depth = distance_outside_body_mm(case)[case.masks[case.target]]
    assert 3.0 <= depth.min() <= 8.0


def test_vertebral_target_is_beside_the_cord() -> None:
    case = builtin("vertebral")
    s = case.grid.spacing_mm
    to_cord = ndimage.distance_transform_edt(~case.masks["SpinalCord"], sampling=(s[2], s[1], s[0]))
    gap = to_cord[case.masks[case.target]].min()
    assert 8.0 <= gap <= 20.0


def test_margin_expands_a_sphere_by_its_radius() -> None:
    grid = Grid.covering((-30, -30, -30), (30, 30, 30), 1.0)
    x, y, z = grid.coordinates_mm()
    sphere = (x * x + y * y + z * z) <= 10.0**2
    grown = expand(sphere, 5.0, grid)
    ratio = grown.sum() * grid.voxel_cc / (4 / 3 * math.pi * 15.0**3 / 1000)
    assert 0.94 <= ratio <= 1.0  # centre-to-centre distances: slightly conservative
    assert (grown & sphere).sum() == sphere.sum()


def test_skin_is_the_outer_shell_of_the_body() -> None:
    grid = Grid.covering((-40, -40, -40), (40, 40, 40), 1.0)
    x, y, z = grid.coordinates_mm()
    body = (x * x + y * y + z * z) <= 30.0**2
    skin = skin_shell(body, 3.0, grid)
    expected_cc = 4 / 3 * math.pi * (30.0**3 - 27.0**3) / 1000
    assert skin.sum() * grid.voxel_cc == pytest.approx(expected_cc, rel=0.15)
    r = np.sqrt(x * x + y * y + z * z)
    assert not (skin & (r < 26.0)).any()
    assert skin[body & (r > 29.0)].all()


def test_no_skin_where_the_grid_cuts_the_body() -> None:
    grid = Grid.covering((-20, -20, -20), (20, 20, 20), 2.0)
    x, y, _ = grid.coordinates_mm()
    body = np.broadcast_to((x * x + y * y) <= 15.0**2, grid.shape).copy()  # cylinder along z
    skin = skin_shell(body, 3.0, grid)
    inner = (x * x + y * y) < 10.0**2
    assert not (skin & np.broadcast_to(inner, grid.shape)).any()  # not on the cut faces


def test_target_margin_makes_a_planning_target() -> None:
    spec = load_case_spec(
        str(resources.files("seedopt.configs").joinpath("cases", "vertebral.yaml"))
    )
    case = Case.from_spec(spec.model_copy(update={"target_margin_mm": 4.0}))
    assert case.target == "GTV+4mm"
    assert case.volume_cc("GTV+4mm") > 1.5 * case.volume_cc("GTV")


def test_case_file_round_trip(tmp_path: Path) -> None:
    case = builtin("cervical_node")
    path = tmp_path / "case.h5"
    case.save_h5(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.h5"]
    back = Case.load_h5(path)
    assert back.grid == case.grid and back.roles() == case.roles()
    for name, m in case.masks.items():
        np.testing.assert_array_equal(back.masks[name], m)
    with h5py.File(path) as f:
        assert f["masks/GTV"].shape == case.grid.shape and f["masks/GTV"].dtype == bool


def test_a_file_that_is_not_a_case_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "something"
    with pytest.raises(SeedoptError, match="not a seedopt case file"):
        Case.load_h5(path)


BASE = {
    "name": "t",
    "grid": {"min_mm": [-20, -20, -20], "max_mm": [20, 20, 20]},
    "structures": {
        "BODY": {"shape": "cylinder", "center_mm": [0, 0, 0], "radii_mm": [50, 50]},
        "GTV": {"shape": "ellipsoid", "center_mm": [0, 0, 0], "radii_mm": [8, 8, 8]},
    },
    "roles": {"target": "GTV", "body": "BODY"},
}


def with_change(path: list[str], value: object) -> dict:
    import copy

    d = copy.deepcopy(BASE)
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ["structures", "GTV", "radius_mm"],
            5,
            r"structures\.GTV\.ellipsoid\.radius_mm: unknown key",
        ),
        (
            ["structures", "GTV", "radii_mm"],
            [8, -1, 8],
            r"structures\.GTV\.ellipsoid\.radii_mm\.1: .*greater than 0",
        ),
        (["roles", "target"], "PTV", r"roles\.target: no structure named 'PTV' \(did you mean"),
        (["grid", "spacing_mm"], 0, r"grid\.spacing_mm: .*greater than 0"),
        (["target_margin_mm"], -3, r"target_margin_mm: .*greater than or equal to 0"),
        (["colour"], "red", r"colour: unknown key"),
        (["structures", "GTV", "shape"], "torus", r"structures\.GTV: .*tag 'torus'"),
    ],
)
def test_bad_configs_name_the_key(path, value, message) -> None:
    with pytest.raises(SeedoptError, match=message):
        load_case_spec(with_change(path, value), "case.yaml")


def test_a_target_outside_the_grid_is_refused() -> None:
    spec = load_case_spec(with_change(["structures", "GTV", "center_mm"], [200, 0, 0]))
    with pytest.raises(SeedoptError, match=r"roles\.target: structure 'GTV' has no voxels"):
        Case.from_spec(spec)


def test_no_target_role_is_refused() -> None:
    d = with_change(["roles"], {"body": "BODY"})
    with pytest.raises(SeedoptError, match=r"roles\.target: Field required"):
        load_case_spec(d)
