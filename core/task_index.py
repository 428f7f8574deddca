"""The scheduler's in-memory view of its tasks: waiting tasks indexed for trigger matching, triggered tasks by
priority."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import NamedTuple

from core.tianwang import CustomerEventView, trigger_matches
from protocol.messages import EventItem
from protocol.tianwang import Trigger, TriggerType


@dataclass(frozen=True)
class Waiting:
    """A waiting task as the index keeps it."""

    task_id: str
    customer_id: str
    trigger: Trigger
    created_at: float


class TaskIndex:
    """Waiting tasks by id, by customer and by custom event name: which tasks an event may fire."""

    def __init__(self) -> None:
        self.waiting: dict[str, Waiting] = {}
        self.by_customer: dict[str, set[str]] = {}
        self.by_event: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.waiting)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.waiting

    def index(self, w: Waiting) -> None:
        """Keep a waiting task for matching (a time_reach task is left out)."""
        if w.trigger.type is TriggerType.TIME_REACH:
            return  # its durable timer is the index
        self.waiting[w.task_id] = w
        self.by_customer.setdefault(w.customer_id, set()).add(w.task_id)
        if w.trigger.type is TriggerType.CUSTOM_EVENT and w.trigger.event:
            self.by_event.setdefault(w.trigger.event, set()).add(w.task_id)

    def unindex(self, task_id: str) -> None:
        """Forget a task (triggered, finished or timed out); an unknown id is ignored."""
        w = self.waiting.pop(task_id, None)
        if w is None:
            return
        _discard(self.by_customer, w.customer_id, task_id)
        if w.trigger.event:
            _discard(self.by_event, w.trigger.event, task_id)

    def candidates(self, ev: EventItem) -> set[str]:
        """The tasks ev might fire: a custom event's waiters (of its customer, if it names one), else the
        customer's."""
        if ev.kind == "custom":
            found = set(self.by_event.get(ev.name, set()))
            if ev.customer_id is not None:
                found &= self.by_customer.get(ev.customer_id, set())
            return found
        return set(self.by_customer.get(ev.customer_id or "", set()))

    def fired_by(self, ev: EventItem, found: set[str]) -> list[str]:
        """Of the candidates found, those ev fires, in task-id order: created by the time of ev (to the
        millisecond) and with a trigger it matches."""
        view = CustomerEventView(kind=ev.kind, customer_id=ev.customer_id, text=ev.text, name=ev.name)
        fired: list[str] = []
        for task_id in sorted(found):
            w = self.waiting.get(task_id)
            if w is None or w.created_at > ev.at + 0.001 or not trigger_matches(w.trigger, w.customer_id, view):
                continue
            fired.append(task_id)
        return fired


def _discard(groups: dict[str, set[str]], key: str, task_id: str) -> None:
    """Take task_id out of its group, and the group out once empty: a customer seen once is not kept for ever."""
    group = groups.get(key)
    if group is not None:
        group.discard(task_id)
        if not group:
            del groups[key]


class ReadyTask(NamedTuple):
    """A triggered task waiting for room to run; tuples order by priority, then by when it was triggered."""

    priority_rank: int
    triggered_at: float
    task_id: str


class ReadyQueue:
    """Triggered tasks, highest priority (lowest rank) and earliest triggered first."""

    def __init__(self) -> None:
        self._heap: list[ReadyTask] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, task: ReadyTask) -> None:
        """Queue a triggered task."""
        heapq.heappush(self._heap, task)

    def pick(self, room: int, running: set[str]) -> list[str]:
        """Take up to room task ids off the queue, best first, dropping those already running or taken twice."""
        picked: list[str] = []
        while self._heap and len(picked) < room:
            task_id = heapq.heappop(self._heap).task_id
            if task_id not in running and task_id not in picked:
                picked.append(task_id)
        return picked
