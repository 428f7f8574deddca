"""Conversation: one customer's actor; stores each message once and emits events to the Scheduler."""

from __future__ import annotations

import os
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest

from actors.base import ServiceActor, now
from persistence import messages
from protocol.messages import ConversationStarted, CustomerEvents, CustomerMessages

ORPHAN_CHECK_S = 5.0


class ConversationActor(ServiceActor):
    """Owns one customer's conversation state; passivated by the router when idle."""

    kind = "conversation"

    def on_configure(self) -> None:
        self.customer_id = self.name.split(":", 1)[1]
        self.parent_pid = os.getppid()
        self.router: ActorAddress | None = None
        self.every(ORPHAN_CHECK_S, "orphan-check")

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, CustomerMessages):
            if self.router is None:
                self.router = sender
                self.send(sender, ConversationStarted(customer_id=self.customer_id, pid=os.getpid()))
            events = messages.handle_customer_messages(self.customer_id, msg.items, now())
            if events and self.book is not None:
                self.tell(self.book.scheduler, CustomerEvents(items=events))
        else:
            super().on_message(msg, sender)

    def on_timer(self, name: str) -> None:
        # A router killed with SIGKILL leaves its children running with no parent: they stop themselves.
        if name == "orphan-check" and os.getppid() != self.parent_pid:
            self.send(self.myAddress, ActorExitRequest())
