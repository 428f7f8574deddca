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
from actors.json_logs import bind_process
from core import redaction
from persistence.db import open_database
from protocol.messages import AddressBook, Configure, Ping, Pong
from protocol.settings import Settings

CATCH_UP_S = (0.2, 0.6)


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
            self.settings = msg.settings
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
