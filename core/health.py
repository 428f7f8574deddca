"""Root's answer to a health query, with no I/O: its children's pongs, and the actors they placed, in one report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from core.supervision import Child
from protocol.messages import ActorHealth, HealthReport, Pong

A = TypeVar("A")  # an actor address


@dataclass
class PendingHealth(Generic[A]):
    """A health query waiting for its children's pongs."""

    asker: A
    request_id: int
    answers: dict[str, Pong] = field(default_factory=dict)

    def answered(self, pong: Pong, children: Mapping[str, Child[Any]]) -> bool:
        """Take a child's pong; whether every child has answered now."""
        self.answers[pong.name] = pong
        return all(name in self.answers for name in children)


def report(pending: PendingHealth[Any], children: Mapping[str, Child[Any]], system: str, pid: int, pgid: int,
           members: list[dict[str, Any]]) -> HealthReport:
    """The answer to pending: Root (pid, of process group pgid, on system), then each child (unresponsive when it
    runs but did not answer) followed by the actors it placed; ok when every child answered."""
    actors = [ActorHealth(name="root", kind="root", pid=pid, state="running", detail={"pgid": pgid}, system=system)]
    ok = True
    for name, child in children.items():
        pong = pending.answers.get(name)
        state = "running" if pong else ("unresponsive" if child.state == "running" else child.state)
        ok = ok and pong is not None
        actors.append(ActorHealth(
            name=name, kind=child.kind, pid=pong.pid if pong else None, state=state,
            restarts=child.restarts,
            detail={k: v for k, v in pong.detail.items() if k != "actors"} if pong else {}, system=system,
        ))
        if pong:  # the actors it placed: conversations, render workers
            actors.extend(ActorHealth(**c) for c in pong.detail.get("actors", []))
    return HealthReport(request_id=pending.request_id, ok=ok, actors=actors, members=members)
