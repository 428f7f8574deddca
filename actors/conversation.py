"""Conversation: one customer's actor; runs the image-job machine over their messages and executors' outcomes.

Every decision is one transaction (jobs compare-and-set on their version, inputs consumed, effects
into the outbox), then the executors are nudged. The actor keeps nothing the database does not have:
after a restart it picks up unprocessed messages and outcomes where they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest

from actors.base import ServiceActor, now
from cluster import placement
from core import burst
from core import image_job as jm
from core.customer_events import JOB_KINDS, job_input
from observability.json_logs import bind_process
from persistence import handoffs, job_events, jobs, messages, orders
from persistence.models import JobEvent
from protocol.image import JobState
from protocol.messages import (
    ConversationStarted,
    CustomerEvents,
    CustomerMessages,
    JobNotice,
    OperatorHandOff,
    OperatorHandOffDone,
    SendNudge,
    WorkNudge,
)

ORPHAN_CHECK_S = 5.0
COMMIT_TRIES = 3  # a compare-and-set lost to another writer is decided again from fresh state


class ConversationActor(ServiceActor):
    """Owns one customer's conversation; passivated by the router when idle."""

    kind = "conversation"

    @staticmethod
    def actorSystemCapabilityCheck(capabilities: dict[str, Any], requirements: dict[str, Any] | None = None  # noqa: N802
                                   ) -> bool:
        """Placed by the router: on the member system it names, else on the leader."""
        return placement.hosts(capabilities, requirements)

    def on_configure(self) -> None:
        assert self.settings is not None
        self.customer_id = self.name.split(":", 1)[1]
        bind_process(self.name, customer_id=self.customer_id)  # this process serves this customer alone
        self.parent_pid = os.getppid()
        self.router: ActorAddress | None = None
        self.burst_armed = False
        self.every(ORPHAN_CHECK_S, "orphan-check")
        # Work a previous incarnation left: outcomes now, messages after their burst window.
        self._take_outcomes()
        if messages.unprocessed(self.customer_id, limit=1):
            self._arm_burst()

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        self.heard_from_creator()  # everything but wakeups comes from the router
        if isinstance(msg, CustomerMessages):
            self._hello(sender)
            events = messages.handle_customer_messages(self.customer_id, msg.items, now(),
                                                       takeover_s=self.settings.TAKEOVER_MINUTES * 60)
            if events and self.book is not None:
                self.tell(self.book.scheduler, CustomerEvents(items=events))
            if any(i.kind in JOB_KINDS for i in msg.items):
                self._arm_burst()
        elif isinstance(msg, JobNotice):
            self._hello(sender)
            self._take_outcomes()
        elif isinstance(msg, OperatorHandOff):
            self._hello(sender)
            self._operator_handoff(msg)
        else:
            super().on_message(msg, sender)

    def _hello(self, sender: ActorAddress) -> None:
        if self.router is None:
            self.router = sender
            self.send(sender, ConversationStarted(customer_id=self.customer_id, pid=os.getpid()))

    def _arm_burst(self) -> None:
        # One window from the first message: a burst is answered DEBOUNCE_S after it began, however long it goes on.
        if not self.burst_armed:
            assert self.settings is not None
            self.burst_armed = True
            self.wakeupAfter(self.settings.DEBOUNCE_S, payload="burst")

    def on_exit(self) -> None:
        # Passivated (or replaced) inside a burst window: answer the burst now rather than leave it to a sweep.
        if self.settings is not None and self.burst_armed:
            self.burst_armed = False
            self._take_burst()

    def on_timer(self, name: str) -> None:
        if name == "burst":
            self.burst_armed = False
            self._take_burst()
        elif name == "orphan-check" and self._orphaned():
            self.send(self.myAddress, ActorExitRequest())

    def _orphaned(self) -> bool:
        # A router killed with SIGKILL leaves its children running: they stop themselves. Here the router is the
        # parent process; on a member it runs on another host, and is asked instead.
        if placement.is_member():
            return self.creator_gone(self.book.conversations if self.book is not None else None)
        return os.getppid() != self.parent_pid

    # -- decisions --------------------------------------------------------------------------------
    def _take_burst(self) -> None:
        assert self.settings is not None
        rows = messages.unprocessed(self.customer_id)
        if not rows:
            return
        inputs = [x for x in (job_input(item) for _, item in rows) if x is not None]
        photo_ids = [job_events.job_id_for(self.customer_id, i.msg_id) for i in inputs if isinstance(i, burst.PhotoIn)]
        image_enabled = self.settings.IMAGE_MODULE_ENABLED

        def decide() -> jobs.Decision:
            known = jobs.known(self.customer_id)
            result = burst.handle_burst(known.active, inputs, iter(photo_ids).__next__, image_enabled, now(),
                                        customer_id=self.customer_id, last_job=known.last,
                                        open_handoff=handoffs.has_open(self.customer_id), orders=known.orders,
                                        others=known.others)
            return job_events.decision(self.customer_id, f"m:{rows[0][1].msg_id}", result,
                                       [*known.active, *known.others], known.orders, message_ids=[r for r, _ in rows])

        self._commit(decide)
        if len(rows) == 200:  # more waiting than one decision takes
            self._arm_burst()

    def _take_outcomes(self) -> None:
        for ev in jobs.unprocessed_events(self.customer_id):
            self._commit(lambda ev=ev: self._decide_outcome(ev))

    def _decide_outcome(self, ev: JobEvent) -> jobs.Decision:
        cause, payload = f"e:{ev.id}", json.loads(ev.payload)
        if not ev.job_id:  # a hand-off or look-up tied to no job
            return jobs.Decision(customer_id=self.customer_id, cause=cause, steps=[], event_ids=[ev.id],
                                 loose_effects=jm.loose_outcome(ev.kind, payload))
        if ev.kind in ("order_mail_sent", "order_mail_failed"):
            found = orders.load([ev.job_id])
            if not found:
                return jobs.Decision(customer_id=self.customer_id, cause=cause, steps=[], event_ids=[ev.id])
            members = jobs.load_jobs(list(found[0].job_ids))
            result = burst.handle_order_mail(members, found[0], ev.kind == "order_mail_sent", payload["seq"],
                                             payload["jobs"], now(), payload.get("error", ""))
            return job_events.decision(self.customer_id, cause, result, members, found, event_ids=[ev.id])
        job = jobs.load_job(ev.job_id)
        event, extras = job_events.core_event(ev)
        decision = jobs.Decision(customer_id=self.customer_id, cause=cause, steps=[], event_ids=[ev.id],
                                 extras={ev.job_id: extras} if job is not None and extras else {})
        if job is None or event is None:
            self.log.warning("conversation %s: outcome %s of job %s has nothing to apply to", self.customer_id,
                             ev.kind, ev.job_id)
            return decision
        members, found = jobs.order_context(job)
        try:
            result = burst.handle_outcome(members, found, job.job_id, event, now(), self.settings.IMAGE_MODULE_ENABLED)
        except jm.IllegalJobEvent as exc:
            self.log.warning("conversation %s: %s (outcome %s dropped)", self.customer_id, exc, ev.id)
            return decision
        return job_events.decision(self.customer_id, cause, result, members, found, event_ids=[ev.id],
                                   extras=decision.extras)

    def _operator_handoff(self, msg: OperatorHandOff) -> None:
        """A console operator hands a job to a designer: the machine's Transfer with rule `operator`; answered to
        the ingress, which waits for it."""
        error = ""

        def decide() -> jobs.Decision:
            job = jobs.load_job(msg.job_id)
            if job is None or job.customer_id != self.customer_id:
                raise LookupError(f"no image job {msg.job_id} of customer {self.customer_id}")
            reason = f"操作员 {msg.operator} 转给设计师" + (f":{msg.reason}" if msg.reason else "")
            step = jm.step(job, jm.Transfer("operator", reason), now())
            return jobs.Decision(customer_id=self.customer_id, cause=f"op:{job.job_id}:{job.version}", steps=[step],
                                 before={job.job_id: job.version})

        try:
            self._commit(decide)
        except (jm.IllegalJobEvent, LookupError) as exc:
            error = str(exc)
        job = jobs.load_job(msg.job_id)
        ok = not error and job is not None and job.state is JobState.TRANSFERRED and job.handoff_rule == "operator"
        if not ok and not error:
            error = "the job changed while it was being handed off; look at it and try again"
        if self.book is not None:
            done = OperatorHandOffDone(request_id=msg.request_id, ok=ok, error=error,
                                       state=job.state.value if job else "")
            self.tell(msg.reply_to or self.book.ingress, done)  # the ingress process whose handler waits

    def _commit(self, decide: Callable[[], jobs.Decision]) -> None:
        for attempt in range(COMMIT_TRIES):
            decision = decide()
            try:
                committed = jobs.commit(decision, now())
            except jobs.StaleJob as exc:
                self.log.warning("conversation %s: %s; deciding again (%d)", self.customer_id, exc, attempt + 1)
                continue
            self._log_moves(decision)
            self._nudge(committed.kinds)
            return
        self.log.error("conversation %s: gave up after %d stale commits; the sweep retries", self.customer_id,
                       COMMIT_TRIES)

    def _log_moves(self, decision: jobs.Decision) -> None:
        for step in decision.steps:
            for move in step.moves:
                self.log.info("job %s: %s → %s (%s)", step.job.job_id, move.from_state or "new", move.to_state,
                              move.event, extra={"job_id": step.job.job_id})

    def _nudge(self, kinds: set[str]) -> None:
        if self.book is None:
            return
        if "im_send" in kinds:
            self.tell(self.book.gateway, SendNudge())
        if kinds & {"analyze", "render", "find"}:
            self.tell(self.book.renderer, WorkNudge())
        if kinds & {"mail", "staff", "handoff"}:
            self.tell(self.book.dispatch, WorkNudge())

