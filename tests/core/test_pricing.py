"""The quote (core/pricing.py): the band by complexity, text makes it high-value, the position by the measures."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.pricing import BANDS, TEXT_BAND, price_band, quote
from protocol.image import Analysis, Complexity

FAST = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
C = Complexity
measures = st.floats(min_value=0, max_value=100, allow_nan=False)


def photo(complexity: Complexity = C.NORMAL, has_text: bool = False, blur: float = 0.0, noise: float = 0.0,
          damage: float = 0.0) -> Analysis:
    return Analysis(width=800, height=600, complexity=complexity, has_text=has_text, blur=blur, noise=noise,
                    damage=damage)


def test_bands_are_specs() -> None:
    assert BANDS == {C.SIMPLE: (10, 15), C.NORMAL: (15, 20), C.COMPLEX: (20, 25), C.HARD: (25, 30)}
    assert TEXT_BAND == (60, 80)


@pytest.mark.parametrize("complexity", list(Complexity))
def test_a_clean_photo_costs_the_bottom_of_its_band_and_a_wrecked_one_the_top(complexity: Complexity) -> None:
    low, high = BANDS[complexity]
    assert quote(photo(complexity)) == low
    assert quote(photo(complexity, blur=100, noise=100, damage=100)) == high
    assert low < quote(photo(complexity, blur=50, noise=50, damage=50)) < high


@pytest.mark.parametrize("complexity", list(Complexity))
def test_text_in_the_image_makes_it_a_60_to_80_order(complexity: Complexity) -> None:
    assert price_band(photo(complexity, has_text=True)) == (60, 80)
    assert quote(photo(complexity, has_text=True)) == 60
    assert quote(photo(complexity, has_text=True, blur=100, noise=100, damage=100)) == 80


def test_out_of_range_measures_are_clamped() -> None:
    assert quote(photo(C.SIMPLE, blur=-20, noise=-1)) == 10
    assert quote(photo(C.SIMPLE, blur=500, noise=500, damage=500)) == 15
    assert quote(photo(C.SIMPLE, blur=float("nan"))) == 10


@FAST
@given(complexity=st.sampled_from(list(Complexity)), has_text=st.booleans(), blur=measures, noise=measures,
       damage=measures)
def test_the_quote_is_a_whole_yuan_inside_its_band_and_deterministic(
    complexity: Complexity, has_text: bool, blur: float, noise: float, damage: float
) -> None:
    analysis = photo(complexity, has_text, blur, noise, damage)
    low, high = price_band(analysis)
    price = quote(analysis)
    assert isinstance(price, int) and low <= price <= high
    assert quote(photo(complexity, has_text, blur, noise, damage)) == price
    assert (low, high) == (TEXT_BAND if has_text else BANDS[complexity])


@FAST
@given(complexity=st.sampled_from(list(Complexity)), blur=measures, noise=measures, damage=measures,
       worse=st.floats(min_value=0, max_value=100, allow_nan=False))
def test_a_worse_photo_never_costs_less(complexity: Complexity, blur: float, noise: float, damage: float,
                                        worse: float) -> None:
    base = quote(photo(complexity, blur=blur, noise=noise, damage=damage))
    assert quote(photo(complexity, blur=max(blur, worse), noise=noise, damage=damage)) >= base
    assert quote(photo(complexity, blur=blur, noise=max(noise, worse), damage=damage)) >= base
    assert quote(photo(complexity, blur=blur, noise=noise, damage=max(damage, worse))) >= base
