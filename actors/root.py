"""Root: creates every top-level actor, restarts the dead with backoff, answers health."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest, ActorSystemConventionUpdate, ChildActorExited

from actors.base import ServiceActor
from actors.conversations import Conversations
from actors.dispatch import Dispatch
from actors.gateway import Gateway
from actors.ingress import Ingress, ingress_names
from actors.member_agent import MemberAgent
from actors.renderer import RendererPool
from actors.scheduler import Scheduler
from cluster import placement, probe
from cluster.membership import HEARTBEAT_S, Membership
from core import health, supervision
from core.supervision import Child
from observability.metrics import ACTOR_RESTARTS
from protocol.convention import MemberBeat, MemberReport, Members, ProbeStart
from protocol.messages import AddressBook, Configure, HealthQuery, Ping, Pong, StartSystem
from protocol.settings import Settings

CHILDREN: dict[str, type[ServiceActor]] = {
    "scheduler": Scheduler,
    "gateway": Gateway,
    "conversations": Conversations,
    "renderer": RendererPool,
    "dispatch": Dispatch,
    "ingress": Ingress,
}


def children(settings: Settings) -> dict[str, type[ServiceActor]]:
    """Root's children by name: CHILDREN, with INGRESS_PROCESSES ingress actors (ingress, ingress-2, …)."""
    named = {name: cls for name, cls in CHILDREN.items() if cls is not Ingress}
    return named | dict.fromkeys(ingress_names(settings.INGRESS_PROCESSES), Ingress)


PLACING = ("conversations", "renderer")  # the children that place actors on members: told of every change
HEALTH_WAIT_S = 1.0
LAUNCHER_CHECK_S = 1.0


