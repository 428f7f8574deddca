"""Placement in a convention: which system hosts a placed actor, and which member the router or pool chooses."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from cluster import placement
from protocol.convention import Members, MemberView
from protocol.settings import Settings

LEADER = "10.0.0.1:1900"
LEADER_CAPS = placement.leader_capabilities(LEADER)


def member(system: str, state: str = "alive", offers: tuple[str, ...] = placement.OFFERS, workers: int = 4,
           pids: tuple[int, ...] = ()) -> MemberView:
    return MemberView(system=system, role="member", offers=list(offers), render_workers=workers, state=state,
                      pids=list(pids))


@pytest.fixture(autouse=True)
def on_the_leader() -> Iterator[None]:
    placement.set_here(LEADER, "leader")
    yield
    placement.set_here("", "leader")


def test_a_placed_actor_goes_to_the_named_system_else_to_the_leader() -> None:
    caps = placement.member_capabilities("10.0.0.2:1901", ("10.0.0.1", 1900), placement.OFFERS, 6)
    assert caps["Convention Address.IPv4"] == "10.0.0.1:1900" and caps[placement.CAP_RENDER_WORKERS] == 6
    named = placement.requirements_for("10.0.0.2:1901")
    assert placement.hosts(caps, named) and not placement.hosts(LEADER_CAPS, named)
    assert placement.hosts(LEADER_CAPS, None) and not placement.hosts(caps, None)
    assert placement.requirements_for(LEADER) is None  # here: created directly, never forwarded
    assert placement.hosts({}, None)  # an actor system started without our capabilities (unit tests) hosts all


def test_the_least_loaded_member_offering_the_work_is_chosen_and_the_leader_when_none() -> None:
    chooser = placement.Placement()
    assert chooser.choose("conversations", {}) == LEADER
    chooser.update(Members(members=[member("a:1"), member("b:1"), member("c:1", offers=("renderer",)),
                                    member("d:1", state="joining"), member("e:1", state="unusable")]))
    assert chooser.choose("conversations", {"a:1": 3, "b:1": 1}) == "b:1"
    assert [m.system for m in chooser.usable("renderer")] == ["a:1", "b:1", "c:1"]
    chooser.suspect("b:1")  # a creation failed there: no new work for a while
    assert chooser.choose("conversations", {"a:1": 3, "b:1": 1}) == "a:1"
    chooser.suspects["b:1"] = time.monotonic() - 1
    assert chooser.choose("conversations", {"a:1": 3, "b:1": 1}) == "b:1"
    chooser.suspect(LEADER)  # the leader is never suspected: it is the last resort
    assert LEADER not in chooser.suspects


def test_an_update_names_the_members_that_went_with_their_actors() -> None:
    chooser = placement.Placement()
    chooser.update(Members(members=[member("a:1"), member("b:1", state="unusable"), member("c:1", state="joining")]))
    assert chooser.update(Members(members=[member("c:1")])) == {"a:1", "b:1"}
    assert chooser.update(Members(members=[member("c:1")])) == set()


def test_a_process_is_alive_here_by_pid_and_on_a_member_by_its_last_heartbeat() -> None:
    chooser = placement.Placement()
    assert chooser.pid_alive(LEADER, os.getpid()) and chooser.pid_alive("", os.getpid())  # "": before issue 9
    assert not chooser.pid_alive(LEADER, 2**22 + 17)
    chooser.update(Members(members=[member("a:1", pids=(4242,))]))
    assert chooser.pid_alive("a:1", 4242) and not chooser.pid_alive("a:1", os.getpid())
    chooser.update(Members(members=[]))  # lost: nothing of it runs any more
    assert not chooser.pid_alive("a:1", 4242)


def test_actors_on_a_member_reach_the_database_by_the_members_own_url() -> None:
    leaders = Settings(_env_file=None, DATABASE_URL="postgresql://shop@db.internal/shop")
    assert placement.local_settings(leaders) is leaders
    placement.set_here("10.0.0.2:1901", "member", "postgresql://shop@10.0.0.9/shop")
    assert placement.is_member() and placement.this_system() == "10.0.0.2:1901"
    assert placement.local_settings(leaders).DATABASE_URL == "postgresql://shop@10.0.0.9/shop"
