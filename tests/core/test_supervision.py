"""Root's supervision: killed-while-serving children come back at once; crash loops back off, then give up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.supervision import (
    BACKOFF_MAX_S,
    EARLY_DEATH_S,
    RESTART_INTENSITY,
    RESTART_WINDOW_S,
    Child,
    book,
    on_death,
)


def test_a_child_that_had_been_serving_is_restarted_at_once_however_often() -> None:
    deaths: tuple[float, ...] = ()
    for i in range(100):
        started, died = i * 1.0, i * 1.0 + EARLY_DEATH_S + 0.01
        verdict = on_death(started, deaths, died)
        assert not verdict.give_up and verdict.delay == 0 and not verdict.early
        deaths = verdict.early_deaths
    assert deaths == ()


def test_a_crash_loop_backs_off_doubling_then_gives_up() -> None:
    deaths: tuple[float, ...] = ()
    delays = []
    now = 0.0
    for _ in range(RESTART_INTENSITY):
        verdict = on_death(now, deaths, now + 0.01)
        assert verdict.early and not verdict.give_up
        delays.append(verdict.delay)
        deaths = verdict.early_deaths
        now += 0.01 + verdict.delay
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8] and delays[-1] == BACKOFF_MAX_S
    assert on_death(now, deaths, now + 0.01).give_up


def test_early_deaths_outside_the_window_are_forgotten() -> None:
    old = tuple(float(i) for i in range(RESTART_INTENSITY))
    verdict = on_death(1000.0, old, 1000.01)
    assert not verdict.give_up and verdict.early_deaths == (1000.01,) and verdict.delay == 0.1


@given(st.lists(st.floats(min_value=0, max_value=10 * RESTART_WINDOW_S), max_size=30),
       st.floats(min_value=0, max_value=5), st.floats(min_value=0, max_value=10 * RESTART_WINDOW_S))
def test_verdicts_are_bounded(history: list[float], lived: float, now: float) -> None:
    verdict = on_death(now - lived, tuple(sorted(history)), now)
    assert 0 <= verdict.delay <= BACKOFF_MAX_S
    assert all(now - t < RESTART_WINDOW_S for t in verdict.early_deaths)
    assert verdict.give_up == (len(verdict.early_deaths) > RESTART_INTENSITY)
    assert (verdict.delay > 0) == (verdict.early and not verdict.give_up)


def test_a_child_started_then_dying_right_away_is_restarting_with_its_early_death_counted() -> None:
    child: Child[str] = Child("scheduler", kind="scheduler")
    child.start("addr-1", now=10.0)
    assert (child.address, child.state, child.started) == ("addr-1", "running", 10.0)
    verdict = child.died(now=10.1)
    assert verdict.early and verdict.delay == 0.1 and not verdict.give_up
    assert (child.address, child.state, child.deaths) == (None, "restarting", (10.1,))
    child.start("addr-2", now=20.0)
    assert not child.died(now=30.0).early and child.deaths == (10.1,)  # it had been serving: not counted


def test_the_address_book_names_root_and_the_children_it_knows_of() -> None:
    kids = {name: Child(name) for name in ("scheduler", "ingress", "ingress-2")}
    kids["scheduler"].start("addr-s", now=1.0)
    kids["ingress"].start("addr-i", now=1.0)
    kids["ingress-2"].start("addr-i2", now=1.0)
    got = book("addr-root", kids)
    assert (got.root, got.scheduler, got.ingress, got.dispatch) == ("addr-root", "addr-s", "addr-i", None)
    assert "addr-i2" not in got.model_dump().values()  # ingress-2 is in no book
