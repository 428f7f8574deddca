"""Root: creates every top-level actor, restarts the dead with backoff, answers health."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest, ChildActorExited

from actors.base import ServiceActor
from actors.conversations import Conversations
from actors.dispatch import Dispatch
from actors.gateway import Gateway
from actors.ingress import Ingress
from actors.metrics import ACTOR_RESTARTS
from actors.renderer import RendererPool
from actors.scheduler import Scheduler
from core.supervision import RESTART_WINDOW_S, on_death
from protocol.messages import (
    ActorHealth,
    AddressBook,
    Configure,
    HealthQuery,
    HealthReport,
    Ping,
    Pong,
    StartSystem,
)

CHILDREN: dict[str, type[ServiceActor]] = {
    "scheduler": Scheduler,
    "gateway": Gateway,
    "conversations": Conversations,
    "renderer": RendererPool,
    "dispatch": Dispatch,
    "ingress": Ingress,
}
HEALTH_WAIT_S = 1.0
LAUNCHER_CHECK_S = 1.0


@dataclass
class Child:
    """A supervised child: where it is and how often it died."""

    name: str
    address: ActorAddress | None = None
    state: str = "starting"
    restarts: int = 0
    deaths: tuple[float, ...] = ()  # times of early deaths, within the window
    started: float = 0.0
    last_pong: Pong | None = None


@dataclass
class PendingHealth:
    """A health query waiting for its children's pongs."""

    asker: ActorAddress
    request_id: int
    answers: dict[str, Pong] = field(default_factory=dict)


class Root(ServiceActor):
    """The supervisor of the whole system; the launcher supervises Root."""

    kind = "root"
    uses_database = False

    def __init__(self) -> None:
        super().__init__()
        self.children: dict[str, Child] = {}
        self.health: dict[int, PendingHealth] = {}
        self.nonce = 0
        self.stopping = False
        self.launcher_pid = 0

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
        for name in CHILDREN:
            self.children[name] = Child(name)
            self._start(name)
        self._broadcast_book()

    def _start(self, name: str) -> None:
        child = self.children[name]
        child.address = self.createActor(CHILDREN[name])
        child.state = "running"
        child.started = time.monotonic()

    def _book(self) -> AddressBook:
        addrs = {n: c.address for n, c in self.children.items()}
        return AddressBook(root=self.myAddress, **addrs)

    def _broadcast_book(self) -> None:
        book = self._book()
        for name, child in self.children.items():
            self.tell(child.address, Configure(settings=self.settings, name=name, book=book))

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, ChildActorExited):
            self._child_exited(msg.childAddress)
        elif isinstance(msg, HealthQuery):
            self._health_query(msg, sender)
        elif isinstance(msg, Pong):
            self._pong(msg)
        else:
            super().on_message(msg, sender)

    def _child_exited(self, address: ActorAddress) -> None:
        child = next((c for c in self.children.values() if c.address == address), None)
        if child is None or self.stopping:
            return  # a repeat notice of a death already handled
        child.address = None
        child.state = "restarting"
        verdict = on_death(child.started, child.deaths, time.monotonic())
        child.deaths = verdict.early_deaths
        self.log.warning("%s died (%s); %d early deaths in the last minute", child.name,
                         "right after its start" if verdict.early else "while serving", len(child.deaths))
        if verdict.give_up:
            self.log.error("%s died %d times right after starting within %ds: Root stops so the launcher "
                           "restarts everything", child.name, len(child.deaths), RESTART_WINDOW_S)
            self.send(self.myAddress, ActorExitRequest())
        elif verdict.delay == 0:
            self._restart(child.name)
        else:
            self.wakeupAfter(verdict.delay, payload=f"restart:{child.name}")

    def _restart(self, name: str) -> None:
        child = self.children[name]
        if child.address is not None:
            return
        self._start(name)
        child.restarts += 1
        ACTOR_RESTARTS.labels(name).inc()
        self._broadcast_book()

    def on_timer(self, name: str) -> None:
        if name == "launcher-check":
            self._check_launcher()
        elif name.startswith("restart:"):
            self._restart(name.split(":", 1)[1])
        elif name.startswith("health:"):
            self._answer_health(int(name.split(":", 1)[1]))

    def _check_launcher(self) -> None:
        # A launcher killed with SIGKILL cannot clean up: without its watchdog the system would run
        # on unsupervised, holding its ports, so it takes its own process group down.
        try:
            os.kill(self.launcher_pid, 0)
        except ProcessLookupError:
            self.log.error("the launcher (pid %d) is gone: stopping the whole actor system", self.launcher_pid)
            os.killpg(os.getpgid(0), signal.SIGKILL)

    def _health_query(self, msg: HealthQuery, sender: ActorAddress) -> None:
        self.nonce += 1
        self.health[self.nonce] = PendingHealth(asker=sender, request_id=msg.request_id)
        for child in self.children.values():
            self.tell(child.address, Ping(nonce=self.nonce))
        self.wakeupAfter(HEALTH_WAIT_S, payload=f"health:{self.nonce}")

    def _pong(self, pong: Pong) -> None:
        pending = self.health.get(pong.nonce)
        if pending is None:
            return
        pending.answers[pong.name] = pong
        if self.children.get(pong.name):
            self.children[pong.name].last_pong = pong
        if all(name in pending.answers for name in self.children):
            self._answer_health(pong.nonce)

    def _answer_health(self, nonce: int) -> None:
        pending = self.health.pop(nonce, None)
        if pending is None:
            return
        actors = [ActorHealth(name="root", kind="root", pid=os.getpid(), state="running",
                              detail={"pgid": os.getpgid(0)})]
        ok = True
        for name, child in self.children.items():
            pong = pending.answers.get(name)
            state = "running" if pong else ("unresponsive" if child.state == "running" else child.state)
            ok = ok and pong is not None
            actors.append(ActorHealth(
                name=name, kind=name, pid=pong.pid if pong else None, state=state, restarts=child.restarts,
                detail={k: v for k, v in pong.detail.items() if k != "actors"} if pong else {},
            ))
            if pong and name == "conversations":
                actors.extend(ActorHealth(**c) for c in pong.detail.get("actors", []))
        self.send(pending.asker, HealthReport(request_id=pending.request_id, ok=ok, actors=actors))

    def on_exit(self) -> None:
        self.stopping = True  # children exit with us; none is restarted

    def detail(self) -> dict[str, Any]:
        return {name: {"state": c.state, "restarts": c.restarts} for name, c in self.children.items()}
