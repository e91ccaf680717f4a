"""Candidates: template and freehand needles, and the seed positions along them.

Every approach must give needles that enter through the skin, reach the target's far side and
keep clear of nogo structures, with seeds on the needles, one pitch apart from the tip, inside
the target and clear of the skin and cord. Structure checks here are brute force: a point is
in a structure when its nearest voxel is, and its distance to a structure is the distance to
the structure's nearest voxel centre.
"""

from __future__ import annotations

import dataclasses
import itertools
from importlib import resources

import numpy as np
import pytest
from scipy.spatial import cKDTree

from seedopt.candidates import (
    Candidates,
    FreehandSpec,
    TemplateSpec,
    build_candidates,
    load_approach_spec,
)
from seedopt.candidates.freehand import fan_directions, segment_distances
from seedopt.case import Case, expand, load_case_spec
from seedopt.errors import SeedoptError

BACK = dict(kind="template", plane_point_mm=[24.0, 130.0, 0.0], direction=[0.0, -1.0, 0.0])
FRONT = dict(kind="freehand", reference_direction=[0.0, 1.0, 0.0])


def builtin(name: str) -> Case:
    path = resources.files("seedopt.configs").joinpath("cases", f"{name}.yaml")
    return Case.from_spec(load_case_spec(str(path)))


def approach(base: dict, **changes: object) -> TemplateSpec | FreehandSpec:
    return load_approach_spec({**base, **changes})


