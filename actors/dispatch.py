"""Dispatch: hand-offs to designers, result e-mail and staff notifications, in its own loop thread.

The loop it runs is integrations/dispatch_loop.py (hand-offs in integrations/designer_handoffs.py); the actor
wakes it on a nudge or the catch-up timer and tells the customer's conversation each outcome it posts back.
"""

from __future__ import annotations

from typing import Any

from thespian.actors import ActorAddress

from actors.base import ServiceActor
from actors.bridge import ThreadBridge
from integrations.dispatch_loop import DispatchLoop
from protocol.messages import JobNotice, WorkNudge


class Dispatch(ServiceActor):
    """A leaf actor owning the mail and notification thread."""

    kind = "dispatch"

    def on_configure(self) -> None:
        assert self.settings is not None
        self.bridge = ThreadBridge("dispatch")
        self.loop = DispatchLoop(self.settings, self.bridge.post)
        self.bridge.start(self.loop.run)
        self.catch_up()

    def on_timer(self, name: str) -> None:
        if name == "catch-up" and self.bridge is not None:
            self.bridge.call(self.loop.wake)

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, WorkNudge):
            if self.bridge is not None:
                self.bridge.call(self.loop.wake)
        else:
            super().on_message(msg, sender)

    def on_bridge_items(self, items: list[Any]) -> None:
        for what, customer_id, event_id in items:
            if what == "outcome" and self.book is not None:
                self.tell(self.book.conversations, JobNotice(customer_id=customer_id, event_ids=[event_id]))

    def detail(self) -> dict[str, Any]:
        return dict(self.loop.counts) if self.bridge is not None else {}
