"""Root's view of the convention: joining, the first heartbeat, silence, leaving, and what health shows."""

from __future__ import annotations

from cluster import placement
from cluster.membership import CONFIRM_S, FIRST_BEAT_S, LOST_AFTER_S, PROBE_AGAIN_S, Membership
from protocol.convention import MemberReport, MemberView

CAPS = placement.member_capabilities("10.0.0.2:1901", ("10.0.0.1", 1900), ("renderer",), 6)


def leader() -> Membership:
    return Membership(MemberView(system="10.0.0.1:1900", role="leader", offers=list(placement.OFFERS),
                                 state="alive", alive_since=100.0))


def report(nonce: int, problem: str = "", pids: tuple[int, ...] = (7, 8)) -> MemberReport:
    return MemberReport(nonce=nonce, system="10.0.0.2:1901", host="render-1", pgid=7, pids=list(pids),
                        problem=problem)


def test_a_member_joins_then_is_alive_from_its_first_heartbeat() -> None:
    m = leader()
    view = m.join("10.0.0.2:1901", CAPS, mono=10.0)
    assert (view.state, view.offers, view.render_workers) == ("joining", ["renderer"], 6)
    assert m.report(report(1), wall=1000.0, mono=10.5)  # changed: alive now
    alive = m.members["10.0.0.2:1901"]
    assert (alive.state, alive.host, alive.alive_since, alive.last_seen, alive.pids) == ("alive", "render-1", 1000.0,
                                                                                         1000.0, [7, 8])
    assert not m.report(report(2), wall=1001.0, mono=11.5)  # nothing that placement cares about changed
    assert m.members["10.0.0.2:1901"].alive_since == 1000.0 and m.members["10.0.0.2:1901"].last_seen == 1001.0
    assert m.report(report(3, pids=(7, 8, 9)), wall=1002.0, mono=12.5)  # a new process there: the pool is told


def test_a_member_not_sharing_data_dir_is_unusable() -> None:
    m = leader()
    m.join("10.0.0.2:1901", CAPS, mono=10.0)
    m.report(report(1, problem="DATA_DIR /srv/shop here is not the leader's"), wall=1000.0, mono=10.5)
    assert m.members["10.0.0.2:1901"].state == "unusable"


def test_a_silent_member_is_lost_and_shown_as_lost() -> None:
    m = leader()
    m.join("10.0.0.2:1901", CAPS, mono=10.0)
    assert m.silent(wall=1000.0, mono=10.0 + FIRST_BEAT_S - 1) == []  # its probe may take a while to start
    m.report(report(1), wall=1000.0, mono=12.0)
    assert m.silent(wall=1003.0, mono=12.0 + LOST_AFTER_S - 0.5) == []
    assert m.silent(wall=1005.0, mono=12.0 + LOST_AFTER_S + 0.5) == ["10.0.0.2:1901"]
    assert m.views() == []
    shown = m.health(wall=1006.0, pids=[1, 2, 3])
    assert [(s["system"], s["state"], s["lost_at"]) for s in shown] == [("10.0.0.1:1900", "alive", None),
                                                                        ("10.0.0.2:1901", "lost", 1005.0)]
    assert "pids" not in shown[1] and shown[1]["processes"] == 0
    assert (shown[0]["last_seen"], shown[0]["processes"]) == (1006.0, 3)  # the leader, as of the query


def test_leaving_and_joining_again_is_a_new_incarnation() -> None:
    m = leader()
    m.join("10.0.0.2:1901", CAPS, mono=10.0)
    m.report(report(1), wall=1000.0, mono=10.5)
    assert m.leave("10.0.0.2:1901", wall=1010.0)
    assert not m.leave("10.0.0.2:1901", wall=1011.0)  # a repeat notice
    view = m.join("10.0.0.2:1901", CAPS, mono=30.0)
    assert view is not None and view.state == "joining"
    assert not m.report(MemberReport(nonce=1, system="10.9.9.9:1", host="x", pgid=1, pids=[]), wall=1.0, mono=31.0)


def test_thespians_word_that_a_member_died_is_confirmed_by_its_heartbeat() -> None:
    m = leader()
    m.join("10.0.0.2:1901", CAPS, mono=10.0)
    m.report(report(1), wall=1000.0, mono=11.0)
    assert m.drop("10.0.0.2:1901") and not m.drop("10.9.9.9:1")
    assert m.silent(wall=1000.5, mono=11.0 + CONFIRM_S - 0.2) == []
    assert m.silent(wall=1001.0, mono=11.0 + CONFIRM_S + 0.2) == ["10.0.0.2:1901"]


def test_a_busy_member_that_registers_again_keeps_its_place() -> None:
    """A member admin busy forking actors misses its re-registrations: Thespian drops it, then it registers again."""
    m = leader()
    m.join("10.0.0.2:1901", CAPS, mono=10.0)
    m.report(report(1), wall=1000.0, mono=11.0)
    m.drop("10.0.0.2:1901")
    m.report(report(2), wall=1001.0, mono=12.0)  # its probe still answers
    assert m.join("10.0.0.2:1901", CAPS, mono=12.5) is None  # the same incarnation: nothing changes
    assert m.silent(wall=1002.0, mono=12.0 + CONFIRM_S + 0.5) == []  # no longer dropped: the usual limit holds
    assert m.members["10.0.0.2:1901"].state == "alive"
    restarted = {**CAPS, placement.CAP_INCARNATION: "another start"}
    view = m.join("10.0.0.2:1901", restarted, mono=20.0)  # a new incarnation on the same address
    assert view is not None and view.state == "joining"


def test_each_member_is_beaten_through_its_probe_made_again_a_while_after_it_exited() -> None:
    m = leader()
    m.join("10.0.0.2:1901", CAPS, mono=10.0)
    assert m.to_beat(mono=10.0) == [("10.0.0.2:1901", True)]  # no probe yet: one is made first
    m.probes["10.0.0.2:1901"] = "probe-1"
    assert m.to_beat(mono=11.0) == [("10.0.0.2:1901", False)]
    assert not m.probe_exited("some child", mono=12.0)
    assert m.probe_exited("probe-1", mono=12.0) and m.probes == {}
    assert m.to_beat(mono=12.0 + PROBE_AGAIN_S - 0.1) == []  # its member may be leaving: wait a little
    assert m.to_beat(mono=12.0 + PROBE_AGAIN_S + 0.1) == [("10.0.0.2:1901", True)]


def test_a_new_incarnation_gets_a_new_probe_and_the_same_one_keeps_its_own() -> None:
    m = leader()
    m.join("10.0.0.2:1901", CAPS, mono=10.0)
    m.probes["10.0.0.2:1901"] = "probe-1"
    assert m.join("10.0.0.2:1901", CAPS, mono=11.0) is None and m.probes == {"10.0.0.2:1901": "probe-1"}
    m.join("10.0.0.2:1901", {**CAPS, placement.CAP_INCARNATION: "another start"}, mono=12.0)
    assert m.probes == {}
