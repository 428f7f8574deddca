"""Renderer pool: hands the outbox's analyze, find and render rows to worker actors, one job per worker at a time.

The pool owns no thread, so it may create children: RENDER_CONCURRENCY workers, each a process that
blocks on its one job (download, analysis, Gemini or the local renderer). Rows stay pending in the
outbox until a worker settles them, so a job lost with a killed worker (or pool) is handed out again.
"""

from __future__ import annotations

import os
import time
from typing import Any

from thespian.actors import ActorAddress, ChildActorExited

from actors.base import ServiceActor, now
from actors.metrics import ACTOR_RESTARTS
from actors.render_worker import RenderWorker
from persistence import jobs, outbox
from protocol.messages import Configure, JobNotice, WorkDone, WorkItem, WorkNudge


class RendererPool(ServiceActor):
    """Bounded concurrency over the analyze and render queues; quotes never wait behind renders."""

    kind = "renderer"

    def on_configure(self) -> None:
        assert self.settings is not None
        self.size = self.settings.RENDER_CONCURRENCY
        self.idle: list[ActorAddress] = []
        self.busy: list[tuple[ActorAddress, str, str, float]] = []  # worker, key, kind, since
        self.customer_of: dict[str, str] = {}  # busy key → its customer: fair turns between customers
        self.counts = {"analyze": 0, "find": 0, "render": 0, "workers_lost": 0}
        self.serial = 0
        for _ in range(self.size):
            self._spawn()
        self.every(self.settings.SWEEP_INTERVAL_S, "sweep")
        self.catch_up()
        self._fill()

    def _spawn(self) -> None:
        assert self.settings is not None and self.book is not None
        self.serial += 1
        worker = self.createActor(RenderWorker)
        self.send(worker, Configure(settings=self.settings, name=f"render_worker:{self.serial}", book=self.book))
        self.idle.append(worker)

    def on_book(self) -> None:
        assert self.settings is not None and self.book is not None
        for worker in self.idle + [b[0] for b in self.busy]:
            self.send(worker, Configure(settings=self.settings, name="render_worker", book=self.book))

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, WorkNudge):
            self._fill()
        elif isinstance(msg, WorkDone):
            self._done(sender, msg)
        elif isinstance(msg, ChildActorExited):
            self._lost(msg.childAddress)
        else:
            super().on_message(msg, sender)

    def on_timer(self, name: str) -> None:
        if name in ("sweep", "catch-up"):
            self._fill()

    def _done(self, worker: ActorAddress, msg: WorkDone) -> None:
        entry = next((b for b in self.busy if b[0] == worker), None)
        if entry is not None:
            self.busy.remove(entry)
            self.customer_of.pop(entry[1], None)
            self.idle.append(worker)
            self.counts[entry[2]] += 1
        if msg.event_id is not None and self.book is not None:
            self.tell(self.book.conversations, JobNotice(customer_id=msg.customer_id, event_ids=[msg.event_id]))
        self._fill()

    def _lost(self, worker: ActorAddress) -> None:
        entry = next((b for b in self.busy if b[0] == worker), None)
        if entry is not None:
            self.busy.remove(entry)
            self.customer_of.pop(entry[1], None)
            self.log.warning("render worker died during %s %s; it is handed out again", entry[2], entry[1])
        elif worker in self.idle:
            self.idle.remove(worker)
        else:
            return  # a repeat notice
        self.counts["workers_lost"] += 1
        ACTOR_RESTARTS.labels("render_worker").inc()
        self._spawn()
        self._fill()

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
                self.send(worker, WorkItem(key=row.key, kind=kind, payload=payload))

    def _rendering_elsewhere(self, render_ids: list[str]) -> set[str]:
        # A worker orphaned by a killed pool finishes its paid call and settles the row itself;
        # handing the row out again would pay Gemini twice. Its attempt names its (live) process.
        return {render_id for render_id, pid in jobs.started_attempts(render_ids) if pid and _alive(pid)}

    def detail(self) -> dict[str, Any]:
        return {"workers": self.size, "busy": len(self.busy), "queued_keys": [b[1] for b in self.busy][:10],
                **self.counts}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