def inside(case: Case, mask: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    idx = case.grid.mm_to_index(np.asarray(points_mm).reshape(-1, 3))
    ok = case.grid.contains_index(idx)
    out = np.zeros(len(idx), bool)
    out[ok] = mask[tuple(idx[ok].T)]
    return out


def distance_mm(case: Case, mask: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """Distance to the nearest voxel centre of ``mask`` (all of them, brute force)."""
    return cKDTree(case.grid.points_mm(mask)).query(np.asarray(points_mm).reshape(-1, 3))[0]


def path_points(needle, step_mm: float = 0.1) -> np.ndarray:
    t = np.arange(0.0, needle.depth_mm + step_mm / 2, step_mm)
    return needle.entry_mm + t[:, None] * needle.direction


@pytest.fixture(scope="module")
def vertebral() -> Case:
    return builtin("vertebral")


@pytest.fixture(scope="module")
def chest_wall() -> Case:
    return builtin("chest_wall")


@pytest.fixture(scope="module")
def template(vertebral: Case) -> Candidates:
    return build_candidates(vertebral, approach(BACK))


@pytest.fixture(scope="module")
def freehand(chest_wall: Case) -> Candidates:
    return build_candidates(chest_wall, approach(FRONT))


@pytest.fixture(params=["template", "freehand"])
def planned(request, vertebral, chest_wall, template, freehand):
    """(case, spec, candidates) for each approach: template from the back on the vertebral
    phantom, freehand from the front on the chest wall."""
    if request.param == "template":
        return vertebral, approach(BACK), template
    return chest_wall, approach(FRONT), freehand


# --- every approach -----------------------------------------------------------------------


def test_candidates_have_needles_and_seeds(planned) -> None:
    _, spec, cands = planned
    assert cands.n_needles >= 10 and cands.n_seeds >= cands.n_needles
    assert cands.approach == spec.kind
    assert cands.seeds_mm.shape == (cands.n_seeds, 3)
    assert set(cands.seed_needle) == set(range(cands.n_needles))  # no needle without a seed


def test_needles_enter_through_the_skin(planned) -> None:
    case, _, cands = planned
    entries = np.array([n.entry_mm for n in cands.needles])
    assert inside(case, case.masks[case.body], entries).all()
    assert (distance_mm(case, ~case.masks[case.body], entries) <= 2.5).all()
    before = entries - 0.5 * np.array([n.direction for n in cands.needles])
    assert not inside(case, case.masks[case.body], before).any()


def test_needles_end_at_the_targets_far_side(planned) -> None:
    case, _, cands = planned
    target = case.masks[case.target]
    for n in cands.needles:
        assert inside(case, target, n.tip_mm)[0]
        beyond = n.tip_mm + np.arange(1.0, 150.0, 0.25)[:, None] * n.direction
        assert not inside(case, target, beyond).any()


def test_needle_paths_keep_the_nogo_margin(planned) -> None:
    case, spec, cands = planned
    nogo = np.logical_or.reduce([case.masks[name] for name in case.nogo])
    for n in cands.needles:
        assert distance_mm(case, nogo, path_points(n)).min() >= spec.nogo_margin_mm


def test_needles_are_no_deeper_than_allowed(planned) -> None:
    _, spec, cands = planned
    assert max(n.depth_mm for n in cands.needles) <= spec.max_depth_mm


def test_seeds_lie_on_their_needles_a_whole_pitch_from_the_tip(planned) -> None:
    _, spec, cands = planned
    for seed, i in zip(cands.seeds_mm, cands.seed_needle, strict=True):
        n = cands.needles[i]
        back = (n.tip_mm - seed) @ n.direction
        off_axis = np.linalg.norm(n.tip_mm - seed - back * n.direction)
        assert off_axis < 1e-6
        assert 0.0 <= back <= n.depth_mm + 1e-9
        assert back / spec.seed_pitch_mm == pytest.approx(round(back / spec.seed_pitch_mm))
    np.testing.assert_allclose(cands.axes()[0], cands.needles[cands.seed_needle[0]].direction)


def test_seeds_lie_in_the_target_clear_of_skin_and_cord(planned) -> None:
    case, spec, cands = planned
    assert inside(case, case.masks[case.target], cands.seeds_mm).all()
    outside = distance_mm(case, ~case.masks[case.body], cands.seeds_mm)
    assert outside.min() >= spec.skin_keepout_mm
    if case.cord:
        assert distance_mm(case, case.masks[case.cord], cands.seeds_mm).min() >= 10.0


# --- template -----------------------------------------------------------------------------


def test_template_needles_run_along_the_template_direction(template) -> None:
    for n in template.needles:
        np.testing.assert_allclose(n.direction, [0.0, -1.0, 0.0], atol=1e-12)


def test_template_holes_lie_on_a_lattice_centred_on_the_target(vertebral) -> None:
    cands = build_candidates(vertebral, approach(BACK, size_mm=80))
    centroid = vertebral.grid.points_mm(vertebral.masks[vertebral.target]).mean(axis=0)
    for n in cands.needles:
        col, row = n.hole
        assert 0 <= col <= 16 and 0 <= row <= 16  # 80 mm wide, 5 mm pitch: 17 x 17 holes
        # columns run along patient x, rows along z; hole (8, 8) faces the target's centroid
        assert n.entry_mm[0] - centroid[0] == pytest.approx(5.0 * (col - 8))
        assert n.entry_mm[2] - centroid[2] == pytest.approx(5.0 * (row - 8))
    for a, b in itertools.combinations(cands.needles, 2):
        across = (a.entry_mm - b.entry_mm)[[0, 2]]
        np.testing.assert_allclose(across / 5.0, np.round(across / 5.0), atol=1e-9)


def test_template_holes_over_the_spinal_canal_are_refused(vertebral, template) -> None:
    no_nogo = build_candidates(dataclasses.replace(vertebral, nogo=()), approach(BACK))
    over_canal = [n for n in no_nogo.needles if abs(n.entry_mm[0]) <= 12.0]
    assert over_canal
    assert all(abs(n.entry_mm[0]) > 12.0 for n in template.needles)


def test_template_seed_margin_lets_seeds_past_the_target_edge(vertebral) -> None:
    cands = build_candidates(vertebral, approach(BACK, target_margin_mm=3))
    gtv = vertebral.masks[vertebral.target]
    assert not inside(vertebral, gtv, cands.seeds_mm).all()
    assert inside(vertebral, expand(gtv, 3.0, vertebral.grid), cands.seeds_mm).all()


def test_template_max_depth_drops_deep_holes(vertebral, template) -> None:
    shallow = build_candidates(vertebral, approach(BACK, max_depth_mm=85))
    assert 0 < shallow.n_needles < template.n_needles
    assert max(n.depth_mm for n in shallow.needles) <= 85.0
    with pytest.raises(SeedoptError, match="max_depth_mm=40"):
        build_candidates(vertebral, approach(BACK, max_depth_mm=40))


def test_template_facing_away_from_the_target_is_an_error(vertebral) -> None:
    with pytest.raises(SeedoptError, match=r"approach\.direction: the target lies behind"):
        build_candidates(vertebral, approach(BACK, direction=[0, 1, 0]))


def test_template_plane_inside_the_body_is_an_error(vertebral) -> None:
    with pytest.raises(SeedoptError, match=r"approach\.plane_point_mm: .* inside the body"):
        build_candidates(vertebral, approach(BACK, plane_point_mm=[24, 100, 0]))


# --- freehand -----------------------------------------------------------------------------


def test_freehand_needles_tilt_at_most_max_angle(freehand) -> None:
    tilts = [np.degrees(np.arccos(n.direction[1])) for n in freehand.needles]
    assert max(tilts) <= 20.0 + 1e-6
    assert all(n.hole is None for n in freehand.needles)


def test_freehand_needles_keep_their_distance_inside_the_target(chest_wall, freehand) -> None:
    target = chest_wall.masks[chest_wall.target]
    within = [p[inside(chest_wall, target, p)] for p in map(path_points, freehand.needles)]
    for a, b in itertools.combinations(within, 2):
        # sampled in-target chords may reach half a trace step past the ones compared
        assert cKDTree(b).query(a)[0].min() >= 5.0 - 0.5


def test_freehand_is_deterministic(chest_wall, freehand) -> None:
    again = build_candidates(chest_wall, approach(FRONT))
    assert again.key() == freehand.key()
    for a, b in zip(again.needles, freehand.needles, strict=True):
        np.testing.assert_array_equal(a.entry_mm, b.entry_mm)


def test_freehand_respects_the_needle_cap_and_distance(chest_wall, freehand) -> None:
    assert build_candidates(chest_wall, approach(FRONT, max_needles_considered=5)).n_needles == 5
    dense = build_candidates(chest_wall, approach(FRONT, min_needle_distance_mm=2.0))
    assert dense.n_needles > freehand.n_needles


def test_freehand_with_no_usable_path_is_an_error(chest_wall) -> None:
    with pytest.raises(SeedoptError, match="max_depth_mm=3"):
        build_candidates(chest_wall, approach(FRONT, max_depth_mm=3))


def test_fan_holds_the_reference_and_rings_up_to_max_angle() -> None:
    fan = fan_directions([0.0, 1.0, 0.0], 20.0, 10.0)
    tilt = np.degrees(np.arccos(np.clip(fan[:, 1], -1, 1)))
    np.testing.assert_allclose(np.linalg.norm(fan, axis=1), 1.0)
    assert tilt[0] == 0.0
    assert sorted(set(np.round(tilt).astype(int))) == [0, 10, 20]
    assert len(fan) == len(np.unique(np.round(fan, 9), axis=0))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (([0, 0, 0], [10, 0, 0]), ([5, -5, 3], [5, 5, 3]), 3.0),  # crossing
        (([0, 0, 0], [10, 0, 0]), ([0, 4, 0], [10, 4, 0]), 4.0),  # parallel
        (([0, 0, 0], [10, 0, 0]), ([13, 4, 0], [20, 4, 0]), 5.0),  # end to end
        (([0, 0, 0], [10, 0, 0]), ([5, 2, 0], [5, 2, 0]), 2.0),  # a point
    ],
)
def test_segment_distance_is_the_closest_approach(a, b, expected) -> None:
    a0, a1 = (np.array(p, float) for p in a)
    b0, b1 = (np.array([p], float) for p in b)
    assert segment_distances(a0, a1, b0, b1)[0] == pytest.approx(expected)
    assert segment_distances(b0[0], b1[0], a0[None], a1[None])[0] == pytest.approx(expected)


