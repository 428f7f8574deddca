"""Render worker: one process, one job at a time; the pool re-hands a job whose worker died."""

from __future__ import annotations

import os
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest

from actors.base import ServiceActor
from actors.render_work import gemini_client, perform
from protocol.messages import WorkDone, WorkItem

ORPHAN_CHECK_S = 2.0


class RenderWorker(ServiceActor):
    """Blocks on its job on purpose: the pool never gives it a second one before it answers."""

    kind = "render_worker"

    def on_configure(self) -> None:
        assert self.settings is not None
        self.parent_pid = os.getppid()
        self.gemini = gemini_client(self.settings)
        self.every(ORPHAN_CHECK_S, "orphan-check")

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, WorkItem):
            if self._orphaned():
                return  # the new pool hands this job to a worker of its own
            assert self.settings is not None
            outcome = perform(self.settings, msg.key, msg.kind, msg.payload, self.gemini)
            self.send(sender, WorkDone(key=msg.key, customer_id=outcome.customer_id, event_id=outcome.event_id))
        else:
            super().on_message(msg, sender)

    def on_timer(self, name: str) -> None:
        if name == "orphan-check" and self._orphaned():
            self.send(self.myAddress, ActorExitRequest())

    def _orphaned(self) -> bool:
        # A pool killed with SIGKILL leaves its workers running with no parent: they stop themselves.
        return os.getppid() != self.parent_pid
