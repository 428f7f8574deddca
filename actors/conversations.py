"""Conversations: routes customer messages to one actor per customer; passivates idle ones."""

from __future__ import annotations

import gc
import time
from collections import OrderedDict, deque
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest, ChildActorExited

from actors.base import ServiceActor, now
from actors.conversation import ConversationActor
from persistence import messages
from protocol.messages import Configure, ConversationStarted, CustomerMessages, InboundItem, RouteMessages

SWEEP_GRACE_S = 2.0  # a stored message unhandled for this long is routed again
STUCK_SWEEPS = 3  # sweeps after which an actor that leaves its messages unhandled is replaced


class Conversations(ServiceActor):
    """The router: creates conversation actors on demand, caps how many live, restarts the dead."""

    kind = "conversations"

    def on_configure(self) -> None:
        assert self.settings is not None
        self.live: OrderedDict[str, ActorAddress] = OrderedDict()  # LRU order: oldest first
        # Passivated actors until their exit is seen. Addresses are compared with ==, never by str():
        # the address createActor returns is a local placeholder that only == resolves to the real one.
        self.leaving: list[tuple[ActorAddress, str]] = []
        self.pids: dict[str, int] = {}
        self.last_active: dict[str, float] = {}
        self.counts = {"activated": 0, "passivated": 0, "died": 0}
        self.activating: dict[str, float] = {}
        self.activation_s: deque[float] = deque(maxlen=1000)  # recent createActor → first answer times
        self.every(self.settings.SWEEP_INTERVAL_S, "sweep")
        self._route(messages.unhandled())

    def on_book(self) -> None:
        assert self.settings is not None and self.book is not None
        for customer_id, address in self.live.items():
            self.tell(address, self._configure_msg(customer_id))

    def _configure_msg(self, customer_id: str) -> Configure:
        assert self.settings is not None and self.book is not None
        return Configure(settings=self.settings, name=f"conversation:{customer_id}", book=self.book)

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, RouteMessages):
            self._route(msg.items)
        elif isinstance(msg, ConversationStarted):
            self.pids[msg.customer_id] = msg.pid
            began = self.activating.pop(msg.customer_id, None)
            if began is not None:
                self.activation_s.append(time.monotonic() - began)
        elif isinstance(msg, ChildActorExited):
            self._child_exited(msg.childAddress)
        else:
            super().on_message(msg, sender)

    def _route(self, items: list[InboundItem]) -> None:
        per_customer: dict[str, list[InboundItem]] = {}
        for item in items:
            per_customer.setdefault(item.customer_id, []).append(item)
        for customer_id, batch in per_customer.items():
            self.tell(self._actor_for(customer_id), CustomerMessages(items=batch))

    def _actor_for(self, customer_id: str) -> ActorAddress:
        assert self.settings is not None
        address = self.live.get(customer_id)
        if address is None:
            gc.freeze()  # the child shares what the router holds now instead of copying it on its first GC
            address = self.createActor(ConversationActor)
            self.live[customer_id] = address
            self.counts["activated"] += 1
            self.activating[customer_id] = time.monotonic()
            self.send(address, self._configure_msg(customer_id))
            while len(self.live) > self.settings.CONVERSATIONS_MAX_LIVE:
                oldest = next(iter(self.live))
                self._passivate(oldest)
        self.live.move_to_end(customer_id)
        self.last_active[customer_id] = time.monotonic()
        return address

    def _passivate(self, customer_id: str) -> None:
        address = self.live.pop(customer_id, None)
        self.last_active.pop(customer_id, None)
        self.pids.pop(customer_id, None)
        self.activating.pop(customer_id, None)
        if address is not None:
            self.counts["passivated"] += 1
            self.leaving.append((address, customer_id))
            self.send(address, ActorExitRequest())

    def _child_exited(self, address: ActorAddress) -> None:
        customer_id = next((c for c, a in self.live.items() if a == address), None)
        if customer_id is not None:  # it died rather than being passivated
            self.counts["died"] += 1
            del self.live[customer_id]
            self.pids.pop(customer_id, None)
            self.last_active.pop(customer_id, None)
            self.activating.pop(customer_id, None)
        else:
            leaving = next((entry for entry in self.leaving if entry[0] == address), None)
            if leaving is None:
                return  # a repeat notice
            self.leaving.remove(leaving)
            customer_id = leaving[1]
        # Whatever it had not handled yet goes to a fresh actor.
        self._route(messages.unhandled(customer_id=customer_id))

    def on_timer(self, name: str) -> None:
        if name != "sweep":
            return
        assert self.settings is not None
        idle_before = time.monotonic() - self.settings.CONVERSATION_IDLE_S
        for customer_id in [c for c, at in self.last_active.items() if at < idle_before]:
            self._passivate(customer_id)
        pending = messages.unhandled(older_than=now() - SWEEP_GRACE_S)
        # A message still unhandled after several sweeps means its actor is not answering (it may
        # be gone without an exit notice): replace that actor rather than keep writing to it.
        stuck_before = now() - STUCK_SWEEPS * self.settings.SWEEP_INTERVAL_S - SWEEP_GRACE_S
        for customer_id in {i.customer_id for i in pending if i.received_at <= stuck_before}:
            if customer_id in self.live:
                self.log.warning("conversation %s is not handling its messages: replacing its actor", customer_id)
                self._passivate(customer_id)
        self._route(pending)

    def detail(self) -> dict[str, Any]:
        actors = [
            {"name": f"conversation:{c}", "kind": "conversation", "pid": self.pids.get(c), "state": "running"}
            for c in list(self.live)[-200:]
        ]
        ordered = sorted(self.activation_s)
        timing = {}
        if ordered:
            timing = {"activation_p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
                      "activation_p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1)}
        return {"live": len(self.live), **self.counts, **timing, "actors": actors}
