"""Ingress: serves the Tianwang API from its own loop thread and tells the Scheduler in batches.

INGRESS_PROCESSES of them share HTTP_API_PORT (SO_REUSEPORT: the kernel spreads connections over their
processes). Each commits and answers what it accepted itself; whatever an actor answers an ingress goes back to
the one that asked (Root answers its sender; an operator hand-off carries reply_to).
"""

from __future__ import annotations

from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest

from actors.base import ServiceActor
from actors.bridge import ThreadBridge
from protocol.messages import (
    CustomerEvents,
    HealthQuery,
    HealthReport,
    OperatorHandOff,
    OperatorHandOffDone,
    TasksChanged,
)
from web.app import serve
from web.base import ApiState


def ingress_names(count: int) -> list[str]:
    """The names of count ingress actors, as health reports show them: ingress, ingress-2, ingress-3, …"""
    return ["ingress", *(f"ingress-{i}" for i in range(2, count + 1))]


class Ingress(ServiceActor):
    """The HTTP front door; a leaf actor (it owns a thread, so it creates no children)."""

    kind = "ingress"
    acknowledges = True

    def on_configure(self) -> None:
        assert self.settings is not None
        self.bridge = ThreadBridge("ingress")
        self.api = ApiState(self.settings, self.bridge.post, self.name)
        self.bridge.start(lambda: serve(self.api, lambda err: self.bridge.post(("ready", err))))

    def on_bridge_items(self, items: list[Any]) -> None:
        changed: list[str] = []
        events = []
        assert self.book is not None
        for item in items:
            what = item[0]
            if what == "tasks_changed":
                changed.append(item[1])
            elif what == "event":
                events.append(item[1])
            elif what == "health":
                self.tell(self.book.root, HealthQuery(request_id=item[1]))
            elif what == "tell":  # ("tell", address book entry, message): the console's actions
                msg = item[2]
                if isinstance(msg, OperatorHandOff):  # answered to this process, whose handler waits for it
                    msg = msg.model_copy(update={"reply_to": self.myAddress})
                self.tell(getattr(self.book, item[1]), msg)
            elif what == "ready" and item[1]:
                # Without its port the ingress is useless: exit, and Root restarts it with backoff.
                self.log.error("ingress: %s", item[1])
                self.send(self.myAddress, ActorExitRequest())
        if changed:
            self.tell(self.book.scheduler, TasksChanged(task_ids=changed))
        if events:
            self.tell(self.book.scheduler, CustomerEvents(items=events))

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, HealthReport):
            if self.bridge is not None:
                self.bridge.call(self.api.resolve_health, msg)
        elif isinstance(msg, OperatorHandOffDone):
            if self.bridge is not None:
                self.bridge.call(self.api.resolve_answer, msg.request_id, msg)
        else:
            super().on_message(msg, sender)
