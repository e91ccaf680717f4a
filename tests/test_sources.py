"""Source models and strengths: the consensus data as shipped, units and decay."""

from __future__ import annotations

import math

import pytest

from seedopt.errors import SeedoptError
from seedopt.sources import DEFAULT_HALF_LIFE_D, Source, get_model, known_models


def test_every_shared_i125_model_is_shipped_under_its_consensus_id() -> None:
    assert known_models() == ["6711", "2301", "I25.S06", "IAI-125A"]


@pytest.mark.parametrize(
    ("model_id", "lam", "length"),
    [
        ("6711", 0.965, 0.30),
        ("2301", 1.018, 0.40),
        ("I25.S06", 1.012, 0.35),
        ("IAI-125A", 0.981, 0.30),
    ],
)
def test_dose_rate_constant_and_active_length_are_the_consensus_values(
    model_id: str, lam: float, length: float
) -> None:
    m = get_model(model_id)
    assert m.dose_rate_constant == lam
    assert m.active_length_cm == length
    assert m.sk_per_mci == 1.270


@pytest.mark.parametrize(
    ("alias", "model_id"),
    [
        ("6711", "6711"),
        ("amersham6711", "6711"),
        ("OncoSeed 6711", "6711"),
        ("best2301", "2301"),
        ("i25s06", "I25.S06"),
        ("Bebig", "I25.S06"),
        ("IAI125A", "IAI-125A"),
        ("isoaid", "IAI-125A"),
    ],
)
def test_aliases_ignore_case_and_punctuation(alias: str, model_id: str) -> None:
    assert get_model(alias).model_id == model_id


def test_unknown_model_error_lists_the_known_ones() -> None:
    with pytest.raises(
        SeedoptError, match=r"unknown source model 'selectSeed'.*6711, 2301, I25.S06, IAI-125A"
    ):
        get_model("selectSeed")


def test_apparent_activity_converts_at_1_270_u_per_mci() -> None:
    s = Source.from_activity(get_model("6711"), 0.5)
    assert s.air_kerma_strength_u == pytest.approx(0.635)
    assert s.apparent_activity_mci == pytest.approx(0.5)


def test_mean_life_for_both_clinical_half_lives() -> None:
    m = get_model("6711")
    assert DEFAULT_HALF_LIFE_D == 59.4
    assert Source(m, 1.0).mean_life_h == pytest.approx(2056.71, abs=0.01)
    assert Source(m, 1.0, 59.6).mean_life_h == pytest.approx(2063.63, abs=0.01)


def test_dose_delivered_by_a_day_follows_the_decay() -> None:
    s = Source(get_model("6711"), 1.0)
    assert s.dose_fraction_delivered(0.0) == 0.0
    assert s.dose_fraction_delivered(59.4) == pytest.approx(0.5)
    assert s.dose_fraction_delivered(2 * 59.4) == pytest.approx(0.75)
    tau = s.mean_life_h
    assert s.dose_per_initial_rate_h(30.0) == pytest.approx(tau * (1 - math.exp(-30 * 24 / tau)))
    assert s.dose_per_initial_rate_h() == tau


@pytest.mark.parametrize("bad", [0.0, -0.3, float("nan"), float("inf")])
def test_non_positive_or_non_finite_strength_is_refused(bad: float) -> None:
    with pytest.raises(SeedoptError, match="positive"):
        Source(get_model("6711"), bad)
    with pytest.raises(SeedoptError, match="positive"):
        Source.from_activity(get_model("6711"), bad)


def test_non_positive_half_life_is_refused() -> None:
    with pytest.raises(SeedoptError, match="half_life_d"):
        Source(get_model("6711"), 1.0, 0.0)
