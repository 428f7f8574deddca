"""What a work item leaves behind, for the pool to tell the conversation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What a work item left for the conversation: whose it is and the JobEvent written (None if settled before)."""

    customer_id: str
    event_id: int | None


class AlreadySettled(Exception):
    """The item was settled before (by an earlier worker): its outcome stands and this one's files roll back."""