class Root(ServiceActor):
    """The supervisor of the whole system; the launcher supervises Root."""

    kind = "root"
    uses_database = False

    def __init__(self) -> None:
        super().__init__()
        self.children: dict[str, Child[ActorAddress]] = {}
        self.classes: dict[str, type[ServiceActor]] = {}  # what each child is, by name
        self.health: dict[int, health.PendingHealth[ActorAddress]] = {}
        self.nonce = 0
        self.stopping = False
        self.launcher_pid = 0
        self.membership: Membership | None = None

    def _dispatch(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, StartSystem):
            # A launcher that re-attaches to a running system gets the same answer, nothing restarts.
            if self.settings is None:
                self.launcher_pid = msg.launcher_pid
                self._configure(Configure(settings=msg.settings, name="root", book=AddressBook(root=self.myAddress)))
            self.send(sender, self.pong(0))
            return
        super()._dispatch(msg, sender)

    def on_configure(self) -> None:
        if self.launcher_pid:
            self.every(LAUNCHER_CHECK_S, "launcher-check")
        self._start_membership()
        self.classes = children(self.settings)
        for name, cls in self.classes.items():
            self.children[name] = Child(name, kind=cls.kind)
            self.children[name].start(self.createActor(cls), time.monotonic())
        self._broadcast_book()

    def _broadcast_book(self) -> None:
        book = supervision.book(self.myAddress, self.children)
        for name, child in self.children.items():
            if name in PLACING:  # before Configure: their first placements already see the members
                self.tell(child.address, self._members())
            self.tell(child.address, Configure(settings=self.settings, name=name, book=book))

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, ActorSystemConventionUpdate):
            self._convention_update(msg)
        elif isinstance(msg, MemberReport):
            self._member_report(msg)
        elif isinstance(msg, ChildActorExited):
            self._child_exited(msg.childAddress)
        elif isinstance(msg, HealthQuery):
            self._health_query(msg, sender)
        elif isinstance(msg, Pong):
            self._pong(msg)
        else:
            super().on_message(msg, sender)

    def _child_exited(self, address: ActorAddress) -> None:
        if self.membership is not None and self.membership.probe_exited(address, time.monotonic()):
            return
        child = next((c for c in self.children.values() if c.address == address), None)
        if child is None or self.stopping:
            return  # a repeat notice of a death already handled
        verdict = child.died(time.monotonic())
        self.log.warning("%s died (%s); %d early deaths in the last minute", child.name,
                         "right after its start" if verdict.early else "while serving", len(child.deaths))
        if verdict.give_up:
            self.log.error("%s died %d times right after starting within %ds: Root stops so the launcher "
                           "restarts everything", child.name, len(child.deaths), supervision.RESTART_WINDOW_S)
            self.send(self.myAddress, ActorExitRequest())
        elif verdict.delay == 0:
            self._restart(child.name)
        else:
            self.wakeupAfter(verdict.delay, payload=f"restart:{child.name}")

    def _restart(self, name: str) -> None:
        child = self.children[name]
        if child.address is not None:
            return
        child.start(self.createActor(self.classes[name]), time.monotonic())
        child.restarts += 1
        ACTOR_RESTARTS.labels(child.kind).inc()
        self._broadcast_book()

    def on_timer(self, name: str) -> None:
        if name == "members":
            self._heartbeat()
        elif name == "launcher-check":
            self._check_launcher()
        elif name.startswith("restart:"):
            self._restart(name.split(":", 1)[1])
        elif name.startswith("health:"):
            self._answer_health(int(name.split(":", 1)[1]))

    def _check_launcher(self) -> None:
        # A launcher killed with SIGKILL cannot clean up: without its watchdog the system would run
        # on unsupervised, holding its ports, so it takes its own process group down.
        if not probe.exists(self.launcher_pid):
            self.log.error("the launcher (pid %d) is gone: stopping the whole actor system", self.launcher_pid)
            os.killpg(os.getpgid(0), signal.SIGKILL)

    def _health_query(self, msg: HealthQuery, sender: ActorAddress) -> None:
        self.nonce += 1
        self.health[self.nonce] = health.PendingHealth(asker=sender, request_id=msg.request_id)
        for child in self.children.values():
            self.tell(child.address, Ping(nonce=self.nonce))
        self.wakeupAfter(HEALTH_WAIT_S, payload=f"health:{self.nonce}")

    def _pong(self, pong: Pong) -> None:
        pending = self.health.get(pong.nonce)
        if pending is not None and pending.answered(pong, self.children):
            self._answer_health(pong.nonce)

    def _answer_health(self, nonce: int) -> None:
        pending = self.health.pop(nonce, None)
        if pending is None:
            return
        pgid = os.getpgid(0)
        members = [] if self.membership is None else self.membership.health(time.time(), probe.group_pids(pgid))
        self.send(pending.asker, health.report(pending, self.children, placement.this_system(), os.getpid(), pgid,
                                               members))

    def on_exit(self) -> None:
        self.stopping = True  # children exit with us; none is restarted

    # -- the convention -------------------------------------------------------------------------
    def _start_membership(self) -> None:
        """Hear of members joining and leaving; a token in DATA_DIR lets each member prove it shares it."""
        assert self.settings is not None
        self.token = probe.write_token(self.settings.DATA_DIR)
        self.membership = Membership(probe.leader_view(self.settings.RENDER_CONCURRENCY))
        self.notifyOnSystemRegistrationChanges(True)
        self.every(HEARTBEAT_S, "members")

    def _convention_update(self, msg: ActorSystemConventionUpdate) -> None:
        assert self.membership is not None and self.settings is not None
        caps = msg.remoteCapabilities or {}
        system = caps.get(placement.CAP_SYSTEM)
        if not system:
            if msg.remoteAdded:
                self.log.warning("an actor system that is no shop member joined the convention (%s): it gets no "
                                 "work", msg.remoteAdminAddress)
            return
        if msg.remoteAdded:
            if self.membership.join(system, caps, time.monotonic()) is None:
                self.log.info("member %s registered again: it stays as it was", system)
                return
            self.log.info("member %s joined the convention, offering %s", system, caps.get(placement.CAP_OFFERS, ""))
            self._probe(system)
            self._tell_members()
        elif self.membership.drop(system):
            # Thespian's word alone is not enough (a busy member misses re-registrations): the heartbeat decides.
            self.log.info("member %s missed its re-registrations: lost unless its heartbeat answers", system)

    def _probe(self, system: str) -> ActorAddress:
        assert self.membership is not None and self.settings is not None
        agent = self.createActor(MemberAgent, targetActorRequirements={placement.CAP_SYSTEM: system})
        self.membership.probes[system] = agent
        self.send(agent, ProbeStart(data_dir=str(self.settings.DATA_DIR), token=self.token))
        return agent

    def _heartbeat(self) -> None:
        assert self.membership is not None
        lost = self.membership.silent(time.time(), time.monotonic())
        for system in lost:
            self.log.warning("member %s is lost (its heartbeat went silent): its work moves", system)
        self.nonce += 1
        for system, fresh in self.membership.to_beat(time.monotonic()):
            agent = self._probe(system) if fresh else self.membership.probes[system]
            self.tell_on(system, agent, MemberBeat(nonce=self.nonce))
        if lost:
            self._tell_members()

    def _member_report(self, report: MemberReport) -> None:
        assert self.membership is not None
        before = self.membership.members.get(report.system)
        if self.membership.report(report, time.time(), time.monotonic()):
            now = self.membership.members[report.system]
            if before is not None and before.state != now.state:
                self.log.info("member %s is %s%s", report.system, now.state, f": {now.problem}" if now.problem else "")
            self._tell_members()

    def _members(self) -> Members:
        return Members(members=self.membership.views() if self.membership is not None else [])

    def _tell_members(self) -> None:
        members = self._members()
        for child in (self.children[name] for name in PLACING if name in self.children):
            self.tell(child.address, members)

    def detail(self) -> dict[str, Any]:
        return {name: {"state": c.state, "restarts": c.restarts} for name, c in self.children.items()}
