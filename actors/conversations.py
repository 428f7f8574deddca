"""Conversations: routes customer messages to one actor per customer; passivates idle ones.

In a convention the conversation actors run on the members that offer conversations (the least loaded
first; see actors/placement.py), and here while none does. When a member is lost, its customers' work
starts again on a new actor from the database.
"""

from __future__ import annotations

import gc
import time
from collections import Counter, OrderedDict, deque
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest, ChildActorExited

from actors.base import ServiceActor, now
from actors.conversation import ConversationActor
from cluster import placement
from core.rate_limit import CustomerLimiter
from observability.metrics import ACTOR_RESTARTS
from persistence import jobs, messages
from protocol.messages import (
    Configure,
    ConversationStarted,
    CustomerMessages,
    InboundItem,
    JobNotice,
    OperatorHandOff,
    RouteMessages,
)

SWEEP_GRACE_S = 2.0  # a stored message unhandled for this long is routed again
STUCK_SWEEPS = 3  # sweeps after which an actor that leaves its messages unhandled is replaced
LEAVING_WAIT_S = 10.0  # how long a customer's messages wait for their old actor to exit before a new one starts
RELEASE_MIN_S = 1.0  # a rate-limited customer's waiting messages are let through at most this often


class Conversations(ServiceActor):
    """The router: creates conversation actors on demand, caps how many live, restarts the dead."""

    kind = "conversations"

    def on_configure(self) -> None:
        assert self.settings is not None
        self.live: OrderedDict[str, ActorAddress] = OrderedDict()  # LRU order: oldest first
        # Passivated actors until their exit is seen. Addresses are compared with ==, never by str():
        # the address createActor returns is a local placeholder that only == resolves to the real one.
        self.leaving: list[tuple[ActorAddress, str, float]] = []
        # One writer per customer: what arrives while the customer's old actor is still exiting waits here.
        self.held: dict[str, list[Any]] = {}
        self.pids: dict[str, int] = {}
        self.placed: dict[str, str] = {}  # customer → the system their (live or leaving) actor runs on
        self.last_active: dict[str, float] = {}
        self.since: dict[str, float] = {}  # customer → when (epoch s) their live actor was created
        self.counts = {"activated": 0, "passivated": 0, "died": 0}
        self.activating: dict[str, float] = {}
        self.activation_s: deque[float] = deque(maxlen=1000)  # recent createActor → first answer times
        # One customer's flood waits in the database and is let through at their rate (core.rate_limit),
        # once per burst window at most, so what waited is answered as one burst.
        self.limiter = CustomerLimiter(self.settings.CUSTOMER_RATE_PER_MIN, self.settings.CUSTOMER_BURST)
        self.every(max(RELEASE_MIN_S, self.settings.DEBOUNCE_S), "release")
        self.every(self.settings.SWEEP_INTERVAL_S, "sweep")
        self._route(messages.unhandled())
        self._notify_outcomes(jobs.unprocessed_events())
        self.catch_up()

    def on_book(self) -> None:
        assert self.settings is not None and self.book is not None
        for customer_id, address in self.live.items():
            self.tell_on(self.placed.get(customer_id, ""), address, self._configure_msg(customer_id))

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
        elif isinstance(msg, JobNotice | OperatorHandOff):
            self._deliver(msg.customer_id, msg)
        else:
            super().on_message(msg, sender)

    def _route(self, items: list[InboundItem]) -> None:
        per_customer: dict[str, list[InboundItem]] = {}
        for item in items:
            per_customer.setdefault(item.customer_id, []).append(item)
        t = time.monotonic()
        for customer_id, batch in per_customer.items():
            admitted = set(self.limiter.admit(customer_id, [i.inbound_id for i in batch], t))
            batch = [i for i in batch if i.inbound_id in admitted]  # the rest wait stored: _release_waiting
            if batch:
                self._deliver(customer_id, CustomerMessages(items=batch))

    def _release_waiting(self) -> None:
        """Let rate-limited customers' oldest waiting messages through, as many as their buckets allow."""
        t, most = time.monotonic(), self.limiter.burst
        for customer_id in self.limiter.ready(t):
            waiting = messages.unhandled(customer_id=customer_id, after_id=self.limiter.admitted_upto(customer_id),
                                         limit=most + 1)
            admitted = set(self.limiter.release(customer_id, [i.inbound_id for i in waiting[:most]],
                                                len(waiting) > most, t))
            batch = [i for i in waiting if i.inbound_id in admitted]
            if batch:
                self._deliver(customer_id, CustomerMessages(items=batch))

    def _owed(self, older_than: float, window_s: float) -> list[InboundItem]:
        """Unhandled messages to route again: everybody's, but of a rate-limited customer only those admitted."""
        deferred = self.limiter.deferred()
        owed = messages.unhandled(older_than=older_than, window_s=window_s, skip_customers=deferred)
        for customer_id, upto in deferred.items():
            owed += messages.unhandled(older_than=older_than, window_s=window_s, customer_id=customer_id,
                                       up_to_id=upto)
        return owed

    def _notify_outcomes(self, events: list[Any]) -> None:
        per_customer: dict[str, list[int]] = {}
        for ev in events:
            per_customer.setdefault(ev.customer_id, []).append(ev.id)
        for customer_id, ids in per_customer.items():
            self._deliver(customer_id, JobNotice(customer_id=customer_id, event_ids=ids))

    def _deliver(self, customer_id: str, msg: Any) -> None:
        if customer_id not in self.live and any(c == customer_id for _, c, _ in self.leaving):
            self.held.setdefault(customer_id, []).append(msg)
            return
        address = self._actor_for(customer_id)
        self.tell_on(self.placed.get(customer_id, ""), address, msg)

    def _actor_for(self, customer_id: str) -> ActorAddress:
        assert self.settings is not None
        address = self.live.get(customer_id)
        if address is None:
            # On a member when one takes conversations (the least loaded), else here.
            system = self.placement.choose("conversations", Counter(self.placed.values()))
            if system == placement.this_system():
                gc.freeze()  # the child shares what the router holds now instead of copying it on its first GC
            address = self.createActor(ConversationActor, targetActorRequirements=placement.requirements_for(system))
            self.placed[customer_id] = system
            self.log.debug("conversation %s placed on %s", customer_id, system)
            self.live[customer_id] = address
            self.since[customer_id] = now()
            self.counts["activated"] += 1
            self.activating[customer_id] = time.monotonic()
            # Not bounded in time: its creation on a busy member may take a while, and without it the actor is idle.
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
        self.since.pop(customer_id, None)
        self.pids.pop(customer_id, None)
        self.activating.pop(customer_id, None)
        if address is not None:
            self.counts["passivated"] += 1
            self.leaving.append((address, customer_id, time.monotonic()))
            self.tell_on(self.placed.get(customer_id, ""), address, ActorExitRequest())

    def _child_exited(self, address: ActorAddress) -> None:
        customer_id = next((c for c, a in self.live.items() if a == address), None)
        if customer_id is not None:  # it died rather than being passivated
            # If it ran on a member (or failed to start there), the member may be leaving and Root's word of it may
            # still be on its way: the customer's next actor starts elsewhere.
            self.placement.suspect(self.placed.get(customer_id, ""))
            self._forget(customer_id)
        else:
            leaving = next((entry for entry in self.leaving if entry[0] == address), None)
            if leaving is None:
                return  # a repeat notice
            self.leaving.remove(leaving)
            customer_id = leaving[1]
        self._release(customer_id)

    def _forget(self, customer_id: str) -> None:
        """The customer's live actor died (or went with its host): its next message starts a new one."""
        self.counts["died"] += 1
        ACTOR_RESTARTS.labels("conversation").inc()
        del self.live[customer_id]
        self.pids.pop(customer_id, None)
        self.last_active.pop(customer_id, None)
        self.since.pop(customer_id, None)
        self.activating.pop(customer_id, None)

    def owns(self, child: ActorAddress) -> bool:
        return any(a == child for a in self.live.values()) or any(e[0] == child for e in self.leaving)

    def on_members(self, lost: set[str]) -> None:
        # Actors on a lost member are gone without an exit notice: their customers' work starts again elsewhere.
        # Live actors stay where they are when a member joins: new activations go to it.
        gone = [c for c, system in self.placed.items() if system in lost]
        for customer_id in gone:
            self.leaving = [e for e in self.leaving if e[1] != customer_id]
            if customer_id in self.live:
                self._forget(customer_id)
            self._release(customer_id)
        if gone:
            self.log.warning("%d conversations were on lost member %s: activated again elsewhere", len(gone),
                             ", ".join(sorted(lost)))

    def _release(self, customer_id: str) -> None:
        """The customer's old actor is gone: whatever it had not done, and whatever waited, goes to a fresh one."""
        if any(c == customer_id for _, c, _ in self.leaving):
            return  # another of its old actors is still exiting
        self.placed.pop(customer_id, None)
        held = self.held.pop(customer_id, [])
        self._route(messages.unhandled(customer_id=customer_id))
        self._notify_outcomes(jobs.unprocessed_events(customer_id=customer_id))
        for msg in held:
            self._deliver(customer_id, msg)

    def on_timer(self, name: str) -> None:
        if name == "release":
            self._release_waiting()
            return
        if name == "catch-up":
            self._route(self._owed(now(), 0))
            self._notify_outcomes(jobs.unprocessed_events())
            return
        if name != "sweep":
            return
        assert self.settings is not None
        # Never passivate an actor whose burst window is still open: its messages would wait for the sweep.
        idle_before = time.monotonic() - max(self.settings.CONVERSATION_IDLE_S, self.settings.DEBOUNCE_S + 1)
        for customer_id in [c for c, at in self.last_active.items() if at < idle_before]:
            self._passivate(customer_id)
        # An old actor that has not exited in time is not waited for any longer (the job store's
        # compare-and-set still keeps two writers from both applying a decision).
        overdue = [e for e in self.leaving if time.monotonic() - e[2] > LEAVING_WAIT_S]
        for entry in overdue:
            self.leaving.remove(entry)
            self.log.warning("conversation %s: old actor did not exit in %.0fs", entry[1], LEAVING_WAIT_S)
            self._release(entry[1])
        window = self.settings.DEBOUNCE_S
        self.limiter.forget_idle(time.monotonic())
        pending = self._owed(now() - SWEEP_GRACE_S, window)
        # A message still unhandled after several sweeps means its actor is not answering (it may
        # be gone without an exit notice): replace that actor rather than keep writing to it.
        stuck_before = now() - STUCK_SWEEPS * self.settings.SWEEP_INTERVAL_S - SWEEP_GRACE_S - window
        for customer_id in {i.customer_id for i in pending if i.received_at <= stuck_before}:
            # An actor is judged on what it left undone in its own time: one just created (after a restart, or a
            # replacement) gets the whole window too, or a slow start under load is replaced over and over.
            if customer_id in self.live and self.since.get(customer_id, 0.0) <= stuck_before:
                self.log.warning("conversation %s is not handling its messages: replacing its actor", customer_id)
                self._passivate(customer_id)
        self._route(pending)
        self._notify_outcomes(jobs.unprocessed_events(older_than=now() - SWEEP_GRACE_S))

    def detail(self) -> dict[str, Any]:
        here = placement.this_system()
        actors = [
            {"name": f"conversation:{c}", "kind": "conversation", "pid": self.pids.get(c), "state": "running",
             "system": self.placed.get(c, here)}
            for c in list(self.live)[-200:]
        ]
        ordered = sorted(self.activation_s)
        timing = {}
        if ordered:
            timing = {"activation_p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
                      "activation_p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1)}
        return {"live": len(self.live), **self.counts, **timing, "rate_limited": len(self.limiter.deferred()),
                "by_system": dict(Counter(self.placed[c] for c in self.live if c in self.placed)), "actors": actors}
