"""Conversations: routes customer messages to one actor per customer; passivates idle ones.

In a convention the conversation actors run on the members that offer conversations (the least loaded
first; see cluster/placement.py), and here while none does. When a member is lost, its customers' work
starts again on a new actor from the database.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest, ChildActorExited

from actors.base import ServiceActor, now
from actors.conversation import ConversationActor
from cluster import placement
from core.rate_limit import CustomerLimiter
from core.roster import Roster
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
        self.roster: Roster[ActorAddress] = Roster()
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
        for customer_id, address in self.roster.live.items():
            self.tell_on(self.roster.system(customer_id), address, self._configure_msg(customer_id))

    def _configure_msg(self, customer_id: str) -> Configure:
        assert self.settings is not None and self.book is not None
        return Configure(settings=self.settings, name=f"conversation:{customer_id}", book=self.book)

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, RouteMessages):
            self._route(msg.items)
        elif isinstance(msg, ConversationStarted):
            self.roster.started(msg.customer_id, msg.pid, time.monotonic())
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
        if self.roster.hold(customer_id, msg):
            return
        address = self._actor_for(customer_id)
        self.tell_on(self.roster.system(customer_id), address, msg)

    def _actor_for(self, customer_id: str) -> ActorAddress:
        assert self.settings is not None
        address = self.roster.live.get(customer_id)
        if address is None:
            # On a member when one takes conversations (the least loaded), else here.
            system = self.placement.choose("conversations", self.roster.load())
            if system == placement.this_system():
                gc.freeze()  # the child shares what the router holds now instead of copying it on its first GC
            address = self.createActor(ConversationActor, targetActorRequirements=placement.requirements_for(system))
            self.log.debug("conversation %s placed on %s", customer_id, system)
            self.roster.activated(customer_id, address, system, now(), time.monotonic())
            # Not bounded in time: its creation on a busy member may take a while, and without it the actor is idle.
            self.send(address, self._configure_msg(customer_id))
            while len(self.roster.live) > self.settings.CONVERSATIONS_MAX_LIVE:
                self._passivate(next(iter(self.roster.live)))  # the oldest
        self.roster.used(customer_id, time.monotonic())
        return address

    def _passivate(self, customer_id: str) -> None:
        address = self.roster.passivate(customer_id, time.monotonic())
        if address is not None:
            self.tell_on(self.roster.system(customer_id), address, ActorExitRequest())

    def _child_exited(self, address: ActorAddress) -> None:
        customer_id = self.roster.live_customer(address)
        if customer_id is not None:  # it died rather than being passivated
            # If it ran on a member (or failed to start there), the member may be leaving and Root's word of it may
            # still be on its way: the customer's next actor starts elsewhere.
            self.placement.suspect(self.roster.system(customer_id))
            self._forget(customer_id)
        else:
            customer_id = self.roster.exited(address)
            if customer_id is None:
                return  # a repeat notice
        self._release(customer_id)

    def _forget(self, customer_id: str) -> None:
        """The customer's live actor died (or went with its host): its next message starts a new one."""
        ACTOR_RESTARTS.labels("conversation").inc()
        self.roster.forget(customer_id)

    def owns(self, child: ActorAddress) -> bool:
        return self.roster.owns(child)

    def on_members(self, lost: set[str]) -> None:
        # Actors on a lost member are gone without an exit notice: their customers' work starts again elsewhere.
        # Live actors stay where they are when a member joins: new activations go to it.
        gone = self.roster.on_systems(lost)
        for customer_id in gone:
            self.roster.not_leaving(customer_id)
            if customer_id in self.roster.live:
                self._forget(customer_id)
            self._release(customer_id)
        if gone:
            self.log.warning("%d conversations were on lost member %s: activated again elsewhere", len(gone),
                             ", ".join(sorted(lost)))

    def _release(self, customer_id: str) -> None:
        """The customer's old actor is gone: whatever it had not done, and whatever waited, goes to a fresh one."""
        if self.roster.leaves(customer_id):
            return  # another of its old actors is still exiting
        held = self.roster.release(customer_id)
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
        for customer_id in self.roster.idle(idle_before):
            self._passivate(customer_id)
        # An old actor that has not exited in time is not waited for any longer (the job store's
        # compare-and-set still keeps two writers from both applying a decision).
        for entry in self.roster.overdue(time.monotonic(), LEAVING_WAIT_S):
            self.roster.leaving.remove(entry)
            self.log.warning("conversation %s: old actor did not exit in %.0fs", entry[1], LEAVING_WAIT_S)
            self._release(entry[1])
        window = self.settings.DEBOUNCE_S
        self.limiter.forget_idle(time.monotonic())
        pending = self._owed(now() - SWEEP_GRACE_S, window)
        # A message still unhandled after several sweeps means its actor is not answering (it may
        # be gone without an exit notice): replace that actor rather than keep writing to it.
        stuck_before = now() - STUCK_SWEEPS * self.settings.SWEEP_INTERVAL_S - SWEEP_GRACE_S - window
        for customer_id in self.roster.stuck({i.customer_id for i in pending if i.received_at <= stuck_before},
                                             stuck_before):
            self.log.warning("conversation %s is not handling its messages: replacing its actor", customer_id)
            self._passivate(customer_id)
        self._route(pending)
        self._notify_outcomes(jobs.unprocessed_events(older_than=now() - SWEEP_GRACE_S))

    def detail(self) -> dict[str, Any]:
        return self.roster.detail(placement.this_system(), len(self.limiter.deferred()))
