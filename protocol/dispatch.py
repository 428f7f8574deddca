"""Designer dispatch (图绘派单) vocabulary: the API's answers and the pure choices made with them (SPEC §4).

The models read what the dispatch API answers; they ignore fields they do not know, since the real API
may carry more than SPEC §4 shows.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

TASK_NAME_PREFIX = "图片处理-"
TASK_TYPE = "image_process"
DEFAULT_PRIORITY = 2


class _Answer(BaseModel):
    # Ids and times may come as numbers from a real API; we only ever show and send them back as text.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class PendingTask(_Answer):
    """One not-yet-assigned task as ``/dispatch/queue`` lists it."""

    task_id: str = Field(min_length=1, description="the dispatch API's id of the task")
    task_name: str = Field(default="", description="short title, ours is 图片处理-{last 4 of the customer id}")
    description: str = Field(default="", description="what the designer reads; ours ends with [key:<key>]")
    key: str | None = Field(default=None, description="the Idempotency-Key it was created under, when the API keeps it")


class PendingTasks(_Answer):
    """The ``pending_tasks`` block of ``/dispatch/queue``."""

    count: int = Field(default=0, ge=0, description="how many tasks wait for a designer")
    tasks: list[PendingTask] = Field(default_factory=list, description="those tasks")


class OnlineDesigners(_Answer):
    """The ``online_designers`` block of ``/dispatch/queue``."""

    count: int = Field(default=0, ge=0, description="how many designers are online")
    designers: list[str] = Field(default_factory=list, description="their names, as assign expects them")


class DispatchQueue(_Answer):
    """Answer of ``GET /dispatch/queue``."""

    pending_tasks: PendingTasks = Field(description="tasks waiting for a designer")
    online_designers: OnlineDesigners = Field(description="designers who can take a task now")
    suggestion: str | None = Field(default=None, description="the designer the API suggests; null when none online")


class DispatchTask(_Answer):
    """Answer of ``GET /tasks/{id}``."""

    task_id: str = Field(min_length=1, description="the dispatch API's id of the task")
    task_name: str = Field(default="", description="short title")
    description: str = Field(default="", description="what the designer reads")
    status: str = Field(min_length=1, description="pending, assigned or completed (a real API may know more)")
    assigned_to: str | None = Field(default=None, description="the designer's name once assigned")
    notes: str | None = Field(default=None, description="assignment notes, then the designer's completion notes")
    created_at: str | None = Field(default=None, description="when the task was created, as the API writes it")
    completed_at: str | None = Field(default=None, description="when a designer completed it")
    key: str | None = Field(default=None, description="the Idempotency-Key it was created under, when kept")


def task_name(customer_id: str) -> str:
    """The dispatch task's name for a customer: ``图片处理-{last 4 characters of the id}``."""
    return f"{TASK_NAME_PREFIX}{customer_id[-4:]}"


def key_marker(key: str) -> str:
    """The tag ending a description, by which a task is found again when the API ignores Idempotency-Key."""
    return f"[key:{key}]"


def pick_designer(queue: DispatchQueue, open_counts: dict[str, int]) -> str | None:
    """The queue's suggestion if online, else the online designer with fewest open tasks (ties by name)."""
    online = queue.online_designers.designers
    if queue.suggestion and queue.suggestion in online:
        return queue.suggestion
    if not online:
        return None
    return min(online, key=lambda name: (open_counts.get(name, 0), name))
