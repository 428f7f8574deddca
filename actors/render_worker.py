"""Render worker: one process, one job at a time; the pool re-hands a job whose worker died."""

from __future__ import annotations

import os
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest

from actors.base import ServiceActor
from cluster import placement
from executors.gemini import gemini_client
from executors.work import perform
from observability.json_logs import ids_in, log_ids
from protocol.convention import WorkerStarted
from protocol.messages import WorkDone, WorkItem

ORPHAN_CHECK_S = 2.0


class RenderWorker(ServiceActor):
    """Blocks on its job on purpose: the pool never gives it a second one before it answers."""

    kind = "render_worker"

    @staticmethod
    def actorSystemCapabilityCheck(capabilities: dict[str, Any], requirements: dict[str, Any] | None = None  # noqa: N802
                                   ) -> bool:
        """Placed by the pool: on the member system it names, else on the leader."""
        return placement.hosts(capabilities, requirements)

    def on_configure(self) -> None:
        assert self.settings is not None and self.book is not None
        self.parent_pid = os.getppid()
        self.gemini = gemini_client(self.settings)
        self.every(ORPHAN_CHECK_S, "orphan-check")
        self.tell(self.book.renderer, WorkerStarted(pid=os.getpid()))

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, WorkItem):
            self.heard_from_creator()
            if not placement.is_member() and os.getppid() != self.parent_pid:
                return  # orphaned: the new pool hands this job to a worker of its own
            assert self.settings is not None
            with log_ids(**ids_in(msg.payload)):
                outcome = perform(self.settings, msg.key, msg.kind, msg.payload, self.gemini, placement.this_system())
            self.send(sender, WorkDone(key=msg.key, customer_id=outcome.customer_id, event_id=outcome.event_id))
        else:
            super().on_message(msg, sender)

    def on_timer(self, name: str) -> None:
        if name == "orphan-check" and self._orphaned():
            self.send(self.myAddress, ActorExitRequest())

    def _orphaned(self) -> bool:
        # A pool killed with SIGKILL leaves its workers running: they stop themselves. Here the pool is the
        # parent process; on a member it runs on another host, and is asked instead.
        if placement.is_member():
            return self.creator_gone(self.book.renderer if self.book is not None else None)
        return os.getppid() != self.parent_pid
