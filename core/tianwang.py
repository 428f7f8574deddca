"""Tianwang task rules with no I/O: legal transitions, trigger matching, deadlines, retries, sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from protocol.im import MsgType
from protocol.tianwang import Action, ActionType, TaskStatus, Trigger, TriggerType

MAX_RETRIES = 3

_S = TaskStatus
ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    _S.PENDING: frozenset({_S.WAITING, _S.CANCELLED}),
    _S.WAITING: frozenset({_S.RUNNING, _S.TIMEOUT, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.TIMEOUT: frozenset(),
}


class IllegalTransition(Exception):
    """A task was asked to move where its current state does not allow."""

    def __init__(self, task_id: str, current: TaskStatus, target: TaskStatus, event: str) -> None:
        super().__init__(f"task {task_id} in state {current.value!r} cannot go to {target.value!r} on {event}")
        self.task_id, self.current, self.target, self.event = task_id, current, target, event


def check_transition(task_id: str, current: TaskStatus, target: TaskStatus, event: str) -> None:
    """Raise IllegalTransition unless current → target is a legal move."""
    if target not in ALLOWED[current]:
        raise IllegalTransition(task_id, current, target, event)


def sources_of(target: TaskStatus) -> frozenset[TaskStatus]:
    """Every state from which target can be reached."""
    return frozenset(s for s, outs in ALLOWED.items() if target in outs)


@dataclass(frozen=True)
class CustomerEventView:
    """A customer-side happening the scheduler matches triggers against."""

    kind: str  # text | image | order | payment | custom
    customer_id: str | None
    text: str = ""
    name: str = ""


EVENT_TRIGGERS: dict[str, frozenset[TriggerType]] = {
    "text": frozenset({TriggerType.CUSTOMER_REPLY, TriggerType.CUSTOMER_KEYWORD}),
    "order": frozenset({TriggerType.CUSTOMER_ORDER}),
    "payment": frozenset({TriggerType.CUSTOMER_PAYMENT}),
    "custom": frozenset({TriggerType.CUSTOM_EVENT}),
}


def trigger_matches(trigger: Trigger, task_customer_id: str, event: CustomerEventView) -> bool:
    """Whether event fires a waiting task with this trigger for this customer."""
    if trigger.type not in EVENT_TRIGGERS.get(event.kind, frozenset()):
        return False
    if event.customer_id is not None and event.customer_id != task_customer_id:
        return False
    if trigger.type is TriggerType.CUSTOM_EVENT:
        return event.name == trigger.event
    if event.customer_id is None:
        return False
    if trigger.type is TriggerType.CUSTOMER_REPLY:
        text = event.text.strip()
        keyword = (trigger.keyword or "").strip()
        return text == keyword or keyword in text
    if trigger.type is TriggerType.CUSTOMER_KEYWORD:
        return any(word in event.text for word in trigger.all_keywords())
    return True


def shop_time_to_epoch(text: str, timezone: str) -> float:
    """'YYYY-MM-DD HH:MM:SS' read in the shop's time zone, as a UTC epoch."""
    naive = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    return naive.replace(tzinfo=ZoneInfo(timezone)).timestamp()


def epoch_to_iso(epoch: float, timezone: str) -> str:
    """An epoch as ISO 8601 with the shop's offset, to the millisecond."""
    return datetime.fromtimestamp(epoch, ZoneInfo(timezone)).isoformat(timespec="milliseconds")


def fire_at(trigger: Trigger, timezone: str) -> float | None:
    """When a time_reach trigger fires; None for the event-driven triggers."""
    if trigger.type is TriggerType.TIME_REACH and trigger.time:
        return shop_time_to_epoch(trigger.time, timezone)
    return None


def timeout_at(trigger: Trigger, created_at: float, timeout_hours: float) -> float | None:
    """When a waiting task times out; a time_reach task is bounded by its own time instead."""
    if trigger.type is TriggerType.TIME_REACH:
        return None
    return created_at + timeout_hours * 3600.0


def retry_delay(retries_done: int, base_s: float) -> float:
    """Backoff before retry number retries_done+1: base, 2×base, 4×base."""
    return base_s * (2**retries_done)


@dataclass(frozen=True)
class SendPart:
    """One frame a task's action shows the customer, in order."""

    part: str
    msg_type: MsgType
    content: str


def action_parts(action: Action) -> list[SendPart]:
    """The frames an action sends: its message (if any) first, then its file or link."""
    parts: list[SendPart] = []
    if action.message:
        parts.append(SendPart("msg", MsgType.TEXT, action.message))
    if action.type is ActionType.SEND_FILE and action.file_url:
        parts.append(SendPart("file", MsgType.FILE, action.file_url))
    elif action.type is ActionType.SEND_LINK:
        parts.append(SendPart("link", MsgType.LINK, action.url or action.link_url or ""))
    return parts


TIMER_KINDS = ("fire", "timeout", "retry")


def timer_key(task_id: str, what: str) -> str:
    """Name of a task's durable timer: what is fire (time_reach), timeout or retry."""
    return f"task:{task_id}:{what}"


def send_id(task_id: str, part: str) -> str:
    """Stable idempotency key of one part of a task's action."""
    return f"tw:{task_id}:{part}"
