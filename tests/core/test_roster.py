"""The router's roster: live actors in LRU order, passivated ones until they exit, what waits for them, health."""

from __future__ import annotations

from core.roster import Roster


def roster_of(*customers: str) -> Roster[str]:
    r: Roster[str] = Roster()
    for n, c in enumerate(customers):
        r.activated(c, f"addr-{c}", "h:1" if n % 2 == 0 else "m:2", wall=1000.0 + n, mono=10.0 + n)
        r.used(c, mono=10.0 + n)
    return r


def test_activated_actors_are_live_in_lru_order_and_counted_per_system() -> None:
    r = roster_of("a", "b", "c")
    assert list(r.live) == ["a", "b", "c"] and r.counts["activated"] == 3
    r.used("a", mono=20.0)
    assert list(r.live) == ["b", "c", "a"]  # the oldest first: b goes before a
    assert r.load() == {"h:1": 2, "m:2": 1} and r.system("b") == "m:2" and r.system("nobody") == ""
    assert r.idle(before=15.0) == ["b", "c"]


def test_the_first_answer_times_the_activation() -> None:
    r = roster_of("a")
    r.started("a", pid=42, mono=10.25)
    r.started("a", pid=42, mono=99.0)  # only the first answer counts
    assert r.pids == {"a": 42} and list(r.activation_s) == [0.25]


def test_a_passivated_actor_leaves_and_what_comes_meanwhile_is_held_until_it_exits() -> None:
    r = roster_of("a", "b")
    assert r.passivate("a", mono=30.0) == "addr-a"
    assert r.passivate("a", mono=31.0) is None  # not live any more
    assert "a" not in r.live and r.leaves("a") and r.counts["passivated"] == 1
    assert r.owns("addr-a") and r.live_customer("addr-a") is None
    assert r.hold("a", "msg-1") and not r.hold("b", "msg-2")  # b's actor is live: b's messages go to it
    assert r.exited("addr-a") == "a" and r.exited("addr-a") is None  # a repeat notice
    assert not r.leaves("a") and not r.owns("addr-a")
    assert r.release("a") == ["msg-1"] and r.system("a") == "" and r.release("a") == []


def test_a_dead_actor_is_forgotten_and_counted() -> None:
    r = roster_of("a", "b")
    r.started("a", pid=42, mono=11.0)
    assert r.live_customer("addr-a") == "a"
    r.forget("a")
    assert "a" not in r.live and "a" not in r.pids and r.counts["died"] == 1
    assert r.system("a") == "h:1"  # still placed until released


def test_actors_on_lost_systems_and_overdue_exits() -> None:
    r = roster_of("a", "b", "c")
    r.passivate("b", mono=20.0)
    assert r.on_systems({"m:2"}) == ["b"]
    assert r.overdue(mono=29.0, wait_s=10.0) == [] and r.overdue(mono=30.5, wait_s=10.0) == [("addr-b", "b", 20.0)]
    r.not_leaving("b")
    assert not r.leaves("b") and r.leaving == []


def test_an_actor_is_stuck_only_if_it_was_created_before_its_messages_waited() -> None:
    r = roster_of("a", "b")  # a created at 1000, b at 1001
    assert r.stuck({"a", "b", "gone"}, before=1000.5) == ["a"]


def test_health_shows_the_counts_timing_systems_and_the_latest_actors() -> None:
    r = roster_of("a", "b")
    r.started("a", pid=42, mono=10.5)
    detail = r.detail(here="h:1", rate_limited=3)
    assert list(detail) == ["live", "activated", "passivated", "died", "activation_p50_ms", "activation_p99_ms",
                            "rate_limited", "by_system", "actors"]
    assert (detail["live"], detail["activation_p50_ms"], detail["rate_limited"]) == (2, 500.0, 3)
    assert detail["by_system"] == {"h:1": 1, "m:2": 1}
    assert detail["actors"] == [
        {"name": "conversation:a", "kind": "conversation", "pid": 42, "state": "running", "system": "h:1"},
        {"name": "conversation:b", "kind": "conversation", "pid": None, "state": "running", "system": "m:2"},
    ]
    assert "activation_p50_ms" not in roster_of("a").detail(here="h:1", rate_limited=0)
