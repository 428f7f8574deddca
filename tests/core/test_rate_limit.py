"""The per-customer token bucket: a burst at once, then the rate; nothing lost, nothing out of order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.rate_limit import CustomerLimiter


def test_a_burst_passes_then_the_rest_waits() -> None:
    lim = CustomerLimiter(rate_per_min=60, burst=3)
    assert lim.admit("flood", [1, 2, 3, 4, 5], now=0.0) == [1, 2, 3]
    assert lim.deferred() == {"flood": 3}
    assert lim.admit("flood", [6], now=0.1) == []  # waits behind 4 and 5
    assert lim.admit("calm", [7], now=0.1) == [7]  # everybody else goes straight through
    assert lim.ready(0.5) == []
    assert lim.ready(1.0) == ["flood"]


def test_waiting_messages_are_released_oldest_first_as_tokens_return() -> None:
    lim = CustomerLimiter(rate_per_min=60, burst=3)
    lim.admit("flood", [1, 2, 3, 4, 5, 6], now=0.0)
    assert lim.release("flood", [4, 5, 6], more_waiting=False, now=2.5) == [4, 5]
    assert lim.deferred() == {"flood": 5}
    assert lim.release("flood", [6], more_waiting=False, now=3.5) == [6]
    assert lim.deferred() == {}
    assert lim.admit("flood", [7], now=3.6) == []  # no token left yet, so it waits again
    assert lim.release("flood", [7], more_waiting=False, now=4.6) == [7]


def test_a_re_sent_message_costs_nothing() -> None:
    lim = CustomerLimiter(rate_per_min=1, burst=2)
    assert lim.admit("c", [1, 2], now=0.0) == [1, 2]
    assert lim.admit("c", [1, 2], now=1.0) == [1, 2]  # a sweep routing them again
    assert lim.admit("c", [3], now=1.0) == []


def test_idle_buckets_are_forgotten_but_not_deferred_ones() -> None:
    lim = CustomerLimiter(rate_per_min=60, burst=2)
    lim.admit("a", [1], now=0.0)
    lim.admit("b", [2, 3, 4], now=0.0)
    lim.forget_idle(now=10.0)
    assert len(lim) == 1 and lim.deferred() == {"b": 3}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CustomerLimiter(0, 1)
    with pytest.raises(ValueError):
        CustomerLimiter(10, 0)


@settings(max_examples=200, deadline=None)
@given(rate=st.integers(1, 600), burst=st.integers(1, 30),
       arrivals=st.lists(st.tuples(st.floats(0, 5), st.integers(1, 40)), min_size=1, max_size=40))
def test_every_message_gets_through_in_order_and_never_faster_than_the_bucket(
        rate: int, burst: int, arrivals: list[tuple[float, int]]) -> None:
    lim = CustomerLimiter(rate, burst)
    now, next_id, stored, delivered = 0.0, 1, [], []
    for gap, count in arrivals:  # the router's life: routes as they come, releases on its tick
        now += gap
        ids = list(range(next_id, next_id + count))
        next_id += count
        stored += ids
        delivered += lim.admit("c", ids, now)
        if "c" in lim.ready(now):
            waiting = [i for i in stored if i > lim.admitted_upto("c")]
            delivered += lim.release("c", waiting[:burst], len(waiting) > burst, now)
    while lim.deferred():
        now += 1.0
        if "c" in lim.ready(now):
            waiting = [i for i in stored if i > lim.admitted_upto("c")]
            delivered += lim.release("c", waiting[:burst], len(waiting) > burst, now)
    assert delivered == stored  # all of them, each once, oldest first
    assert len(delivered) <= burst + rate * now / 60 + 1e-9
