"""Root's health report: every child answered or not, what it placed listed after it, and the pending query."""

from __future__ import annotations

from core.health import PendingHealth, report
from core.supervision import Child
from protocol.messages import Pong


def children() -> dict[str, Child[str]]:
    kids = {name: Child(name, kind=name) for name in ("scheduler", "conversations", "dispatch")}
    for n, child in enumerate(kids.values()):
        child.start(f"addr-{n}", now=1.0)
    return kids


def pong(name: str, pid: int, **detail: object) -> Pong:
    return Pong(nonce=7, name=name, kind=name, pid=pid, detail=detail)


def test_a_query_is_complete_once_every_child_answered_and_each_answer_is_kept() -> None:
    kids = children()
    pending: PendingHealth[str] = PendingHealth(asker="ingress", request_id=3)
    assert not pending.answered(pong("scheduler", 11), kids)
    assert not pending.answered(pong("conversations", 12), kids)
    assert not pending.answered(pong("stranger", 99), kids)  # kept, but not a child: nothing more is complete
    assert pending.answered(pong("dispatch", 13), kids)
    assert pending.answers["conversations"] == pong("conversations", 12)


def test_the_report_lists_root_then_each_child_and_the_actors_it_placed() -> None:
    kids = children()
    placed = {"name": "conversation:c1", "kind": "conversation", "pid": 21, "state": "running", "system": "m:1"}
    pending: PendingHealth[str] = PendingHealth(asker="ingress", request_id=3)
    for p in (pong("scheduler", 11, waiting=2), pong("conversations", 12, live=1, actors=[placed]),
              pong("dispatch", 13)):
        pending.answered(p, kids)
    kids["scheduler"].restarts = 2
    out = report(pending, kids, "h:1", pid=10, pgid=9, members=[{"system": "h:1"}])
    assert (out.request_id, out.ok, out.members) == (3, True, [{"system": "h:1"}])
    assert [(a.name, a.kind, a.pid, a.state, a.system) for a in out.actors] == [
        ("root", "root", 10, "running", "h:1"),
        ("scheduler", "scheduler", 11, "running", "h:1"),
        ("conversations", "conversations", 12, "running", "h:1"),
        ("conversation:c1", "conversation", 21, "running", "m:1"),
        ("dispatch", "dispatch", 13, "running", "h:1"),
    ]
    assert out.actors[0].detail == {"pgid": 9} and out.actors[1].restarts == 2
    assert out.actors[1].detail == {"waiting": 2} and out.actors[2].detail == {"live": 1}  # placed actors not repeated


def test_a_child_that_did_not_answer_is_unresponsive_or_what_root_knows_of_it() -> None:
    kids = children()
    kids["dispatch"].died(now=100.0)
    pending: PendingHealth[str] = PendingHealth(asker="ingress", request_id=4)
    pending.answered(pong("scheduler", 11), kids)
    out = report(pending, kids, "h:1", pid=10, pgid=9, members=[])
    assert not out.ok
    assert [(a.name, a.pid, a.state, a.detail) for a in out.actors[1:]] == [
        ("scheduler", 11, "running", {}),
        ("conversations", None, "unresponsive", {}),
        ("dispatch", None, "restarting", {}),
    ]
