"""Tianwang task centre vocabulary: task bodies, enums and API answers (SPEC §1)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class TaskStatus(StrEnum):
    """Where a Tianwang task is in its life."""

    PENDING = "pending"
    WAITING = "waiting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


FINISHED_STATUSES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMEOUT}
)


class Priority(StrEnum):
    """Execution priority; urgent runs first."""

    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"


PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2}
TIME_YEARS = (1970, 9998)  # a time_reach time must fall in these years


class TriggerType(StrEnum):
    """What makes a waiting task run."""

    CUSTOMER_REPLY = "customer_reply"
    CUSTOMER_KEYWORD = "customer_keyword"
    CUSTOMER_PAYMENT = "customer_payment"
    CUSTOMER_ORDER = "customer_order"
    TIME_REACH = "time_reach"
    CUSTOM_EVENT = "custom_event"


class ActionType(StrEnum):
    """What a task does when it runs."""

    SEND_MESSAGE = "send_message"
    SEND_FILE = "send_file"
    SEND_LINK = "send_link"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Customer(_Strict):
    """The customer a task is about."""

    id: str = Field(min_length=1, max_length=128, description="customer id as the IM bridge knows it")
    name: str = Field(default="", max_length=128, description="display name")


class Trigger(_Strict):
    """The condition a task waits for."""

    type: TriggerType = Field(description="which condition")
    keyword: str | None = Field(default=None, max_length=200, description="customer_reply / customer_keyword")
    keywords: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=50, description="customer_keyword: any of these"
    )
    time: str | None = Field(default=None, description="time_reach: 'YYYY-MM-DD HH:MM:SS', shop-local",
                             examples=["2026-02-27 09:00:00"],
                             json_schema_extra={"pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"})
    event: str | None = Field(default=None, max_length=200, description="custom_event: event name")

    @model_validator(mode="after")
    def _needs_its_fields(self) -> Trigger:
        t = self.type
        if t is TriggerType.CUSTOMER_REPLY and not self.keyword:
            raise ValueError("trigger.keyword is required for customer_reply")
        if t is TriggerType.CUSTOMER_KEYWORD and not (self.keyword or self.keywords):
            raise ValueError("trigger.keywords (or keyword) is required for customer_keyword")
        if t is TriggerType.TIME_REACH:
            if not self.time:
                raise ValueError("trigger.time is required for time_reach")
            from datetime import datetime

            try:
                year = datetime.strptime(self.time, "%Y-%m-%d %H:%M:%S").year
            except ValueError:
                raise ValueError(
                    f"trigger.time {self.time!r} is not of the form 'YYYY-MM-DD HH:MM:SS'"
                ) from None
            # Years 1 and 9999 overflow datetime once moved to UTC or shown in the shop's zone.
            if not TIME_YEARS[0] <= year <= TIME_YEARS[1]:
                raise ValueError(f"trigger.time {self.time!r} must be in the years {TIME_YEARS[0]}-{TIME_YEARS[1]}")
        if t is TriggerType.CUSTOM_EVENT and not self.event:
            raise ValueError("trigger.event is required for custom_event")
        return self

    def all_keywords(self) -> list[str]:
        """Every keyword this trigger listens for."""
        words = list(self.keywords or [])
        if self.keyword:
            words.append(self.keyword)
        return words


class Action(_Strict):
    """What the task sends to the customer."""

    type: ActionType = Field(description="which kind of send")
    message: str | None = Field(default=None, max_length=4000, description="text to send")
    file_url: str | None = Field(default=None, max_length=2000, description="send_file: the file")
    url: str | None = Field(default=None, max_length=2000, description="send_link: the link")
    link_url: str | None = Field(default=None, max_length=2000, description="send_link: alias of url")
    title: str | None = Field(default=None, max_length=200, description="send_link: link title")

    @field_validator("file_url", "url", "link_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _needs_its_fields(self) -> Action:
        if self.type is ActionType.SEND_MESSAGE and not self.message:
            raise ValueError("action.message is required for send_message")
        if self.type is ActionType.SEND_FILE and not self.file_url:
            raise ValueError("action.file_url is required for send_file")
        if self.type is ActionType.SEND_LINK and not (self.url or self.link_url):
            raise ValueError("action.url is required for send_link")
        return self


class TaskIn(_Strict):
    """A task as Tianwang posts it to /api/task/receive."""

    task_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$", description="Tianwang's id")
    type: str = Field(min_length=1, max_length=64, description="Tianwang's task type label")
    customer: Customer
    trigger: Trigger
    action: Action
    priority: Priority = Field(default=Priority.NORMAL, description="urgent > high > normal")
    timeout_hours: float = Field(default=24, gt=0, le=24 * 365, description="waiting longer ends the task")
    created_by: str = Field(default="", max_length=128, description="who posted it")


class CancelIn(_Strict):
    """Body of /api/task/cancel."""

    task_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(default="", max_length=500)


class EventIn(_Strict):
    """Body of /api/event: fires custom_event triggers."""

    event: str = Field(min_length=1, max_length=200, description="event name")
    customer_id: str | None = Field(
        default=None, max_length=128, description="only tasks of this customer; none = every task on the event"
    )
    data: dict[str, Any] = Field(default_factory=dict, description="free-form details, stored")


class Envelope(BaseModel):
    """Every API answer: code (the HTTP status), message, data."""

    code: int
    message: str
    data: Any = None


class Callback(BaseModel):
    """What Tianwang receives at TIANWANG_CALLBACK_URL on each status change."""

    task_id: str
    status: TaskStatus
    error: str | None = None
    timestamp: str

