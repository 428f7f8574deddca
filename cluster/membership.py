"""Root's view of the convention: members as Thespian announces them, kept honest by a heartbeat of our own.

Thespian tells Root (`notifyOnSystemRegistrationChanges`) when a member registers or is declared dead
(it misses CONVENTION_REGISTRATION_MISS_MAX re-registrations, tuned to seconds in cluster/runtime.py). Root
also beats a probe on each member every HEARTBEAT_S: a member is alive from its probe's first answer and
lost when its probe stays silent for LOST_AFTER_S, or for CONFIRM_S once Thespian has dropped it. Thespian
alone is not trusted: a member admin busy forking a burst of actors misses its re-registrations while the
member works on (measured: three false deaths in one 150-conversation burst on 2 cores); it re-registers
a moment later, and the same incarnation keeps its actors.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from cluster.placement import CAP_INCARNATION, member_view
from protocol.convention import MemberReport, MemberView

if TYPE_CHECKING:
    from thespian.actors import ActorAddress

HEARTBEAT_S = 1.0
LOST_AFTER_S = 5.0
CONFIRM_S = 1.5  # once Thespian dropped a member, this much silence of its probe confirms the death
FIRST_BEAT_S = 15.0  # a joining member's probe may take this long to answer for the first time
LOST_KEPT = 10  # lost members still shown in health
PROBE_AGAIN_S = 2.0  # a probe that exited is made again this long after, if its member is still there


class Membership:
    """Members by system id, with when each was last heard from and Root's probe there; the leader itself is
    listed first in health."""

    def __init__(self, leader: MemberView) -> None:
        self.leader = leader
        self.members: dict[str, MemberView] = {}
        self.heard: dict[str, float] = {}  # system → monotonic time of its last report (or of its joining)
        self.incarnation: dict[str, str] = {}  # system → the incarnation of its actor system that joined
        self.dropped: set[str] = set()  # members Thespian declared dead, not yet confirmed by the heartbeat
        self.lost: deque[MemberView] = deque(maxlen=LOST_KEPT)
        self.probes: dict[str, ActorAddress] = {}  # member system → Root's probe there
        self.probe_lost: dict[str, float] = {}  # member system → when its probe exited (monotonic)

    def join(self, system: str, capabilities: dict[str, Any], mono: float) -> MemberView | None:
        """Thespian announced a member: a new one (or a new incarnation: joining until its probe answers), or None
        when the same incarnation registers again after Thespian dropped it."""
        incarnation = str(capabilities.get(CAP_INCARNATION, ""))
        if system in self.members and incarnation and self.incarnation.get(system) == incarnation:
            self.dropped.discard(system)
            return None
        self.leave(system, None)
        self.probes.pop(system, None)  # a new incarnation gets a new probe; the old one stops by itself
        view = member_view(system, capabilities)
        self.members[system] = view
        self.heard[system] = mono
        self.incarnation[system] = incarnation
        return view

    def drop(self, system: str) -> bool:
        """Thespian declared a member dead; whether it is one. Lost once its probe confirms (see silent)."""
        if system not in self.members:
            return False
        self.dropped.add(system)
        return True

    def leave(self, system: str, wall: float | None) -> bool:
        """Thespian dropped a member (or it was replaced); whether it was one. wall: when it was declared lost."""
        view = self.members.pop(system, None)
        self.heard.pop(system, None)
        self.incarnation.pop(system, None)
        self.dropped.discard(system)
        if view is None:
            return False
        if wall is not None:
            self.lost.append(view.model_copy(update={"state": "lost", "lost_at": wall, "pids": []}))
        return True

    def report(self, report: MemberReport, wall: float, mono: float) -> bool:
        """A probe answered; whether the member's state or processes changed."""
        view = self.members.get(report.system)
        if view is None:
            return False
        self.heard[report.system] = mono
        state = "unusable" if report.problem else "alive"
        update = {"state": state, "problem": report.problem, "last_seen": wall, "host": report.host,
                  "pgid": report.pgid, "pids": report.pids}
        if view.alive_since is None:
            update["alive_since"] = wall
        changed = state != view.state or report.pids != view.pids
        self.members[report.system] = view.model_copy(update=update)
        return changed

    def silent(self, wall: float, mono: float) -> list[str]:
        """Members whose probe has not answered in time (less time once Thespian dropped them): declared lost now."""
        def limit(system: str, view: MemberView) -> float:
            if system in self.dropped:
                return CONFIRM_S
            return LOST_AFTER_S if view.alive_since is not None else FIRST_BEAT_S

        gone = [s for s, v in self.members.items() if mono - self.heard[s] > limit(s, v)]
        for system in gone:
            self.leave(system, wall)
        return gone

    def probe_exited(self, address: ActorAddress, mono: float) -> bool:
        """Whether address was Root's probe on a member; it is made again if its member is still there a little
        later (it may be leaving)."""
        system = next((s for s, a in self.probes.items() if a == address), None)
        if system is None:
            return False
        del self.probes[system]
        self.probe_lost[system] = mono
        return True

    def to_beat(self, mono: float) -> list[tuple[str, bool]]:
        """The members to beat now, each with whether it needs a new probe first; one whose probe exited waits
        PROBE_AGAIN_S for it."""
        due = []
        for view in self.views():
            fresh = view.system not in self.probes
            if fresh and mono - self.probe_lost.get(view.system, 0.0) < PROBE_AGAIN_S:
                continue
            due.append((view.system, fresh))
        return due

    def views(self) -> list[MemberView]:
        """The members now (lost ones left out)."""
        return list(self.members.values())

    def health(self, wall: float, pids: list[int]) -> list[dict[str, Any]]:
        """Every system for /api/health: the leader (seen at wall, running pids), the members, the recently lost;
        processes counted, not listed."""
        self.leader = self.leader.model_copy(update={"last_seen": wall, "pids": pids})
        shown = [self.leader, *self.members.values(), *reversed(self.lost)]
        return [{**v.model_dump(exclude={"pids"}), "processes": len(v.pids)} for v in shown]
