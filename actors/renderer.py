"""Renderer pool: hands the outbox's analyze, find and render rows to worker actors, one job per worker at a time.

The pool owns no thread, so it may create children: RENDER_CONCURRENCY workers, each a process that
blocks on its one job (download, analysis, Gemini or the local renderer). Rows stay pending in the
outbox until a worker settles them, so a job lost with a killed worker (or pool) is handed out again.

In a convention the workers run on the members that offer renderer, as many on each as it advertises,
and here only while no member does; they move back to a member that (re)joins as they finish their jobs.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest, ChildActorExited

from actors.base import ServiceActor, now
from actors.render_worker import RenderWorker
from cluster import placement
from observability.metrics import ACTOR_RESTARTS
from persistence import jobs, outbox
from protocol.convention import WorkerStarted
from protocol.messages import Configure, JobNotice, WorkDone, WorkItem, WorkNudge


@dataclass
class Worker:
    """One worker actor: where it runs, and its process id once it said hello."""

    address: ActorAddress
    system: str
    serial: int
    pid: int | None = None


class RendererPool(ServiceActor):
    """Bounded concurrency over the analyze and render queues; quotes never wait behind renders."""

    kind = "renderer"

    def on_configure(self) -> None:
        assert self.settings is not None
        self.size = self.settings.RENDER_CONCURRENCY
        self.workers: list[Worker] = []
        self.retiring: list[ActorAddress] = []  # told to exit: moved to where the plan wants them
        self.idle: list[ActorAddress] = []
        self.busy: list[tuple[ActorAddress, str, str, float]] = []  # worker, key, kind, since
        self.customer_of: dict[str, str] = {}  # busy key → its customer: fair turns between customers
        self.counts = {"analyze": 0, "find": 0, "render": 0, "workers_lost": 0}
        self.serial = 0
        self._rebalance()
        self.every(self.settings.SWEEP_INTERVAL_S, "sweep")
        self.catch_up()

    def _plan(self) -> dict[str, int]:
        """How many workers each system runs: every member offering renderer its own count, else all here."""
        assert self.settings is not None
        members = self.placement.usable("renderer")
        if members:
            return {m.system: max(1, m.render_workers) for m in members}
        return {placement.this_system(): self.settings.RENDER_CONCURRENCY}

    def _rebalance(self) -> None:
        """Start workers where the plan wants more; retire idle ones where it wants fewer (busy ones as they finish)."""
        plan = self._plan()
        self.size = sum(plan.values())
        have = Counter(w.system for w in self.workers if w.address not in self.retiring)
        for system, count in have.items():
            surplus = count - plan.get(system, 0)
            for w in [w for w in self.workers if w.system == system and w.address in self.idle][:max(0, surplus)]:
                self._retire(w)
        for system, count in plan.items():
            for _ in range(count - have.get(system, 0)):
                self._spawn(system)
        self._fill()

    def _surplus(self, system: str) -> bool:
        kept = sum(1 for w in self.workers if w.system == system and w.address not in self.retiring)
        return kept > self._plan().get(system, 0)

    def _retire(self, worker: Worker) -> None:
        if worker.address in self.idle:
            self.idle.remove(worker.address)
        self.retiring.append(worker.address)
        self.tell_on(worker.system, worker.address, ActorExitRequest())

    def _spawn(self, system: str) -> None:
        assert self.settings is not None and self.book is not None
        self.serial += 1
        worker = self.createActor(RenderWorker, targetActorRequirements=placement.requirements_for(system))
        # Not bounded in time: its creation on a busy member may take a while, and without it the worker is idle.
        self.send(worker, Configure(settings=self.settings, name=f"render_worker:{self.serial}", book=self.book))
        self.workers.append(Worker(worker, system, self.serial))
        self.log.debug("render worker %d placed on %s", self.serial, system)
        self.idle.append(worker)

    def _worker(self, address: ActorAddress) -> Worker | None:
        return next((w for w in self.workers if w.address == address), None)

    def on_book(self) -> None:
        assert self.settings is not None and self.book is not None
        for w in self.workers:
            self.tell_on(w.system, w.address, Configure(settings=self.settings, name=f"render_worker:{w.serial}",
                                                        book=self.book))

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, WorkNudge):
            self._fill()
        elif isinstance(msg, WorkDone):
            self._done(sender, msg)
        elif isinstance(msg, ChildActorExited):
            self._lost(msg.childAddress)
        elif isinstance(msg, WorkerStarted):
            worker = self._worker(sender)
            if worker is not None:
                worker.pid = msg.pid
        else:
            super().on_message(msg, sender)

    def owns(self, child: ActorAddress) -> bool:
        return self._worker(child) is not None

    def on_members(self, lost: set[str]) -> None:
        # Workers on a lost member went with it, their jobs too (the rows are still pending: handed out again).
        for worker in [w for w in self.workers if w.system in lost]:
            self._drop(worker)
        self._rebalance()

    def on_timer(self, name: str) -> None:
        if name == "sweep":
            self._rebalance()  # also moves workers back to a member whose suspicion has run out
        elif name == "catch-up":
            self._fill()

    def _done(self, worker: ActorAddress, msg: WorkDone) -> None:
        entry = next((b for b in self.busy if b[0] == worker), None)
        if entry is not None:
            self.busy.remove(entry)
            self.customer_of.pop(entry[1], None)
            self.counts[entry[2]] += 1
            known = self._worker(worker)
            if known is not None and known.address not in self.retiring and self._surplus(known.system):
                self._retire(known)  # its system has more workers than the plan wants now
                self._rebalance()
            elif known is not None and known.address not in self.retiring:
                self.idle.append(worker)
        if msg.event_id is not None and self.book is not None:
            self.tell(self.book.conversations, JobNotice(customer_id=msg.customer_id, event_ids=[msg.event_id]))
        self._fill()

    def _lost(self, address: ActorAddress) -> None:
        worker = self._worker(address)
        if worker is None:
            return  # a repeat notice
        if address in self.retiring:
            self.retiring.remove(address)
            self.workers.remove(worker)
            return
        # Died on a member (or never said hello: its creation failed there): the member may be leaving, and
        # Root's word of it may still be on its way. Its replacement goes elsewhere for a while.
        self.placement.suspect(worker.system)
        self._drop(worker)
        self._rebalance()

    def _drop(self, worker: Worker) -> None:
        """A worker died (or went with its host): forget it; its job, if any, is handed out again."""
        self.workers.remove(worker)
        if worker.address in self.retiring:
            self.retiring.remove(worker.address)
            return
        entry = next((b for b in self.busy if b[0] == worker.address), None)
        if entry is not None:
            self.busy.remove(entry)
            self.customer_of.pop(entry[1], None)
            self.log.warning("render worker on %s died during %s %s; it is handed out again", worker.system,
                             entry[2], entry[1])
        elif worker.address in self.idle:
            self.idle.remove(worker.address)
        self.counts["workers_lost"] += 1
        ACTOR_RESTARTS.labels("render_worker").inc()

    def _fill(self) -> None:
        if not self.idle:
            return
        t = now()
        inflight = frozenset(b[1] for b in self.busy)
        # Analyses (a customer waiting for a quote) go first, and renders never hold every worker, so a
        # quote is never queued behind a wave of renders (unless the pool has a single worker).
        render_cap = max(1, self.size - 1)
        busy_renders = sum(1 for b in self.busy if b[2] == "render")
        for kind in ("analyze", "find", "render"):
            room = len(self.idle) if kind != "render" else min(len(self.idle), render_cap - busy_renders)
            if room <= 0:
                continue
            # Each customer's oldest first: one customer's backlog never queues another's first photo.
            rows = outbox.pending_fair(kind, t, room, inflight, frozenset(self.customer_of.values()))
            if kind == "render":
                rows = [r for r in rows if r.key not in self._rendering_elsewhere([r.key for r in rows])]
            for row in rows:
                worker = self.idle.pop()
                payload = outbox.payload_of(row)
                self.busy.append((worker, row.key, kind, time.monotonic()))
                self.customer_of[row.key] = payload.get("customer_id", "")
                known = self._worker(worker)
                self.tell_on(known.system if known else "", worker, WorkItem(key=row.key, kind=kind, payload=payload))

    def _rendering_elsewhere(self, render_ids: list[str]) -> set[str]:
        # A worker orphaned by a killed pool finishes its paid call and settles the row itself; handing the
        # row out again would pay Gemini twice. Its attempt names its system and (live) process: here it is
        # looked up on this host, on a member in that member's last heartbeat (a lost member's are all gone).
        return {render_id for render_id, system, pid in jobs.started_attempts(render_ids)
                if pid and self.placement.pid_alive(system, pid)}

    def detail(self) -> dict[str, Any]:
        busy = [b[0] for b in self.busy]
        actors = [{"name": f"render_worker:{w.serial}", "kind": "render_worker", "pid": w.pid, "system": w.system,
                   "state": "stopping" if w.address in self.retiring else "running",
                   "detail": {"job": "busy" if w.address in busy else "idle"}}
                  for w in self.workers]
        return {"workers": self.size, "busy": len(self.busy), "queued_keys": [b[1] for b in self.busy][:10],
                "by_system": dict(Counter(w.system for w in self.workers)), **self.counts, "actors": actors}