# --- configuration ------------------------------------------------------------------------


def test_approach_defaults_and_normalised_direction() -> None:
    spec = approach(BACK, direction=[0, -2, 0])
    assert isinstance(spec, TemplateSpec)
    assert spec.direction == (0.0, -1.0, 0.0)
    assert (spec.hole_pitch_mm, spec.size_mm, spec.seed_pitch_mm) == (5.0, 100.0, 5.0)
    assert (spec.skin_keepout_mm, spec.cord_keepout_mm, spec.nogo_margin_mm) == (5.0, 10.0, 3.0)
    free = approach(FRONT)
    assert isinstance(free, FreehandSpec)
    assert (free.max_angle_deg, free.min_needle_distance_mm, free.max_needles_considered) == (
        20.0,
        5.0,
        400,
    )


@pytest.mark.parametrize(
    ("base", "change", "message"),
    [
        (BACK, {"direction": [0, 0, 0]}, r"approach\.direction: must be a non-zero vector"),
        (FRONT, {"reference_direction": [0, 0, 0]}, r"approach\.reference_direction: .*non-zero"),
        (BACK, {"hole_spacing_mm": 5}, r"approach\.hole_spacing_mm: unknown key"),
        (BACK, {"hole_pitch_mm": -5}, r"approach\.hole_pitch_mm: .*greater than 0"),
        (FRONT, {"seed_pitch_mm": -5}, r"approach\.seed_pitch_mm: .*greater than 0"),
        (BACK, {"size_mm": 4}, r"approach\.size_mm: must be at least hole_pitch_mm"),
        (FRONT, {"max_angle_deg": 95}, r"approach\.max_angle_deg"),
        (BACK, {"kind": "templat"}, r"approach\.kind: must be 'template' or 'freehand'"),
    ],
)
def test_bad_approach_config_names_the_key(base, change, message) -> None:
    with pytest.raises(SeedoptError, match=message):
        approach(base, **change)
