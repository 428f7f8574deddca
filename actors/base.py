"""The shell every service actor shares: configuration, address book, pings, timers, the bridge."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from thespian.actors import (
    Actor,
    ActorAddress,
    ActorExitRequest,
    ChildActorExited,
    DeadEnvelope,
    PoisonMessage,
    WakeupMessage,
    WatchMessage,
)

from actors.bridge import ThreadBridge
from cluster import placement
from core import redaction
from observability.json_logs import bind_process
from persistence.db import open_database
from protocol.convention import Members, ParentCheck, ParentHere
from protocol.messages import AddressBook, Configure, Ping, Pong
from protocol.settings import Settings

CATCH_UP_S = (0.2, 0.6)
CREATOR_MISSES = 2  # unanswered checks after which an actor placed on a member takes its creator for gone


class ServiceActor(Actor):
    """Base of our actors: dispatches by message type, never loses its watch, buffers until configured.

    A handler that raises is logged and dropped rather than retried by Thespian: the database
    is the truth and periodic sweeps re-drive whatever the failed handler left undone.
    """

    kind = "service"
    uses_database = True
    acknowledges = False  # commits what it acknowledges to the outside world: synchronous=FULL

    def __init__(self) -> None:
        super().__init__()
        self.settings: Settings | None = None
        self.book: AddressBook | None = None
        self.name = self.kind
        self.bridge: ThreadBridge | None = None
        self.log = logging.getLogger(f"shop.{self.kind}")
        self._early: list[tuple[Any, ActorAddress]] = []
        self._periodic: dict[str, float] = {}
        self.placement = placement.Placement()  # where members are, for the actors that place work on them
        self._creator_misses = 0
        self._creator_heard = False

    # -- hooks for subclasses -------------------------------------------------------------
    def on_configure(self) -> None:
        """First configuration: open resources, load state, start threads."""

    def on_book(self) -> None:
        """The address book changed (a sibling restarted)."""

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        """Any message not handled by the base."""
        self.log.warning("%s ignored an unexpected %s", self.name, type(msg).__name__)

    def on_bridge_items(self, items: list[Any]) -> None:
        """Items the bridge thread posted."""

    def on_timer(self, name: str) -> None:
        """A periodic or one-shot wakeup named name."""

    def on_exit(self) -> None:
        """The actor is being stopped."""

    def owns(self, child: ActorAddress) -> bool:
        """Whether child is still one of this actor's (asked by a child placed on a member)."""
        return True

    def on_members(self, lost: set[str]) -> None:
        """Root's latest Members view is in self.placement; the member systems in lost are gone, with their actors."""

    def detail(self) -> dict[str, Any]:
        """Kind-specific figures for health reports."""
        return {}

    # -- helpers --------------------------------------------------------------------------
    def catch_up(self, name: str = "catch-up") -> None:
        """Call on_timer(name) shortly after a (re)start, twice.

        Until Root's new address book reaches every sibling, hints they send go to this actor's old,
        dead address; looking at the database again once the book has spread serves that work in
        well under a second instead of at the next sweep.
        """
        for delay in CATCH_UP_S:
            self.wakeupAfter(delay, payload=name)

    def every(self, seconds: float, name: str) -> None:
        """Call on_timer(name) every seconds (re-armed after each call)."""
        self._periodic[name] = seconds
        self.wakeupAfter(seconds, payload=name)

    def tell(self, target: ActorAddress | None, msg: Any) -> None:
        """Send if the address is known; a lost hint is re-driven by a sweep."""
        if target is not None:
            self.send(target, msg)

    def tell_on(self, system: str, target: ActorAddress | None, msg: Any) -> None:
        """Send to an actor running on system: to one on a member with a bounded transmit time."""
        if target is None:
            return
        if not system or system == placement.this_system():
            self.send(target, msg)
        else:
            placement.send_within(self, target, msg)

    def creator_gone(self, creator: ActorAddress | None) -> bool:
        """For an actor placed on a member, called every few seconds: whether its creator on the leader failed to
        answer CREATOR_MISSES checks in a row (the parent-pid check cannot see a process on another host).
        A creator that spoke since the last call is not asked."""
        if self._creator_heard:
            self._creator_heard, self._creator_misses = False, 0
            return False
        if self._creator_misses >= CREATOR_MISSES:
            return True
        self._creator_misses += 1
        self.tell(creator, ParentCheck())
        return False

    def heard_from_creator(self) -> None:
        """The creator spoke (an answer to a check, or work): it is there."""
        self._creator_heard, self._creator_misses = True, 0

    # -- dispatch -------------------------------------------------------------------------
    def receiveMessage(self, msg: Any, sender: ActorAddress) -> Any:  # noqa: N802 (Thespian's name)
        try:
            self._dispatch(msg, sender)
        except Exception:
            self.log.exception("%s failed on %s", self.name, type(msg).__name__)
        return self.bridge.watch() if self.bridge is not None else None

    def _dispatch(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, Configure):
            self._configure(msg)
        elif isinstance(msg, Ping) and self.settings is not None:
            self.send(sender, self.pong(msg.nonce))
        elif isinstance(msg, ParentCheck):
            # A child this actor gave up on (its member was declared lost, then came back) is told to go.
            placement.send_within(self, sender, ParentHere() if self.owns(sender) else ActorExitRequest())
        elif isinstance(msg, ParentHere):
            self.heard_from_creator()
        elif isinstance(msg, Members):
            lost = self.placement.update(msg)  # before configuration too: first placements see the members
            if self.settings is not None:
                self.on_members(lost)
        elif isinstance(msg, WatchMessage):
            if self.bridge is not None:
                items = self.bridge.drain()
                if items:
                    self.on_bridge_items(items)
        elif isinstance(msg, WakeupMessage):
            name = msg.payload if isinstance(msg.payload, str) else ""
            if name in self._periodic:
                self.wakeupAfter(self._periodic[name], payload=name)
            self.on_timer(name)
        elif isinstance(msg, ActorExitRequest):
            self.on_exit()
            if self.bridge is not None:
                self.bridge.stop()
                self.bridge = None
        elif isinstance(msg, ChildActorExited):
            self.on_message(msg, sender)
        elif isinstance(msg, PoisonMessage):
            self.log.warning("%s: a message it sent failed twice: %s", self.name, type(msg.poisonMessage).__name__)
        elif isinstance(msg, DeadEnvelope):
            self.log.info("%s: dead letter to %s dropped", self.name, msg.deadAddress)
        elif self.settings is None:
            self._early.append((msg, sender))
        else:
            self.on_message(msg, sender)

    def _configure(self, msg: Configure) -> None:
        first = self.settings is None
        self.book = msg.book
        if first:
            self.settings = placement.local_settings(msg.settings)
            self.name = msg.name
            bind_process(msg.name)
            redaction.configure(msg.settings)  # redact() in this process masks the settings' secrets
            logging.getLogger().setLevel(msg.settings.LOG_LEVEL)
            if self.uses_database:
                open_database(msg.settings.DATABASE_URL, durable=self.acknowledges)
            self.on_configure()
            early, self._early = self._early, []
            for m, s in early:
                self._dispatch(m, s)
        else:
            self.on_book()

    def pong(self, nonce: int) -> Pong:
        """This actor's answer to a ping."""
        return Pong(nonce=nonce, name=self.name, kind=self.kind, pid=os.getpid(), pgid=os.getpgid(0),
                    detail=self.detail())


def now() -> float:
    """Wall-clock time as epoch seconds (the one clock actors read)."""
    return time.time()
